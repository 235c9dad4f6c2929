"""Medians, ratios and targets; the printed tables, the Markdown table and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

from .loadgen import ROOT, Load
from .micro import Micro

RESULTS = ROOT / "bench" / "results" / "latest.json"

# The apps the ratios and targets are about (keys of bench.run's app table).
FLASK, TWILIO, KIT_MEMORY, KIT_SQLITE = "flask", "twilio", "kit_memory", "kit_sqlite"
FLASK_STATUS, KIT_STATUS = "flask_status", "kit_status_sqlite"
KIT_POSTGRES, KIT_REDIS = "kit_postgres", "kit_status_redis"
FLASK_W3, KIT_SQLITE_W3 = "flask_w3", "kit_sqlite_w3"
TWILIO_SQLITE, TWILIO_POSTGRES = "twilio_sqlite", "twilio_postgres"
TWILIO_SQLITE_W3 = "twilio_sqlite_w3"
#: The scenario of the apps run with 3 workers each (inbound webhooks, unpinned).
WORKERS = "inbound-3w"
SCENARIOS = ("inbound", "status", WORKERS)
VERIFY, TWIML_ONE = "verify signature, 20 fields", "TwiML: one message, build + serialise"

TIMES = "\u00d7"

Results = dict[str, Any]


class AppLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def scenario(self) -> str: ...


def banner(settings: dict[str, Any]) -> str:
    mode = "full mode"
    if settings["quick"]:
        mode = "QUICK mode: fewer and shorter rounds, fewer RSS callbacks"
    return (
        f"webhook_kit benchmarks, {mode}: {settings['rounds']} rounds x {settings['duration']} s "
        f"per app, wrk -t{settings['threads']} -c{settings['connections']}, one gunicorn sync "
        f"worker per app (3 for the workers run), {settings['rss_callbacks']:,} callbacks for RSS"
    )


def collect(
    settings: dict[str, Any],
    apps: Sequence[AppLike],
    runs: dict[str, list[Load]],
    micros: list[Micro],
    rss: dict[str, float | int],
    warnings: list[str],
    store_bytes: dict[str, float],
) -> Results:
    """Everything the run measured, with medians, ratios and targets, ready for JSON."""
    baselines = {
        "inbound": (FLASK, TWILIO),
        "status": (FLASK_STATUS, None),
        WORKERS: (FLASK_W3, None),
    }
    throughput = []
    for app in apps:
        loads = runs[app.key]
        flask, twilio = baselines[app.scenario]
        throughput.append(
            {
                "key": app.key,
                "label": app.label,
                "scenario": app.scenario,
                "rate": statistics.median(load.rate for load in loads),
                "rate_min": min(load.rate for load in loads),
                "rate_max": max(load.rate for load in loads),
                "p50_ms": statistics.median(load.p50_ms for load in loads),
                "p99_ms": statistics.median(load.p99_ms for load in loads),
                "vs_flask": _ratio(runs, app.key, flask),
                "vs_twilio": _ratio(runs, app.key, twilio) if twilio else None,
                "runs": [{**asdict(load), "rate": load.rate} for load in loads],
            }
        )
    ratios = {
        "webhook_kit_vs_flask": _ratio(runs, KIT_MEMORY, FLASK),
        "webhook_kit_vs_twilio": _ratio(runs, KIT_MEMORY, TWILIO),
        "status_vs_flask": _ratio(runs, KIT_STATUS, FLASK_STATUS),
    }
    if KIT_SQLITE_W3 in runs and FLASK_W3 in runs:
        # Scaling from 1 to 3 workers on one SQLite file, against bare Flask's in this run.
        flask_scaling = _ratio(runs, FLASK_W3, FLASK)
        ratios["flask_1_to_3_workers"] = flask_scaling
        ratios["kit_sqlite_1_to_3_workers"] = _ratio(runs, KIT_SQLITE_W3, KIT_SQLITE)
        ratios["kit_sqlite_scaling_vs_flask"] = ratios["kit_sqlite_1_to_3_workers"] / flask_scaling
        if TWILIO_SQLITE_W3 in runs:
            ratios["twilio_sqlite_1_to_3_workers"] = _ratio(runs, TWILIO_SQLITE_W3, TWILIO_SQLITE)
    by_name = {item.name: item for item in micros}
    rss_label = f"RSS growth after {rss['callbacks']:,} status callbacks"
    if settings["quick"]:
        rss_label += " (quick: fewer than 100,000)"
    tails = {row["key"]: row["p99_ms"] / row["p50_ms"] for row in throughput}
    targets = [
        _target("webhook_kit memory store vs bare Flask", ratios["webhook_kit_vs_flask"], 1.25),
        _target(
            "webhook_kit memory store vs Flask + twilio-python",
            ratios["webhook_kit_vs_twilio"],
            1.5,
        ),
        _target("webhook_kit SQLite store vs bare Flask", _ratio(runs, KIT_SQLITE, FLASK), 0.9),
        _target("webhook_kit SQLite store: p99 / p50", tails[KIT_SQLITE], 3.0, op="<="),
        _target(
            "webhook_kit SQLite store vs Flask + twilio-python + SQLite dedupe",
            _ratio(runs, KIT_SQLITE, TWILIO_SQLITE),
            1.5,
        ),
        _target("status callbacks, SQLite ledger vs bare Flask", ratios["status_vs_flask"], 1.1),
        _target("status callbacks, SQLite ledger: p99 / p50", tails[KIT_STATUS], 3.0, op="<="),
        _target("verify a 20-field signature", by_name[VERIFY].webhook_kit_us, 10.0, " µs"),
        _target("one-message TwiML", by_name[TWIML_ONE].webhook_kit_us, 5.0, " µs"),
        _target(rss_label, float(rss["growth_mb"]), 20.0, " MB"),
        _target(
            f"memory store: bytes held per inbound message ({store_bytes['messages']:,.0f})",
            store_bytes["bytes"],
            600.0,
            " B",
        ),
    ]
    optional = [  # apps that need a service, measured when it is reachable
        (KIT_POSTGRES, FLASK, "webhook_kit PostgreSQL store vs bare Flask", 0.8),
        (KIT_REDIS, FLASK_STATUS, "status callbacks, Redis ledger vs bare Flask", 0.8),
        (KIT_SQLITE_W3, FLASK_W3, "3 workers each: webhook_kit SQLite store vs bare Flask", 1.0),
        (
            KIT_POSTGRES,
            TWILIO_POSTGRES,
            "webhook_kit PostgreSQL store vs Flask + twilio-python + PostgreSQL dedupe",
            1.5,
        ),
    ]
    targets[7:7] = [
        _target(name, _ratio(runs, app, baseline), limit)
        for app, baseline, name, limit in optional
        if app in runs and baseline in runs
    ]
    if "kit_sqlite_scaling_vs_flask" in ratios:
        targets.insert(
            7,
            _target(
                "SQLite 1 -> 3 workers: webhook_kit's scaling vs bare Flask's",
                ratios["kit_sqlite_scaling_vs_flask"],
                0.9,
            ),
        )
    return {
        "machine": machine(),
        "settings": settings,
        "throughput": throughput,
        "ratios": ratios,
        "micro": [{**asdict(item), "speedup": item.speedup} for item in micros],
        "rss": rss,
        "store_bytes": store_bytes,
        "targets": targets,
        "warnings": warnings,
    }


def machine() -> dict[str, Any]:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "commit": _commit(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        **{name: version(name) for name in ("flask", "werkzeug", "gunicorn", "lxml", "twilio")},
    }


def _commit() -> str:
    """The measured commit, with ``+dirty`` if webhook_kit/ has uncommitted changes."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True
    )
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "webhook_kit"],
        check=False,
        capture_output=True,
        text=True,
    )
    commit = head.stdout.strip() or "unknown"
    return commit + "+dirty" if dirty.stdout.strip() else commit


