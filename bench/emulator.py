"""``python -m bench.emulator [--quick]``: the Twilio emulator beside a bare Flask JSON endpoint.

Two figures, each next to its baseline measured in the same run, on the same server stack
(gunicorn, one ``gthread`` worker each, as ``webhook-kit emulator`` serves) and the same client
threads, each keeping its connection alive as the official client's ``requests`` session does:

- messages created per second (``POST Messages.json`` through the emulator's checks, state
  and scheduling) against a Flask view that parses the form and returns constant JSON;
- status callbacks delivered per second (signed, posted by the emulator's delivery pool to
  a bare Flask receiver) against that receiver's own rate for the same POSTs sent directly.

The emulator's senders are unqueued (``throughput.UNQUEUED``): a long code's documented
1 segment/s would measure Twilio's throttling, not the emulator. Rounds alternate their
order; the report quotes medians and same-round ratios.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

if __package__ in (None, ""):  # python bench/emulator.py: import the package, not the folder
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.apps import STATUS
from bench.loadgen import BenchError
from webhook_kit.emulator.throughput import UNQUEUED
from webhook_kit.signature import compute_signature
from webhook_kit.testing import status_callback

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "AC" + "b" * 32
TOKEN = "bench-token"
AUTH = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
CREATE_PATH = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
FORM = "application/x-www-form-urlencoded"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _serve(command: list[str], port: int, health: str) -> Iterator[int]:
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise BenchError(f"{command[2:4]} exited with {process.returncode}")
            try:
                if _request(port, "GET", health)[0] == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError(f"{command[2:4]} did not start within 30 s") from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=15)


def _request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class _KeepAlive:
    """One persistent connection per client thread and port (reopened if the server closed it)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def request(
        self, port: int, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> int:
        connections: dict[int, http.client.HTTPConnection] = self._local.__dict__.setdefault(
            "connections", {}
        )
        for attempt in range(2):
            connection = connections.get(port)
            if connection is None:
                connection = connections[port] = http.client.HTTPConnection(
                    "127.0.0.1", port, timeout=30
                )
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                return response.status
            except (OSError, http.client.HTTPException):
                connection.close()
                del connections[port]
                if attempt:
                    raise
        raise AssertionError("unreachable")


def _hammer(threads: int, seconds: float, call: Callable[[int], bool]) -> float:
    """Successful calls per second from ``threads`` threads for ``seconds``."""
    done = [0] * threads
    stop = time.monotonic() + seconds

    def worker(index: int) -> None:
        while time.monotonic() < stop:
            done[index] += call(index)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.monotonic()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(done) / (time.monotonic() - started)


def _create_body(index: int, callback: str | None = None) -> bytes:
    fields = {"To": f"+1555{index % 10_000_000:07d}", "From": "+15017122661", "Body": "Hello"}
    if callback:
        fields["StatusCallback"] = callback
    return urlencode(fields).encode()


def _creates_per_second(port: int, threads: int, seconds: float) -> float:
    headers = {"Content-Type": FORM, "Authorization": AUTH}
    client = _KeepAlive()
    return _hammer(
        threads,
        seconds,
        lambda i: client.request(port, "POST", CREATE_PATH, _create_body(i), headers) == 201,
    )


def _direct_callbacks_per_second(port: int, threads: int, seconds: float) -> float:
    fields = status_callback("SM" + "1" * 32, "delivered")
    url = f"http://127.0.0.1:{port}{STATUS}"
    headers = {"Content-Type": FORM, "X-Twilio-Signature": compute_signature(url, fields, TOKEN)}
    body = urlencode(fields).encode()
    client = _KeepAlive()
    return _hammer(
        threads, seconds, lambda _: client.request(port, "POST", STATUS, body, headers) == 200
    )


def _emulated_callbacks_per_second(emulator: int, receiver: int, threads: int, count: int) -> float:
    """Create ``count`` messages with a callback URL; time until all 3 callbacks each arrived."""
    _request(receiver, "POST", "/reset")
    callback = f"http://127.0.0.1:{receiver}{STATUS}"
    headers = {"Content-Type": FORM, "Authorization": AUTH}
    started = time.monotonic()
    per_thread = -(-count // threads)
    client = _KeepAlive()

    def create(offset: int) -> None:
        for index in range(offset, min(offset + per_thread, count)):
            client.request(emulator, "POST", CREATE_PATH, _create_body(index, callback), headers)

    pool = [threading.Thread(target=create, args=(t * per_thread,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    expected = 3 * count  # sending, sent, delivered
    deadline = time.monotonic() + 120
    while True:
        received = json.loads(_request(receiver, "GET", "/count")[1])["count"]
        if received >= expected:
            return received / (time.monotonic() - started)
        if time.monotonic() > deadline:
            raise BenchError(f"only {received} of {expected} callbacks arrived within 120 s")
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short round (< 20 s)")
    parser.add_argument("--rounds", type=int, help="rounds (default 5, quick 1)")
    parser.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 5)
    seconds = 1.0 if args.quick else 3.0
    messages = 150 if args.quick else 1000
    bare_port, emulator_port = _free_port(), _free_port()
    bare = [sys.executable, "-m", "bench.emulator", "--serve-bare", str(bare_port)]
    emulator = [
        sys.executable, "-m", "webhook_kit.cli", "emulator", "--port", str(emulator_port),
        "--speed", "1000", "--account-sid", ACCOUNT, "--auth-token", TOKEN, *UNQUEUED,
    ]  # fmt: skip
    rows: dict[str, list[float]] = {k: [] for k in ("bare", "create", "direct", "callbacks")}
    try:
        with (
            _serve(bare, bare_port, "/healthz"),
            _serve(emulator, emulator_port, "/_emulator/health"),
        ):
            for round_ in range(rounds):
                order = [0, 1] if round_ % 2 == 0 else [1, 0]
                for step in order:
                    if step == 0:
                        rows["bare"].append(_creates_per_second(bare_port, args.threads, seconds))
                        rows["direct"].append(
                            _direct_callbacks_per_second(bare_port, args.threads, seconds)
                        )
                    else:
                        rows["create"].append(
                            _creates_per_second(emulator_port, args.threads, seconds)
                        )
                        rows["callbacks"].append(
                            _emulated_callbacks_per_second(
                                emulator_port, bare_port, args.threads, messages
                            )
                        )
    except BenchError as error:
        print(f"\nBENCHMARK FAILED: {error}", file=sys.stderr)
        return 1
    create_ratio = statistics.median(
        c / b for c, b in zip(rows["create"], rows["bare"], strict=True)
    )
    callback_ratio = statistics.median(
        c / d for c, d in zip(rows["callbacks"], rows["direct"], strict=True)
    )
    median = {key: statistics.median(values) for key, values in rows.items()}
    print("| what | emulator /s | bare Flask JSON /s | vs bare Flask |")
    print("| --- | ---: | ---: | ---: |")
    created, bare = median["create"], median["bare"]
    print(f"| messages created | {created:.0f} | {bare:.0f} | {create_ratio:.2f}x |")
    print(
        f"| status callbacks delivered | {median['callbacks']:.0f} | {median['direct']:.0f} "
        f"| {callback_ratio:.2f}x |"
    )
    print(f"({rounds} round(s), {args.threads} client threads, {os.cpu_count()} CPUs)")
    print(f"emulator_create_vs_flask={create_ratio:.2f}", end=" ")
    print(f"emulator_callbacks_vs_flask={callback_ratio:.2f}")
    return 0


def _serve_bare(port: int) -> None:
    """The baseline app, served exactly as ``webhook-kit emulator`` serves the emulator."""
    from gunicorn.app.base import BaseApplication

    from bench.apps import bare_json
    from webhook_kit.emulator.serve import gunicorn_settings, listen

    sock = listen("127.0.0.1", port)

    class Bare(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in gunicorn_settings([sock]).items():
                self.cfg.set(key, value)

        def load(self) -> object:
            return bare_json

    Bare().run()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-bare":
        _serve_bare(int(sys.argv[2]))
    else:
        raise SystemExit(main())
