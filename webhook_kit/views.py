"""The path of one webhook request: read, verify, parse, claim, record, dispatch, answer.

Each step is a function of the module that owns it; this one only orders them and turns
their errors into one-line 4xx/503 answers. Nothing before dispatch runs user code, and the
body is read straight from the WSGI input: werkzeug's ``request.form`` would cost more
than verification, parsing and the TwiML reply together.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from io import BytesIO
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote, urlencode

from flask import Response, request

from .errors import (
    BadRequestError,
    InFlightError,
    PayloadTooLargeError,
    SignatureError,
    StoreError,
)
from .events import (
    InboundMessage,
    StatusCallback,
    parse_fallback,
    parse_inbound,
    parse_status,
)
from .ledger import StatusEntry
from .routing import MessageRouter, as_twiml
from .signature import URLBuilder, Verifier
from .stores import Claim, Outcome, Store
from .twiml import MessagingResponse

if TYPE_CHECKING:
    from .config import Settings
    from .kit import WebhookKit

log = logging.getLogger("webhook_kit")

TWIML_TYPE = "text/xml; charset=utf-8"
EMPTY_TWIML = MessagingResponse().to_bytes()
_MAX_FIELDS = 1000
_REJECTED = (BadRequestError, SignatureError, StoreError, InFlightError)


class Incoming(NamedTuple):
    """A request's fields, what its signature covers, and the form to keep in the ledger."""

    pairs: list[tuple[str, str]]
    signed: Iterable[tuple[str, str]]
    json_body: bytes | None
    form: str


