"""Prometheus metrics (``pip install 'webhook_kit[metrics]'``), on when ``WEBHOOK_KIT_METRICS=1``.

Every metric is one module-level line below: a new one (sends, jobs) is added here and
incremented where it happens. Label children are bound once, when a pipeline starts or on a
label value's first use, so a counted webhook costs a dict lookup and an ``inc()``.

Under several gunicorn workers each process counts in files in ``PROMETHEUS_MULTIPROC_DIR``
(prometheus_client's multiprocess mode; ``gunicorn.conf.py`` sets it up) and a scrape of any
worker adds up all of them. With metrics off this module is never imported.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        Counter,
        Histogram,
        generate_latest,
    )
    from prometheus_client.multiprocess import MultiProcessCollector
except ImportError as error:  # pragma: no cover - exercised without the extra installed
    raise ConfigurationError(
        "WEBHOOK_KIT_METRICS=1 needs prometheus_client: pip install 'webhook_kit[metrics]'"
    ) from error

if TYPE_CHECKING:
    from flask import Response

    from .errors import SendError
    from .ledger import StatusEntry

#: Webhooks answered, by route and outcome: handled, replayed (a duplicate got the first
#: answer), failed (a handler raised) or rejected, with the rejection's ``reason``.
WEBHOOKS = Counter("webhook_kit_webhooks", "Webhooks answered", ["route", "outcome", "reason"])
#: Seconds each handler took that returned, by kind (message, fallback, status, final).
HANDLER_SECONDS = Histogram(
    "webhook_kit_handler_seconds", "Time spent in a handler", ["kind", "handler"]
)
#: Status callbacks newly recorded in the ledger, by status and error code ("" for none).
LEDGER_TRANSITIONS = Counter(
    "webhook_kit_ledger_transitions", "Status callbacks recorded", ["status", "error_code"]
)
#: kit.send's API calls, by outcome: sent, refused (with Twilio's error code) or unreachable.
SENDS = Counter("webhook_kit_sends", "Messages sent through the API", ["outcome", "error_code"])
#: Background jobs run, by kind (message, status, final) and outcome: done, retried or dead.
JOBS = Counter("webhook_kit_jobs", "Background jobs run", ["kind", "outcome"])

#: How a webhook's answer maps to (outcome, reason) labels; rejections name their reason.
OUTCOMES: dict[str, tuple[str, str]] = {
    "handled": ("handled", ""),
    "replayed": ("replayed", ""),
    "failed": ("failed", ""),
    "partial": ("partial", ""),
    **{
        reason: ("rejected", reason)
        for reason in (
            "signature",
            "unauthorized",
            "bad_request",
            "too_large",
            "in_flight",
            "store_down",
        )
    },
}


class Observer:
    """What a pipeline counts, with its label children bound ahead of the requests."""

    __slots__ = ("_handlers", "_transitions", "webhooks")

    def __init__(self, routes: list[str]) -> None:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory and not os.path.isdir(directory):
            raise ConfigurationError(
                f"PROMETHEUS_MULTIPROC_DIR={directory!r} is not a directory: create it (empty) "
                "before the server starts, or unset it for a single process"
            )
        #: route -> answer outcome -> the bound ``inc`` of its counter child.
        self.webhooks: dict[str, dict[str, Callable[[], None]]] = {
            route: {
                outcome: WEBHOOKS.labels(route, *labels).inc for outcome, labels in OUTCOMES.items()
            }
            for route in routes
        }
        self._handlers: dict[tuple[str, str], Callable[[float], None]] = {}
        self._transitions: dict[tuple[str, int | None], Callable[[], None]] = {}

    def handler(self, kind: str, name: str, seconds: float) -> None:
        observe = self._handlers.get((kind, name))
        if observe is None:
            observe = self._handlers[kind, name] = HANDLER_SECONDS.labels(kind, name).observe
        observe(seconds)

    def recorded(self, entry: StatusEntry) -> None:
        key = (entry.status, entry.error_code)
        inc = self._transitions.get(key)
        if inc is None:
            code = "" if entry.error_code is None else str(entry.error_code)
            inc = self._transitions[key] = LEDGER_TRANSITIONS.labels(entry.status, code).inc
        inc()


def count_send(error: SendError | None) -> None:
    """Count one API call of ``kit.send``: sent when ``error`` is None."""
    if error is None:
        SENDS.labels("sent", "").inc()
    elif error.code is None:
        SENDS.labels("unreachable", "").inc()
    else:
        SENDS.labels("refused", str(error.code)).inc()


def count_job(kind: str, outcome: str) -> None:
    """Count one run of a background job: ``done``, ``retried`` or ``dead``."""
    JOBS.labels(kind, outcome).inc()


def exposition() -> bytes:
    """Every metric in Prometheus's text format, summed over all workers in multiprocess mode."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return bytes(generate_latest(REGISTRY))
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return bytes(generate_latest(registry))


def view() -> Response:
    """A Flask view serving :func:`exposition`: mount it where you like, behind your own auth."""
    from flask import Response

    return Response(exposition(), content_type=CONTENT_TYPE_LATEST)


def protected_view(token: str) -> Callable[[], Any]:
    """:func:`view` answering only ``Authorization: Bearer <token>`` (else 401)."""
    from flask import Response, request

    expected = f"Bearer {token}".encode()

    def serve() -> Response:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return Response(
                "metrics need Authorization: Bearer <WEBHOOK_KIT_METRICS_TOKEN>\n",
                401,
                {"WWW-Authenticate": "Bearer"},
                content_type="text/plain; charset=utf-8",
            )
        return view()

    return serve
