"""The inspector: a page at the emulator's base URL to watch and drive the offline account.

The page (``static/inspector.*``, served by the package: no build step, nothing fetched from
elsewhere) reads one JSON view of the account, ``GET /_emulator/overview``, again each time
``GET /_emulator/events`` (server-sent events) says something changed. It drives the
emulator through the control API itself (``/_emulator/send``, ``/advance``, ``/rules``,
``/numbers``, ``/reset`` and ``/chaos`` below), so the page can do nothing a script cannot.

Safety (:class:`PageAccess`): on a loopback bind, requests naming a loopback host need no
credentials for the page and its reads, and the page's actions carry a per-process token that
other sites cannot read; on any other bind everything needs the account's Basic auth, as the
REST API does. A browser request from another origin is refused outright. The page builds
its DOM with ``textContent`` only, under a Content-Security-Policy that allows no inline
script, so a message body is always shown as text.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict
from importlib.resources import files
from typing import Any, Final

from flask import Blueprint, Response, jsonify, request

from ...pages import host_name, is_loopback, protect
from ...status import MessageStatus
from ..core import Account
from ..delivery import Delivery, delivery_json
from ..errors import ApiError, EmulatorError
from ..lifecycle import Chaos
from ..model import EmulatedMessage, error_title, message_json, whole_number
from ..state import Filters

#: The header that carries the page's token on its actions.
TOKEN_HEADER: Final = "X-Emulator-Page"
#: Messages an overview returns at most (the newest).
OVERVIEW_LIMIT: Final = 500
#: A live stream ends after this many seconds; the browser reconnects by itself.
STREAM_SECONDS: Final = 300.0
#: Seconds between keep-alive comments on an idle stream.
KEEP_ALIVE: Final = 15.0
#: What the page may load: its own script and style, images (media) from anywhere.
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: http: https:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_ASSETS: Final = {
    "inspector.js": "text/javascript; charset=utf-8",
    "inspector.css": "text/css; charset=utf-8",
}
_CHAOS_FIELDS: Final = {
    "Reorder": "reorder",
    "Jitter": "jitter",
    "Duplicate": "duplicate",
    "Late": "late",
    "LateBy": "late_by",
    "DropFinal": "drop_final",
}
_OPEN_READS: Final = ("/", "/_emulator/overview", "/_emulator/events")


class PageAccess:
    """Who may use the page without the account's credentials, and who may not at all.

    ``bind`` is the address the server listens on: only a loopback one opens the page.
    """

    def __init__(self, bind: str) -> None:
        #: True when the server listens on loopback only: the page needs no credentials.
        self.open = is_loopback(bind)
        #: Sent by the page with each action; only a page served by this process knows it.
        self.token = secrets.token_urlsafe(32)

    def refuse_cross_site(self) -> None:
        """A browser request another origin made (a page elsewhere posting here, embedding
        a read): 403. Following a link from elsewhere to the page is fine."""
        origin = request.headers.get("Origin")
        foreign = origin is not None and origin != request.host_url.rstrip("/")
        navigation = request.method == "GET" and request.headers.get("Sec-Fetch-Mode") == "navigate"
        if foreign or (request.headers.get("Sec-Fetch-Site") == "cross-site" and not navigation):
            raise ApiError(20403, "Forbidden: cross-origin requests are refused", 403)

    def allows(self) -> bool:
        """True if this request may go on without credentials.

        Only on a loopback bind, and only when the ``Host`` header names loopback too (a
        DNS-rebinding page arrives with its own host name): the page and its reads, and
        any request that carries the page's token.
        """
        if not self.open or not is_loopback(host_name(request.host)):
            return False
        if request.method in {"GET", "HEAD"} and (
            request.path in _OPEN_READS or request.path.startswith("/_emulator/inspector/")
        ):
            return True
        return hmac.compare_digest(request.headers.get(TOKEN_HEADER, ""), self.token)


def inspector_blueprint(emulator: Account, access: PageAccess) -> Blueprint:
    """The page, its assets, the overview, the live stream, and the chaos switch."""
    page = files(__package__).joinpath("static", "inspector.html").read_text("utf-8")
    page = page.replace("__PAGE_TOKEN__", access.token)
    assets = {name: files(__package__).joinpath("static", name).read_bytes() for name in _ASSETS}
    inspector = Blueprint("inspector", __name__)

    @inspector.after_request
    def headers(response: Response) -> Response:
        return protect(response, CSP)

    @inspector.get("/")
    def index() -> Response:
        return Response(page, mimetype="text/html")

    @inspector.get("/_emulator/inspector/<name>")
    def asset(name: str) -> Response:
        if name not in assets:
            raise ApiError(20404, f"The requested resource {request.path} was not found", 404)
        return Response(assets[name], content_type=_ASSETS[name])

    @inspector.get("/_emulator/overview")
    def overview_view() -> Response:
        return jsonify(overview(emulator, request.args.get("Address") or None))

    @inspector.get("/_emulator/events")
    def events() -> Response:
        return Response(
            _stream(emulator),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @inspector.post("/_emulator/chaos")
    def chaos() -> Response:
        emulator.set_chaos(parse_chaos(request.form))
        return jsonify({"chaos": _chaos_json(emulator.chaos)})

    return inspector


def _stream(emulator: Account) -> Iterator[str]:
    """``data: <changes>`` each time the journal moves, comments to keep the line open."""
    journal = emulator.journal
    deadline = time.monotonic() + STREAM_SECONDS
    seen = -1
    yield "retry: 1000\n\n"
    while time.monotonic() < deadline:
        changes = journal.wait(seen, KEEP_ALIVE)
        if journal.closed:
            return
        if changes != seen:
            seen = changes
            yield f"data: {changes}\n\n"
        else:
            yield ": still here\n\n"


def parse_chaos(form: Any) -> Chaos | None:
    """``Enabled=false`` turns chaos off; else a :class:`Chaos` from the given fields."""
    enabled = form.get("Enabled", "true").strip().lower()
    if enabled not in {"true", "false"}:
        raise EmulatorError(f"Enabled must be true or false, not {enabled!r}")
    if enabled == "false":
        return None
    settings: dict[str, Any] = {}
    raw_seed = form.get("Seed")
    if raw_seed is not None:
        seed = whole_number(raw_seed)
        if seed is None:
            raise EmulatorError(f"Seed must be a whole number, not {raw_seed!r}")
        settings["seed"] = seed
    for name, attribute in _CHAOS_FIELDS.items():
        raw = form.get(name)
        if raw is None or raw == "":
            continue
        try:
            settings[attribute] = float(raw)
        except ValueError:
            raise EmulatorError(f"{name} must be a number, not {raw!r}") from None
    return Chaos(**settings)


def _chaos_json(chaos: Chaos | None) -> dict[str, Any] | None:
    return asdict(chaos) if chaos is not None else None


def overview(emulator: Account, address: str | None = None) -> dict[str, Any]:
    """Everything the page shows, as JSON: the account, its handsets and their messages.

    ``address`` keeps only messages to or from that number or handset. Each message has
    its REST resource (``resource``, exactly as the REST API returns it), its media, its
    status timeline and the webhooks posted for it.
    """
    numbers = emulator.state.numbers()
    own = {n.number for n in numbers}
    if address is None:  # the newest, by the REST list's own query
        found = emulator.state.page(emulator.account_sid, Filters(), OVERVIEW_LIMIT)
        newest, more = found or ([], False)
        shown = newest[::-1]
    else:
        talked = emulator.state.conversation(address)
        shown, more = talked[-OVERVIEW_LIMIT:], len(talked) > OVERVIEW_LIMIT
    webhooks: dict[str, list[Delivery]] = {}
    for delivery in emulator.deliveries:
        sid = delivery.message_sid
        if sid is not None:
            webhooks.setdefault(sid, []).append(delivery)
    handsets: dict[str, set[str]] = {}
    for to, from_ in emulator.state.pairs():
        handset = _handset(to, from_, own)
        if handset is not None:
            handsets.setdefault(handset, set()).add(from_ if handset == to else to)
    clock = emulator.clock
    return {
        "account_sid": emulator.account_sid,
        "now": clock.now(),
        "manual_clock": clock.manual,
        "speed": clock.speed,
        "changes": emulator.journal.changes,
        "chaos": _chaos_json(emulator.chaos),
        "dropped_callbacks": emulator.dropped_callbacks,
        "rules": [asdict(rule) for rule in emulator.rules],
        "numbers": [asdict(number) for number in numbers],
        "services": [
            {
                "sid": service.sid,
                "friendly_name": service.friendly_name,
                "inbound_request_url": service.inbound_request_url,
                "fallback_url": service.fallback_url,
                "status_callback": service.status_callback,
                "senders": [sender.address for sender in emulator.outbound.senders(service.sid)],
            }
            for service in emulator.outbound.services()
        ],
        "handsets": [
            {
                "address": handset,
                "numbers": sorted(talked),
                "opted_out_of": sorted(
                    n for n in talked if n and emulator.state.opted_out(n, handset)
                ),
            }
            for handset, talked in handsets.items()
        ],
        "messages": [
            {
                "resource": message_json(record),
                "handset": _handset(record.to, record.from_, own),
                "created_at": record.date_created,
                "media": [
                    {"url": media.url, "content_type": media.content_type}
                    for media in emulator.state.media(record.sid)
                ],
                "timeline": _timeline(record),
                "webhooks": _webhooks_json(webhooks.get(record.sid, [])),
            }
            for record in shown
        ],
        "truncated": more,
        "ledger_url": emulator.ledger_url,
    }


def _timeline(record: EmulatedMessage) -> list[dict[str, Any]]:
    """Each status the message took, oldest first; the one it ended in carries its error."""
    steps = []
    for status, at in record.history:
        code = record.error_code if status == record.status else None
        steps.append(
            {
                "status": status,
                "at": at,
                "error_code": code,
                "error_message": error_title(code) if code is not None else None,
            }
        )
    return steps


def _handset(to: str, from_: str, own: set[str]) -> str | None:
    """The handset side of a message: the sender of what reached one of the account's
    numbers, else the recipient; None when both sides are the account's (or unknown)."""
    side = from_ if to in own else to
    return side if side and side not in own else None


def _webhooks_json(deliveries: list[Delivery]) -> list[dict[str, Any]]:
    """Each webhook's JSON, with ``out_of_order`` set on a status callback that arrived
    after one for a later status of the same message (chaos reordered it)."""
    highest = -1
    items = []
    for delivery in deliveries:
        item = delivery_json(delivery)
        item["out_of_order"] = False
        status = delivery.form.get("MessageStatus")
        if delivery.kind == "status" and status and not delivery.dropped:
            rank = MessageStatus(status).rank
            item["out_of_order"] = rank < highest
            highest = max(highest, rank)
        items.append(item)
    return items