class Pipeline:
    """The request path for one app; the blueprint's views are its bound methods."""

    def __init__(self, kit: WebhookKit, settings: Settings, store: Store) -> None:
        self.kit = kit
        self.settings = settings
        self.store = store
        self.verifier = Verifier(settings.auth_tokens, kit._load_tokens)
        self.url_of = URLBuilder(settings.public_url, settings.proxy_hops)
        self._error_reply: bytes | None = None
        if settings.error_reply:
            reply = MessagingResponse()
            reply.message(settings.error_reply)
            self._error_reply = reply.to_bytes()

    # -- views ---------------------------------------------------------------------------

    def messages(self) -> Response:
        return self._inbound(parse_inbound, "message", self.kit._message_router)

    def fallback(self) -> Response:
        return self._inbound(parse_fallback, "fallback", self.kit._fallback_router)

    def status(self) -> Response:
        environ = request.environ
        try:
            incoming = self._read(environ)
            self._verify(environ, incoming)
            update = parse_status(incoming.pairs)
            natural = f"{update.message_sid}:{update.status.value}:{update.event_type or ''}"
            key = _idempotency_key(environ, "status", natural)
            claim = self._claim(key)
            if claim.outcome is Outcome.DONE:
                return _twiml(EMPTY_TWIML)
            entry = StatusEntry.from_callback(update, key, time.time(), incoming.form)
            try:
                applied = self.store.record_status(entry)
            except StoreError:
                self._release(key, claim)
                raise
        except _REJECTED as error:
            return _reject(error)
        try:
            self.kit._run_status_handlers(update)
            if applied.final and self.kit._final_handlers:
                self._finalise(update.message_sid)
        except Exception as error:
            self._release(key, claim)
            return self._failed(error, update)
        self._complete(key, claim, b"")
        return _twiml(EMPTY_TWIML)

    # -- steps ---------------------------------------------------------------------------

    def _inbound(
        self,
        parse: Callable[[list[tuple[str, str]]], InboundMessage],
        kind: str,
        router: MessageRouter,
    ) -> Response:
        environ = request.environ
        try:
            incoming = self._read(environ)
            self._verify(environ, incoming)
            message = parse(incoming.pairs)
            key = _idempotency_key(environ, kind, message.message_sid)
            claim = self._claim(key)
        except _REJECTED as error:
            return _reject(error)
        if claim.outcome is Outcome.DONE:
            return _twiml(claim.answer)  # a retry gets the first answer, handler not rerun
        try:
            answer = self._answer(message, router)
        except Exception as error:
            self._release(key, claim)
            return self._failed(error, message)
        self._complete(key, claim, answer)
        return _twiml(answer)

    def _read(self, environ: dict[str, Any]) -> Incoming:
        if environ["REQUEST_METHOD"] in ("GET", "HEAD"):
            # Twilio appends GET parameters to the URL itself; nothing more is signed.
            query = environ.get("QUERY_STRING", "")
            return Incoming(_parse_form(_latin1_to_utf8(query)), (), None, query)
        body = _read_body(environ, self.settings.max_body)
        media_type = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        if media_type == "application/x-www-form-urlencoded" or (not media_type and not body):
            try:
                form = body.decode()
            except UnicodeDecodeError:
                raise BadRequestError("request body is not valid UTF-8") from None
            pairs = _parse_form(form)
            return Incoming(pairs, pairs, None, form)
        if media_type == "application/json":
            pairs = _json_fields(body)
            return Incoming(pairs, (), body, urlencode(pairs))
        raise BadRequestError(
            f"Content-Type {media_type or 'missing'!r} is not a Twilio webhook: "
            "expected application/x-www-form-urlencoded"
        )

    def _verify(self, environ: dict[str, Any], incoming: Incoming) -> None:
        mode = self.settings.validate
        if mode == "off":
            return
        url = self.url_of(environ)
        signature = environ.get("HTTP_X_TWILIO_SIGNATURE")
        account_sid = (
            _first(incoming.pairs, "AccountSid") if self.kit._token_loader is not None else None
        )
        if self.verifier.verify(
            url, incoming.signed, signature, json_body=incoming.json_body, account_sid=account_sid
        ):
            return
        reason = "missing X-Twilio-Signature header" if not signature else "invalid signature"
        hint = _proxy_hint(environ, self.settings)
        if mode == "log-only":
            log.warning("log-only: would reject %s for %s%s", reason, url, hint)
            return
        log.warning("rejected %s for %s%s", reason, url, hint)
        raise SignatureError(f"{reason}: request not from Twilio")

    def _claim(self, key: str) -> Claim:
        lease = self.settings.claim_lease
        claim = self.store.claim(key, lease)
        if claim.outcome is not Outcome.BUSY:
            return claim
        # Another worker is running this webhook: wait briefly for its answer.
        deadline = time.monotonic() + self.settings.claim_wait
        delay = 0.005
        while time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
            claim = self.store.claim(key, lease)
            if claim.outcome is not Outcome.BUSY:
                return claim
        raise InFlightError("an earlier delivery of this webhook is still being handled")

    def _answer(self, message: InboundMessage, router: MessageRouter) -> bytes:
        chosen = router.select(message)
        if chosen is None:
            return EMPTY_TWIML
        route, accepted = chosen
        reply = as_twiml(route.handler(accepted), route.handler)
        segments = reply.segments
        if segments > self.settings.max_segments:
            log.warning(
                "reply to %s costs %d SMS segments (WEBHOOK_KIT_MAX_SEGMENTS=%d)",
                message.message_sid,
                segments,
                self.settings.max_segments,
            )
        return reply.to_bytes()

    def _finalise(self, message_sid: str) -> None:
        """Run the final-state hooks once per message, across retries and hosts."""
        key = "final:" + message_sid
        claim = self.store.claim(key, self.settings.claim_lease)
        if claim.outcome is not Outcome.CLAIMED:
            return
        try:
            record = self.store.get_message(message_sid)
            if record is not None:
                for hook in self.kit._final_handlers:
                    hook(record)
        except BaseException:
            self._release(key, claim)
            raise
        self._complete(key, claim, b"")

    def _failed(self, error: Exception, event: InboundMessage | StatusCallback) -> Response:
        log.error(
            "handler failed for %s %s",
            type(event).__name__,
            event.message_sid,
            exc_info=error,
        )
        for handler in self.kit._error_handlers:
            try:
                result = handler(error, event)
            except Exception:
                log.exception("error handler %r failed", handler)
                continue
            if result is not None and isinstance(event, InboundMessage):
                return _twiml(as_twiml(result, handler).to_bytes())
        if self._error_reply is not None and isinstance(event, InboundMessage):
            return _twiml(self._error_reply)
        return _twiml(EMPTY_TWIML, 500)

    def _complete(self, key: str, claim: Claim, answer: bytes) -> None:
        try:
            self.store.complete(key, claim.owner, answer)
        except StoreError:
            # The answer still goes out; a retry inside the lease gets 409, after it reruns.
            log.exception("could not store the answer for %s", key)

    def _release(self, key: str, claim: Claim) -> None:
        try:
            self.store.release(key, claim.owner)
        except StoreError:
            log.exception("could not release %s; it frees itself when its lease ends", key)


