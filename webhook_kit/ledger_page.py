"""A read-only page of the delivery ledger, at ``<prefix>/ledger`` (``WEBHOOK_KIT_LEDGER_PAGE=1``).

Off by default. ``GET <prefix>/ledger`` lists records newest first (filters ``To``, ``From``,
``Status``, ``Direction``; ``Cursor`` pages), ``GET <prefix>/ledger/<sid>`` shows one with
every callback in its history. It answers without credentials only to a request from
loopback naming a loopback host with no proxy headers (a developer beside the app, e.g. the
emulator's inspector linking here); anything else needs Basic auth with the account SID and
an auth token. Pages are rendered with Jinja's autoescaping under a Content-Security-Policy
that runs no script, so a body of ``<script>`` is shown as text.
"""

from __future__ import annotations

import hmac
import secrets
from importlib.resources import files
from typing import Any, Final

from flask import Blueprint, Response, g, render_template_string, request, url_for

from .config import Settings
from .ledger import Ledger, LedgerQueryError, Records, record_json
from .pages import host_name, is_loopback, protect
from .status import MessageStatus

#: Records per page.
PAGE_SIZE: Final = 50
#: Headers a proxy adds: a request carrying one did not come from a local developer.
_PROXY_HEADERS: Final = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP")
_FILTERS: Final = {"To": "to", "From": "from_", "Status": "status", "Direction": "direction"}
_DIRECTIONS: Final = ("inbound", "outbound-api", "outbound-reply", "outbound-call")


def is_local() -> bool:
    """True for a request from loopback, to a loopback host name, not through a proxy."""
    return (
        is_loopback(request.remote_addr)
        and is_loopback(host_name(request.host))
        and not any(name in request.headers for name in _PROXY_HEADERS)
    )


def ledger_blueprint(store: Records, settings: Settings) -> Blueprint:
    """The ledger page over ``store``, guarded as the module says."""
    template = files(__package__).joinpath("templates", "ledger.html").read_text("utf-8")
    ledger = Ledger(store)
    page = Blueprint("webhook_kit_ledger", __name__)

    @page.before_request
    def guard() -> Response | None:
        g.style_nonce = secrets.token_urlsafe(16)
        if is_local() or _authorised(settings):
            return None
        return _challenge(settings)

    @page.after_request
    def headers(response: Response) -> Response:
        csp = (
            f"default-src 'none'; style-src 'nonce-{g.get('style_nonce', '')}'; "
            "img-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )
        return protect(response, csp)

    @page.get("/ledger")
    def listing() -> tuple[str, int]:
        filters: dict[str, Any] = {}
        for name, key in _FILTERS.items():
            value = request.args.get(name, "").strip()
            if value:
                filters[key] = value
        error = _check(filters)
        records: tuple[Any, ...] = ()
        cursor = None
        if error is None:
            try:
                found = ledger.find(
                    **filters, limit=PAGE_SIZE, cursor=request.args.get("Cursor") or None
                )
            except LedgerQueryError as problem:
                error = str(problem)
            else:
                records, cursor = found.records, found.cursor
        body = render_template_string(
            template,
            view="list",
            records=records,
            older=(
                url_for(".listing", **_with_cursor(request.args.to_dict(), cursor))
                if cursor
                else None
            ),
            args=request.args,
            statuses=[status.value for status in MessageStatus],
            directions=_DIRECTIONS,
            error=error,
            nonce=g.style_nonce,
        )
        return body, 400 if error else 200

    @page.get("/ledger/<sid>")
    def detail(sid: str) -> tuple[str, int]:
        record = ledger.get(sid) if len(sid) <= 64 else None
        body = render_template_string(
            template,
            view="detail",
            record=record,
            sid=sid,
            fields=record_json(record) if record else None,
            nonce=g.style_nonce,
        )
        return body, 200 if record else 404

    return page


def _with_cursor(args: dict[str, str], cursor: str) -> dict[str, Any]:
    """The query of the next page: the same filters, the new cursor."""
    return {**args, "Cursor": cursor}


def _check(filters: dict[str, Any]) -> str | None:
    """Why a filter cannot be used, or None."""
    status = filters.get("status")
    if status is not None and not MessageStatus(status).known:
        return f"Status {status!r} is not a message status"
    direction = filters.get("direction")
    if direction is not None and direction not in _DIRECTIONS:
        return f"Direction {direction!r} is not one of {', '.join(_DIRECTIONS)}"
    return None


def _authorised(settings: Settings) -> bool:
    """Basic auth with the account SID and one of the auth tokens."""
    auth = request.authorization
    if auth is None or auth.type != "basic" or settings.account_sid is None:
        return False
    user_ok = hmac.compare_digest((auth.username or "").encode(), settings.account_sid.encode())
    password = (auth.password or "").encode()
    token_ok = any(hmac.compare_digest(password, t.encode()) for t in settings.auth_tokens)
    return user_ok and token_ok


def _challenge(settings: Settings) -> Response:
    if settings.account_sid is None or not settings.auth_tokens:
        text = (
            "The ledger page is open from loopback only: set WEBHOOK_KIT_ACCOUNT_SID and "
            "the auth token to open it from elsewhere with Basic auth.\n"
        )
        return Response(text, 403, mimetype="text/plain")
    return Response(
        "Sign in with the account SID and auth token.\n",
        401,
        {"WWW-Authenticate": 'Basic realm="webhook_kit ledger"'},
        mimetype="text/plain",
    )