def emit(results: Results) -> None:
    """Print the tables, targets and Markdown, write the JSON; the last line is for scripts."""
    print()
    print(_text_tables(results))
    print()
    print(_markdown(results))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"\nfull results: {RESULTS.relative_to(ROOT)}; wall time {results['wall_seconds']} s")
    ratios = results["ratios"]
    print(
        f"webhook_kit_vs_flask={ratios['webhook_kit_vs_flask']:.2f} "
        f"webhook_kit_vs_twilio={ratios['webhook_kit_vs_twilio']:.2f} "
        f"status_vs_flask={ratios['status_vs_flask']:.2f}"
    )


def _ratio(runs: dict[str, list[Load]], app: str, baseline: str) -> float:
    """Median over rounds of the ratio of two apps' rates in the same round."""
    pairs = zip(runs[app], runs[baseline], strict=True)
    return statistics.median(mine.rate / theirs.rate for mine, theirs in pairs)


def _target(
    name: str, value: float, limit: float, unit: str = "x", op: str | None = None
) -> dict[str, Any]:
    """A ratio (unit x) must reach ``limit`` unless ``op`` says otherwise; a time or a size
    must stay within it."""
    op = op or (">=" if unit == "x" else "<=")
    met = value >= limit if op == ">=" else value <= limit
    return {"name": name, "value": value, "op": op, "limit": limit, "unit": unit, "pass": met}


def _scenario_title(scenario: str, settings: dict[str, Any]) -> str:
    what = {
        "inbound": "Inbound SMS (20 fields, distinct MessageSid, signed)",
        "status": "Status callback (distinct MessageSid, signed)",
        WORKERS: "Inbound SMS, 3 gunicorn workers per app, nothing pinned",
    }[scenario]
    return (
        f"{what}: wrk -t{settings['threads']} -c{settings['connections']}, "
        f"{settings['rounds']} rounds x {settings['duration']} s, medians"
    )


def _times(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}x"


