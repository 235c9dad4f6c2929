"""``python -m bench.jobs [--quick]``: how fast a webhook with a slow background handler is
answered.

Two gunicorn servers (SQLite store, one worker each) answer the same signed messages: one
whose handler sleeps ``--sleep`` seconds (20 by default) with ``background=True``, and one
that answers the same TwiML inline at once (the floor). The client alternates between them,
message by message, so both see the same machine. The background handler's replies go to a
``webhook-kit emulator`` subprocess; its jobs keep running while the answers are timed.
Reported: median and p99 answer latency of each, and their ratio. The last line is
machine-readable.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

if __package__ in (None, ""):  # python bench/jobs.py: import the package, not the folder
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from webhook_kit.emulator.throughput import UNQUEUED
from webhook_kit.signature import compute_signature
from webhook_kit.testing import inbound_sms

ROOT = Path(__file__).resolve().parent.parent
TOKEN, ACCOUNT = "bench-token", "AC" + "be7c" * 8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 messages, 2 s handler (~10 s)")
    parser.add_argument("--messages", type=int, help="messages per server (default 100)")
    parser.add_argument("--sleep", type=float, help="seconds the handler sleeps (default 20)")
    args = parser.parse_args(argv)
    count = args.messages or (20 if args.quick else 100)
    sleep = args.sleep if args.sleep is not None else (2.0 if args.quick else 20.0)
    with tempfile.TemporaryDirectory() as scratch:
        emulator_port = _free_port()
        emulator = _spawn(
            [
                sys.executable,
                "-m",
                "webhook_kit.cli",
                "emulator",
                "--port",
                str(emulator_port),
                *UNQUEUED,
            ],
            {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN},
        )
        servers = {}
        try:
            _wait(f"http://127.0.0.1:{emulator_port}/_emulator/health")
            for name, background in (("background", "1"), ("inline", "0")):
                port = _free_port()
                env = {
                    "WEBHOOK_KIT_HANDLERS": "bench.jobs_bot",
                    "BENCH_BACKGROUND": background,
                    "BENCH_SLEEP": str(sleep),
                    "TWILIO_AUTH_TOKEN": TOKEN,
                    "WEBHOOK_KIT_STORE": f"sqlite:///{scratch}/{name}.db",
                    "WEBHOOK_KIT_PUBLIC_URL": f"http://127.0.0.1:{port}",
                    "WEBHOOK_KIT_TWILIO_BASE_URL": f"http://127.0.0.1:{emulator_port}",
                    "WEBHOOK_KIT_ACCOUNT_SID": ACCOUNT,
                    "WEBHOOK_KIT_JOB_THREADS": "8",
                    "PYTHONPATH": str(ROOT),
                }
                args = ["--bind", f"127.0.0.1:{port}", "--workers", "1", "--log-level", "error"]
                servers[name] = (
                    port,
                    _spawn([sys.executable, "-m", "gunicorn", "wsgi:app", *args], env),
                )
                _wait(f"http://127.0.0.1:{port}/healthz")
            timings: dict[str, list[float]] = {name: [] for name in servers}
            for index in range(count):
                for name, (port, _) in servers.items():
                    timings[name].append(_post(port, f"bench {name} {index}"))
        finally:
            for _, process in servers.values():
                process.terminate()
            emulator.terminate()
    for name, values in timings.items():
        print(f"{name:>10}: median {_ms(statistics.median(values))}  p99 {_ms(_p99(values))}")
    ratio = statistics.median(timings["background"]) / statistics.median(timings["inline"])
    print(f"background answer / inline answer (median): {ratio:.2f}x, handler sleeps {sleep:g} s")
    p99 = _p99(timings["background"]) * 1000
    print(f"RESULT jobs_answer_ratio={ratio:.3f} background_p99_ms={p99:.1f}")
    return 0


def _post(port: int, body: str) -> float:
    form = list(inbound_sms(body).items())
    url = f"http://127.0.0.1:{port}/twilio/messages"
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": compute_signature(url, form, TOKEN),
    }
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    connection.request("POST", "/twilio/messages", urlencode(form), headers)
    response = connection.getresponse()
    response.read()
    elapsed = time.perf_counter() - started
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"answer {response.status} from port {port}")
    return elapsed


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args,
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within 30 s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


if __name__ == "__main__":
    raise SystemExit(main())
