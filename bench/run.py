"""Entry point: ``python -m bench [--quick]`` or ``python bench/run.py`` from the repo root.

Each app runs under its own gunicorn (one sync worker; three in the workers run) in turn,
driven by wrk with the same threads, connections and duration, in rounds whose order
alternates (A B C ..., ... C B A), so that every ratio compares runs made side by side; the
report quotes medians.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

if __package__ in (None, ""):  # python bench/run.py: import the package, not the folder
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import psycopg
import redis

from bench import memory_store, micro, report
from bench.apps import EMPTY, MESSAGES, REPLY, STATUS
from bench.loadgen import TOKEN, BenchError, Load, Payloads, Server, ensure_wrk, run_wrk
from bench.report import (
    FLASK,
    FLASK_STATUS,
    FLASK_W3,
    KIT_MEMORY,
    KIT_POSTGRES,
    KIT_REDIS,
    KIT_SQLITE,
    KIT_SQLITE_W3,
    KIT_STATUS,
    TWILIO,
    TWILIO_POSTGRES,
    TWILIO_SQLITE,
    TWILIO_SQLITE_W3,
    WORKERS,
)
from webhook_kit.signature import compute_signature
from webhook_kit.testing import inbound_sms, status_callback

REDIS_URL = "redis://127.0.0.1:6379/0"
KIT_STATUS_POSTGRES = "kit_status_postgres"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
HANDLERS = "examples.echo_bot"
WARM_UP_SECONDS = 0.5
PROBE = 200  # requests that first measure an app's rate
MARGIN = 1.5  # request files hold 1.5x what the measured rate needs


@dataclass(frozen=True)
class App:
    """One app under test and what a correct answer to it contains."""

    key: str
    label: str
    scenario: str  # "inbound" or "status"
    target: str  # gunicorn's APP_MODULE, imported from the repository root
    expect: bytes  # a 200 answer to a signed webhook contains this
    store: str | None = None  # webhook_kit's store: memory, sqlite, redis or postgres
    verifies: bool = False  # a bad signature must be answered 403
    workers: int = 1  # gunicorn sync workers; more than one runs unpinned

    @property
    def path(self) -> str:
        return STATUS if self.scenario == "status" else MESSAGES


INBOUND = [
    App("raw", "raw WSGI (ceiling)", "inbound", "bench.apps:raw", REPLY),
    App(FLASK, "bare Flask, request.form", "inbound", "bench.apps:bare_flask", REPLY),
    App(TWILIO, "Flask + twilio-python", "inbound", "bench.apps:twilio_flask", REPLY, None, True),
    App(TWILIO_SQLITE, "Flask + twilio-python + SQLite dedupe", "inbound",
        "bench.apps:twilio_sqlite", REPLY, "sqlite", True),
    App(KIT_MEMORY, "webhook_kit, memory store", "inbound", "wsgi:app", REPLY, "memory", True),
    App(KIT_SQLITE, "webhook_kit, SQLite store", "inbound", "wsgi:app", REPLY, "sqlite", True),
    App(TWILIO_POSTGRES, "Flask + twilio-python + PostgreSQL dedupe", "inbound",
        "bench.apps:twilio_postgres", REPLY, "postgres", True),
    App(KIT_POSTGRES, "webhook_kit, PostgreSQL store", "inbound", "wsgi:app", REPLY, "postgres",
        True),
]  # fmt: skip
STATUS_APPS = [
    App(FLASK_STATUS, "bare Flask, request.form", "status", "bench.apps:bare_flask", EMPTY),
    App(KIT_STATUS, "webhook_kit, SQLite ledger", "status", "wsgi:app", EMPTY, "sqlite", True),
    App(KIT_REDIS, "webhook_kit, Redis ledger", "status", "wsgi:app", EMPTY, "redis", True),
    App(KIT_STATUS_POSTGRES, "webhook_kit, PostgreSQL ledger", "status", "wsgi:app", EMPTY,
        "postgres", True),
]  # fmt: skip
# Workers sharing one SQLite file must not serialise on its write lock: 3 workers each,
# nothing pinned, against bare Flask with 3 workers.
WORKERS_APPS = [
    App(FLASK_W3, "bare Flask, 3 workers", WORKERS, "bench.apps:bare_flask", REPLY, workers=3),
    App(TWILIO_SQLITE_W3, "Flask + twilio-python + SQLite dedupe, 3 workers", WORKERS,
        "bench.apps:twilio_sqlite", REPLY, "sqlite", True, workers=3),
    App(KIT_SQLITE_W3, "webhook_kit, SQLite, 3 workers", WORKERS, "wsgi:app", REPLY, "sqlite",
        True, workers=3),
]  # fmt: skip


@dataclass(frozen=True)
class Settings:
    quick: bool
    rounds: int
    duration: int
    connections: int
    threads: int
    rss_callbacks: int
    micro_repeat: int
    micro_batch: float


@dataclass
class Session:
    """What the run shares: tools, payload pools, per-app rate estimates, the work folder."""

    settings: Settings
    wrk: str
    workdir: Path
    redis_up: bool
    postgres_up: bool
    inbound: Payloads = field(default_factory=lambda: Payloads(inbound_sms))
    status: Payloads = field(default_factory=lambda: Payloads(status_callback))
    rates: dict[str, float] = field(default_factory=dict)
    starts: int = 0
    warnings: list[str] = field(default_factory=list)

    def payloads(self, app: App) -> Payloads:
        return self.status if app.scenario == "status" else self.inbound


def main(argv: list[str] | None = None) -> int:
    settings = _parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="webhook_kit_bench_") as workdir:
            session = Session(settings, ensure_wrk(), Path(workdir), _redis_up(), _postgres_up())
            results = _run(session)
    except BenchError as error:
        print(f"\nBENCHMARK FAILED: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: every server was stopped", file=sys.stderr)
        return 130
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    report.emit(results)
    return 0


def _parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds (< 60 s)")
    parser.add_argument("--rounds", type=int, help="rounds per app (default 8, quick 2)")
    parser.add_argument("--duration", type=int, help="seconds per wrk run (default 2, quick 1)")
    parser.add_argument("--connections", type=int, default=8, help="wrk -c (default 8)")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t (default 1)")
    parser.add_argument(
        "--rss-callbacks", type=int, help="status callbacks for the RSS test (100000, quick 5000)"
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    return Settings(
        quick=quick,
        rounds=args.rounds or (2 if quick else 8),
        duration=args.duration or (1 if quick else 2),
        connections=args.connections,
        threads=args.threads,
        rss_callbacks=args.rss_callbacks or (5_000 if quick else 100_000),
        micro_repeat=3 if quick else 7,
        micro_batch=0.03 if quick else 0.1,
    )


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: servers are stopped


def _run(session: Session) -> dict[str, object]:
    settings = session.settings
    print(report.banner(asdict(settings)), flush=True)
    print("micro benchmarks...", flush=True)
    micros = micro.run(repeat=settings.micro_repeat, batch_seconds=settings.micro_batch)
    up = {"redis": session.redis_up, "postgres": session.postgres_up}
    apps = [app for app in INBOUND + STATUS_APPS + WORKERS_APPS if up.get(app.store or "", True)]
    if not session.redis_up:
        session.warnings.append(f"Redis not reachable at {REDIS_URL}: Redis ledger skipped")
    if not session.postgres_up:
        session.warnings.append(f"PostgreSQL not reachable at {POSTGRES_URL}: its runs skipped")
    runs: dict[str, list[Load]] = {app.key: [] for app in apps}
    for round_index in range(settings.rounds):
        order = apps if round_index % 2 == 0 else apps[::-1]
        for app in order:
            load = _measure(session, app)
            runs[app.key].append(load)
            print(
                f"round {round_index + 1}/{settings.rounds}  {app.scenario:9} {app.label:30}"
                f" {load.rate:6.0f} req/s  p50 {load.p50_ms:5.2f} ms  p99 {load.p99_ms:5.2f} ms"
                f"  ({load.sent} sent of {load.prepared} prepared)",
                flush=True,
            )
    rss = _memory(session)
    messages = 20_000 if settings.quick else 100_000
    print(f"memory store: bytes per inbound message over {messages:,}...", flush=True)
    store_bytes = {"messages": messages, "bytes": memory_store.bytes_per_message(messages)}
    return report.collect(asdict(settings), apps, runs, micros, rss, session.warnings, store_bytes)


@contextmanager
def _store_env(session: Session, store: str | None) -> Iterator[dict[str, str]]:
    """The environment of one server start, with a fresh store that is removed afterwards."""
    session.starts += 1
    env = {"TWILIO_AUTH_TOKEN": TOKEN}
    if store is None:
        yield env
        return
    env["WEBHOOK_KIT_HANDLERS"] = HANDLERS
    if store == "memory":
        env["WEBHOOK_KIT_STORE"] = "memory://"
        yield env
    elif store == "sqlite":
        path = session.workdir / f"store-{session.starts}.db"
        env["WEBHOOK_KIT_STORE"] = f"sqlite:///{path}"
        try:
            yield env
        finally:
            for suffix in ("", "-wal", "-shm", "-writer"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    elif store == "postgres":
        schema = f"webhook_kit_bench_{session.starts}_{time.time_ns()}"
        env["WEBHOOK_KIT_STORE"] = f"{POSTGRES_URL}?schema={schema}"
        try:
            yield env
        finally:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as db:
                db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    else:
        prefix = f"webhook_kit_bench:{session.starts}:{time.time_ns()}"
        env["WEBHOOK_KIT_STORE"] = f"{REDIS_URL}?prefix={prefix}"
        try:
            yield env
        finally:
            delete_redis_keys(prefix + ":")


def _measure(session: Session, app: App) -> Load:
    """Start ``app``, check it answers correctly, warm it up, measure it, stop it."""
    settings = session.settings
    with (
        _store_env(session, app.store) as env,
        Server(app.target, env, app.workers) as server,
    ):
        _smoke_test(server, app, session.payloads(app))
        used = _warm_up(session, app, server)
        count = math.ceil(session.rates[app.key] * settings.duration * MARGIN)
        load = _drive(
            session,
            app,
            server,
            first=1 + used,
            count=count + 2 * settings.connections,
            duration=settings.duration,
            drain=False,
        )
    if load.wrapped:
        session.warnings.append(
            f"{app.label}: wrk wrapped around its {load.prepared} prepared requests "
            f"(sent {load.sent}): some MessageSids were repeated"
        )
    return load


def _warm_up(session: Session, app: App, server: Server) -> int:
    """About half a second of load, sent as a number of requests (wrk counts whole seconds).

    An app's first warm-up starts with ``PROBE`` requests, to measure the rate that sizes
    this and every later request file of the app. Returns how many forms were used.
    """
    used = 0
    if app.key not in session.rates:
        used = _drive(session, app, server, first=1, count=PROBE, duration=30, drain=True).sent
    count = math.ceil(session.rates[app.key] * WARM_UP_SECONDS)
    warm_up = _drive(session, app, server, first=1 + used, count=count, duration=30, drain=True)
    return used + warm_up.sent


def _drive(
    session: Session,
    app: App,
    server: Server,
    *,
    first: int,
    count: int,
    duration: int,
    drain: bool,
) -> Load:
    """One wrk run on a file of freshly signed requests ``first .. first + count - 1``.

    Fails loudly if any answer was not 2xx, or a connection failed or timed out.
    """
    url = server.url(app.path)
    requests = session.workdir / "requests.txt"
    session.payloads(app).write(requests, url, first, count)
    load = run_wrk(
        session.wrk,
        url,
        requests,
        duration=duration,
        connections=session.settings.connections,
        threads=session.settings.threads,
        drain=drain,
        pinned=app.workers == 1,
    )
    if load.non2xx or load.socket_errors or load.timeouts:
        raise BenchError(
            f"{app.label}: {load.non2xx} non-2xx answers, {load.socket_errors} socket errors, "
            f"{load.timeouts} timeouts in {load.requests} requests\n{server.errors()[-2000:]}"
        )
    session.rates[app.key] = max(load.rate, session.rates.get(app.key, 0.0))
    return load


def _smoke_test(server: Server, app: App, payloads: Payloads) -> None:
    """A signed webhook gets the expected 200; where the app verifies, a forged one gets 403."""
    pairs, body = payloads.form(0)
    url = server.url(app.path)
    if app.verifies:
        forged = server.post_form(app.path, body, compute_signature(url, pairs, "wrong-token"))
        if forged.status != 403:
            raise BenchError(f"{app.label} answered a forged signature with {forged.status}")
    reply = server.post_form(app.path, body, compute_signature(url, pairs, TOKEN))
    if reply.status != 200 or app.expect not in reply.body:
        raise BenchError(
            f"{app.label} answered a signed webhook with {reply.status}: {reply.body[:300]!r}"
            f"\n{server.errors()}"
        )


def _memory(session: Session) -> dict[str, float | int]:
    """Worker RSS before and after many distinct status callbacks (SQLite ledger)."""
    app = next(app for app in STATUS_APPS if app.key == KIT_STATUS)
    count = session.settings.rss_callbacks
    print(f"RSS: {count:,} distinct status callbacks to {app.label}...", flush=True)
    with _store_env(session, app.store) as env, Server(app.target, env) as server:
        _smoke_test(server, app, session.status)
        used = _warm_up(session, app, server)
        before = server.rss_mb()
        expected_seconds = count / session.rates[app.key]
        load = _drive(
            session,
            app,
            server,
            first=1 + used,
            count=count,
            duration=math.ceil(expected_seconds * 3 + 30),
            drain=True,
        )
        if load.sent < count:
            raise BenchError(f"RSS test: wrk sent {load.sent} of {count} callbacks in time")
        server.request("GET", "/healthz")  # queued behind the last callbacks: they are done
        after = server.rss_mb()
    return {
        "callbacks": count,
        "before_mb": round(before, 1),
        "after_mb": round(after, 1),
        "growth_mb": round(after - before, 1),
        "rate": round(load.rate),
    }


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def _postgres_up() -> bool:
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


def delete_redis_keys(prefix: str, url: str = REDIS_URL) -> None:
    """Delete every key starting with ``prefix`` (a store's, after its run)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=prefix + "*", count=1000):
            batch.append(key)
            if len(batch) == 1000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()


if __name__ == "__main__":
    raise SystemExit(main())
