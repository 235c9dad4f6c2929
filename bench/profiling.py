"""Where a request's time goes: ``python -m bench.profiling [--store URL] [--route status]``.

Drives each app in-process through ``app.wsgi_app(environ, start_response)`` (no server, no
HTTP), with a prebuilt environ per request: a fresh BytesIO body, a distinct MessageSid, a
valid signature. Prints the time per request without a profiler, then cProfile's largest
entries for webhook_kit's standalone app (``--store``, default memory; an SQLite store goes in
a temporary file) and for bare Flask, in µs per request. cProfile's own cost inflates
functions that are called often; compare within one table. In-process figures do not depend
on a load generator sharing the machine, so they compare changes on a busy machine too.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import site
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

if __package__ in (None, ""):  # python bench/profiling.py: import the package, not the folder
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from flask import Flask, Response

from bench.apps import MESSAGES, REPLY, STATUS, TWIML_TYPE, bare_flask, raw, twilio_flask
from bench.loadgen import FORM_TYPE, ROOT, TOKEN
from webhook_kit.signature import compute_signature
from webhook_kit.standalone import create_app
from webhook_kit.testing import inbound_sms, status_callback

HOST = "127.0.0.1:8000"
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profiling", description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000, help="requests per pass")
    parser.add_argument("--top", type=int, default=25, help="profile entries to show")
    parser.add_argument(
        "--store", default="memory://", help="webhook_kit's store URL; sqlite: a temporary file"
    )
    parser.add_argument("--route", choices=("messages", "status"), default="messages")
    args = parser.parse_args(argv)
    os.environ["TWILIO_AUTH_TOKEN"] = TOKEN  # the twilio recipe reads it per request
    with tempfile.TemporaryDirectory(prefix="webhook_kit_profile_") as workdir:
        store = f"sqlite:///{workdir}/kit.db" if args.store == "sqlite" else args.store
        if not store.startswith(("redis://", "rediss://")):
            return _profile(args, store)
        from bench.run import delete_redis_keys

        prefix = f"webhook_kit_profile_{os.getpid()}"  # its keys are deleted afterwards
        separator = "&" if "?" in store else "?"
        try:
            return _profile(args, f"{store}{separator}prefix={prefix}")
        finally:
            delete_redis_keys(prefix + ":", store.partition("?")[0])


def _profile(args: argparse.Namespace, store: str) -> int:
    kit = create_app(
        {
            "TWILIO_AUTH_TOKEN": TOKEN,
            "WEBHOOK_KIT_HANDLERS": "examples.echo_bot",
            "WEBHOOK_KIT_STORE": store,
        }
    )
    path = MESSAGES if args.route == "messages" else STATUS
    flask_only = Flask("bench.flask_only")
    flask_only.add_url_rule(path, "constant", _constant, methods=["POST"])
    kit_name = f"webhook_kit, {store.partition(':')[0]} store"
    apps: dict[str, WsgiApp] = {
        "raw WSGI": raw,
        "Flask, constant reply, no form": flask_only.wsgi_app,
        "bare Flask, request.form": bare_flask.wsgi_app,
        kit_name: kit.wsgi_app,
    }
    if args.route == "messages":
        apps["Flask + twilio-python"] = twilio_flask.wsgi_app
    count = args.requests
    print(f"building {count * 4:,} signed requests to {path}...", flush=True)
    bodies = _signed_bodies(count * 4, path)
    # Each pass of an app gets its own slice: webhook_kit must never see a MessageSid twice.
    print(f"\nin-process time per request, {count:,} requests, no profiler (best of 3):")
    for name, app in apps.items():
        best = min(_timed(app, path, bodies[count * i : count * (i + 1)]) for i in range(3))
        print(f"  {name:32} {best * 1e6 / count:7.1f} µs  ({count / best:,.0f} req/s in-process)")
    for name in (kit_name, "bare Flask, request.form"):
        profiler = cProfile.Profile()
        profiler.enable()
        _drive(apps[name], path, bodies[count * 3 :])
        profiler.disable()
        _print_profile(name, profiler, count, args.top)
    return 0


def _constant() -> Response:
    """What Flask's request and response machinery costs on its own."""
    return Response(REPLY, content_type=TWIML_TYPE)


def _signed_bodies(count: int, path: str) -> list[tuple[bytes, str]]:
    make = inbound_sms if path == MESSAGES else status_callback
    bodies = []
    for _ in range(count):
        pairs = list(make().items())
        signature = compute_signature(f"http://{HOST}{path}", pairs, TOKEN)
        bodies.append((urlencode(pairs).encode(), signature))
    return bodies


def _environ(path: str, body: bytes, signature: str) -> dict[str, Any]:
    """What gunicorn's sync worker passes for the benchmark's request."""
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "RAW_URI": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": FORM_TYPE,
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": HOST,
        "HTTP_X_TWILIO_SIGNATURE": signature,
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": False,
        "wsgi.version": (1, 0),
    }


def _drive(app: WsgiApp, path: str, bodies: list[tuple[bytes, str]]) -> None:
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], *exc: object) -> None:
        statuses.append(status)

    for body, signature in bodies:
        result = app(_environ(path, body, signature), start_response)
        b"".join(result)
        close = getattr(result, "close", None)
        if close is not None:
            close()
    failed = [status for status in statuses if not status.startswith("200")]
    if failed:
        raise SystemExit(f"{len(failed)} requests failed, first: {failed[0]}")


def _timed(app: WsgiApp, path: str, bodies: list[tuple[bytes, str]]) -> float:
    start = time.perf_counter()
    _drive(app, path, bodies)
    return time.perf_counter() - start


def _print_profile(name: str, profiler: cProfile.Profile, count: int, top: int) -> None:
    stats = pstats.Stats(profiler)
    entries = stats.stats  # type: ignore[attr-defined]
    rows = []
    for (path, line, function), (_, calls, own, cumulative, _) in entries.items():
        where = f"{_short(path)}:{line}({function})" if line else function
        rows.append((cumulative, own, calls, where))
    for title, key in (("cumulative", 0), ("own time", 1)):
        print(f"\n{name}: top {top} by {title}, µs per request under cProfile")
        print(f"  {'cumul':>7} {'own':>7} {'calls/req':>9}  function")
        for row in sorted(rows, key=lambda row: row[key], reverse=True)[:top]:
            cumulative, own, calls, where = row
            print(
                f"  {cumulative * 1e6 / count:7.2f} {own * 1e6 / count:7.2f}"
                f" {calls / count:9.2f}  {where}"
            )


def _short(path: str) -> str:
    """A module path without the site-packages, repository or standard library prefix."""
    for prefix in (*site.getsitepackages(), str(ROOT), sysconfig.get_paths()["stdlib"]):
        if path.startswith(prefix):
            return path[len(prefix) :].lstrip("/")
    return path


if __name__ == "__main__":
    raise SystemExit(main())