def _text_tables(results: Results) -> str:
    settings = results["settings"]
    lines: list[str] = []
    for scenario in SCENARIOS:
        lines.append(_scenario_title(scenario, settings))
        lines.append(
            f"  {'app':30} {'req/s':>7} {'min-max':>11} {'p50 ms':>7} {'p99 ms':>7}"
            f" {'x bare Flask':>13} {'x twilio-py':>12}"
        )
        for row in results["throughput"]:
            if row["scenario"] == scenario:
                spread = f"{row['rate_min']:.0f}-{row['rate_max']:.0f}"
                lines.append(
                    f"  {row['label']:30} {row['rate']:7.0f} {spread:>11} {row['p50_ms']:7.2f}"
                    f" {row['p99_ms']:7.2f} {_times(row['vs_flask']):>13}"
                    f" {_times(row['vs_twilio']):>12}"
                )
        lines.append("")
    lines.append(
        "Every request carries a distinct MessageSid and a valid signature; any non-2xx "
        "answer, socket error or timeout fails the run."
    )
    scaling = _scaling(results["ratios"])
    if scaling:
        lines += ["", scaling]
    lines.append("")
    lines.append(
        f"Micro benchmarks, best of {settings['micro_repeat']}, µs per call (empty-loop cost "
        "subtracted)"
    )
    lines.append(f"  {'step':46} {'webhook_kit':>11} {'peer':>13} {'peer µs':>8} {'faster':>7}")
    for item in results["micro"]:
        peer_us = "-" if item["peer_us"] is None else f"{item['peer_us']:.2f}"
        lines.append(
            f"  {item['name']:46} {item['webhook_kit_us']:11.2f} {item['peer'] or '-':>13}"
            f" {peer_us:>8} {_times(item['speedup'], 1):>7}"
        )
        lines.append(f"      {item['includes']}")
    rss = results["rss"]
    lines.append("")
    lines.append(
        f"Memory: webhook_kit worker, SQLite ledger, default retention: VmRSS {rss['before_mb']} MB"
        f" -> {rss['after_mb']} MB after {rss['callbacks']:,} distinct status callbacks"
        f" ({rss['growth_mb']:+} MB; {rss['rate']} callbacks/s)"
    )
    lines.append("")
    lines.append("Targets (ratios from this run):")
    for target in results["targets"]:
        verdict = "PASS" if target["pass"] else "MISS"
        lines.append(
            f"  {verdict}  {target['name']}: {target['value']:.2f}{target['unit']}"
            f" (target {target['op']} {target['limit']:g}{target['unit']})"
        )
    lines.extend(f"WARNING: {warning}" for warning in results["warnings"])
    return "\n".join(lines)


def _scaling(ratios: dict[str, float]) -> str:
    """One line: how each app's rate grew from 1 to 3 workers on one SQLite file."""
    parts = [
        (label, ratios.get(key))
        for label, key in (
            ("bare Flask", "flask_1_to_3_workers"),
            ("Flask + twilio-python + SQLite dedupe", "twilio_sqlite_1_to_3_workers"),
            ("webhook_kit SQLite", "kit_sqlite_1_to_3_workers"),
        )
    ]
    shown = [f"{label} {value:.2f}x" for label, value in parts if value is not None]
    return "Scaling from 1 to 3 workers: " + ", ".join(shown) if shown else ""


def _markdown(results: Results) -> str:
    settings, host = results["settings"], results["machine"]
    lines = [
        f"| webhook | app | req/s | p50 | p99 | {TIMES} bare Flask"
        f" | {TIMES} Flask + twilio-python |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["throughput"]:
        lines.append(
            f"| {row['scenario']} | {row['label']} | {row['rate']:.0f} | {row['p50_ms']:.2f} ms"
            f" | {row['p99_ms']:.2f} ms | {_times(row['vs_flask'])} | {_times(row['vs_twilio'])} |"
        )
    lines += [
        "",
        "| step | webhook_kit | twilio-python / werkzeug | faster |",
        "| --- | ---: | ---: | ---: |",
    ]
    for item in results["micro"]:
        peer = "-" if item["peer_us"] is None else f"{item['peer_us']:.1f} µs"
        lines.append(
            f"| {item['name']} | {item['webhook_kit_us']:.1f} µs | {peer}"
            f" | {_times(item['speedup'], 1)} |"
        )
    scaling = _scaling(results["ratios"])
    if scaling:
        lines += ["", scaling]
    rss = results["rss"]
    lines += [
        "",
        f"Worker RSS, SQLite ledger: {rss['before_mb']} MB → {rss['after_mb']} MB after "
        f"{rss['callbacks']:,} distinct status callbacks ({rss['growth_mb']:+} MB).",
        "",
        f"webhook_kit {host['commit']} on {host['cpu']}, {host['cores']} cores; "
        f"Python {host['python']}, Flask {host['flask']}, "
        f"Werkzeug {host['werkzeug']}, gunicorn {host['gunicorn']} (one sync worker per app, "
        "pinned; 3 unpinned in the workers run), "
        f"lxml {host['lxml']}, twilio {host['twilio']}; wrk -t{settings['threads']} "
        f"-c{settings['connections']} on loopback, {settings['rounds']} alternating rounds x "
        f"{settings['duration']} s, medians; ratios are medians of same-round ratios.",
    ]
    return "\n".join(lines)