def _twiml(body: bytes, status: int = 200) -> Response:
    return Response(body, status, content_type=TWIML_TYPE)


def _reject(error: BadRequestError | SignatureError | StoreError | InFlightError) -> Response:
    if not isinstance(error, SignatureError):  # signature failures were logged with the URL
        log.warning("rejected %s %s: %s", request.method, request.path, error)
    return Response(f"{error}\n", error.status_code, content_type="text/plain; charset=utf-8")


def _read_body(environ: dict[str, Any], limit: int) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        try:
            size = int(length)
        except ValueError:
            raise BadRequestError(f"Content-Length {length!r} is not a number") from None
        if size > limit:
            raise PayloadTooLargeError(f"body of {size} bytes exceeds the {limit}-byte limit")
        body: bytes = stream.read(size) if size > 0 else b""
    elif environ.get("wsgi.input_terminated"):  # chunked: read up to one byte past the limit
        body = stream.read(limit + 1)
        if len(body) > limit:
            raise PayloadTooLargeError(f"body exceeds the {limit}-byte limit")
    else:
        body = b""
    # Leave the body readable for anything after us (request.form in a handler).
    environ["wsgi.input"] = BytesIO(body)
    return body


def _parse_form(form: str) -> list[tuple[str, str]]:
    """``application/x-www-form-urlencoded`` to pairs, strictly UTF-8, in order."""
    pairs = []
    for piece in form.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        try:
            if "+" in name:
                name = name.replace("+", " ")
            if "%" in name:
                name = unquote(name, errors="strict")
            if "+" in value:
                value = value.replace("+", " ")
            if "%" in value:
                value = unquote(value, errors="strict")
        except UnicodeDecodeError:
            raise BadRequestError("form field is not valid UTF-8 after percent-decoding") from None
        pairs.append((name, value))
    if len(pairs) > _MAX_FIELDS:
        raise BadRequestError(f"more than {_MAX_FIELDS} form fields")
    return pairs


def _json_fields(body: bytes) -> list[tuple[str, str]]:
    try:
        data = json.loads(body)
    except ValueError:
        raise BadRequestError("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequestError("JSON webhook body must be an object")
    return [
        (str(name), value if isinstance(value, str) else json.dumps(value))
        for name, value in data.items()
    ]


def _latin1_to_utf8(text: str) -> str:
    # WSGI strings are latin-1 decoded bytes; raw UTF-8 in a query needs decoding again.
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode()
    except UnicodeError:
        raise BadRequestError("query string is not valid UTF-8") from None


def _first(pairs: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in pairs if key == name), None)


def _idempotency_key(environ: Mapping[str, Any], kind: str, natural: str) -> str:
    token = environ.get("HTTP_I_TWILIO_IDEMPOTENCY_TOKEN")
    return f"{kind}:token:{token}" if token else f"{kind}:{natural}"


def _proxy_hint(environ: Mapping[str, Any], settings: Settings) -> str:
    """Say why the URL may be wrong: the most common cause of failed signatures."""
    forwarded = "HTTP_X_FORWARDED_PROTO" in environ or "HTTP_X_FORWARDED_HOST" in environ
    if forwarded and settings.public_url is None and settings.proxy_hops == 0:
        return (
            " (the request came through a proxy: set WEBHOOK_KIT_PROXY_HOPS or "
            "WEBHOOK_KIT_PUBLIC_URL so the URL matches the one Twilio called)"
        )
    return ""
