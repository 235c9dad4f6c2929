"""The path of one webhook request: read, verify, parse, claim, record, dispatch, answer.

Each step is a function of the module that owns it; this one only orders them and turns
their errors into one-line 4xx/503 answers. Nothing before dispatch runs user code. The
pipeline works on the WSGI environ and returns an :class:`Answer`, so it runs the same
behind Flask's request cycle (:meth:`Pipeline.view`, the blueprint) and in front of it
(:class:`DirectDispatch`, which saves the cost of building a Flask request per webhook).
The body is read straight from the WSGI input: werkzeug's ``request.form`` would cost more
than verification, parsing and the TwiML reply together.

Only a user's handler can make a 500: bad input is a 4xx, a failing store a 503, and a
claim whose owner died (same host: its process is gone) is taken over by the next delivery.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from http import HTTPStatus
from io import BytesIO
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar
from urllib.parse import unquote_to_bytes, urlencode

from flask import Flask, Response, request
from flask.ctx import AppContext

from .conversation import Conversation, Conversations, Opened
from .errors import (
    BadRequestError,
    InFlightError,
    PayloadTooLargeError,
    SignatureError,
    StoreError,
)
from .events import (
    Fields,
    InboundMessage,
    OptOutType,
    StatusCallback,
    parse_fallback,
    parse_inbound,
    parse_status,
)
from .jobs import Job, JobKind, Runner
from .ledger import MessageFacts, StatusEntry
from .ledger import now as ledger_now
from .optout import OptOutPolicy, senders_of
from .routing import MessageRouter, as_twiml, call_status_handler, handler_name
from .sending import Correlator
from .signature import URLBuilder, Verifier
from .stores import Claim, ConversationWrite, Outcome, Store, housekeeping, new_owner
from .twiml import MessagingResponse

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .config import Settings
    from .jobs.execute import Background
    from .metrics import Observer
    from .registry import Registry

log = logging.getLogger("webhook_kit")

TWIML_TYPE = "text/xml; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
EMPTY_TWIML = MessagingResponse().to_bytes()
_MAX_FIELDS = 1000
_REJECTED = (BadRequestError, SignatureError, StoreError, InFlightError)


class Answer(NamedTuple):
    """What the pipeline answers: status code, body and content type."""

    status: int
    body: bytes
    content_type: str = TWIML_TYPE
    #: How the webhook ended, as metrics count it: handled, replayed, failed, or the reason
    #: it was rejected (an error's ``reason``).
    outcome: str = "handled"


_EMPTY = Answer(200, EMPTY_TWIML)
_REPLAYED = Answer(200, EMPTY_TWIML, TWIML_TYPE, "replayed")
_FAILED = Answer(500, EMPTY_TWIML, TWIML_TYPE, "failed")
_STORE_DOWN = Answer(503, b"store unavailable: try again later\n", TEXT_TYPE, StoreError.reason)


class Incoming(NamedTuple):
    """A request's fields, what its signature covers, and the form to keep in the ledger."""

    fields: Fields
    signed: Iterable[tuple[str, str]]
    json_body: bytes | None
    form: str


class _Settled(Protocol):
    @property
    def outcome(self) -> Outcome: ...


_S = TypeVar("_S", bound=_Settled)
Handle = Callable[[dict[str, Any]], Answer]


class _Process:
    """Which process this is, as far as pipelines care: each fork counts one more.

    A pipeline starts its threads once per process; comparing a counter bumped in forked
    children (gunicorn workers) is cheaper than asking for the pid on every request.
    """

    forks = 0

    @classmethod
    def forked(cls) -> None:
        cls.forks += 1


os.register_at_fork(after_in_child=_Process.forked)


class _AppScope:
    """The app context of one directly dispatched request, pushed when user code first runs.

    Most status callbacks run no user code at all: they skip Flask's context push and pop.
    """

    __slots__ = ("_app", "_context")

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._context: AppContext | None = None

    def enter(self) -> None:
        if self._context is None:
            self._context = self._app.app_context()
            self._context.push()

    def exit(self) -> None:
        if self._context is not None:
            self._context.pop()


#: Set by :class:`DirectDispatch` for one request; None behind Flask's request cycle, which
#: has pushed an app context already.
_scope: ContextVar[_AppScope | None] = ContextVar("webhook_kit_app_scope", default=None)


def _user_code() -> None:
    """User code is about to run: it gets an app context (``current_app``, ``kit.ledger``)."""
    scope = _scope.get()
    if scope is not None:
        scope.enter()


class _Failed(Exception):
    """User code (``name``) raised ``error``: the one failure answered 500."""

    def __init__(self, name: str, error: Exception) -> None:
        super().__init__(name, error)
        self.name = name
        self.error = error


class _Running:
    """Mark user code: its exceptions become :class:`_Failed`, except a store's (503).

    With ``kind`` and metrics on, the time of a call that returned is counted too. A class,
    not a generator-based context manager: it wraps every handler call, and this costs a
    third as much.
    """

    __slots__ = ("kind", "metrics", "name", "started")

    def __init__(self, name: str, kind: str = "", metrics: Observer | None = None) -> None:
        self.name = name
        self.kind = kind
        self.metrics = metrics
        self.started = 0.0

    def __enter__(self) -> None:
        _user_code()
        if self.metrics is not None:
            self.started = time.perf_counter()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is None:
            if self.metrics is not None and self.kind:
                elapsed = time.perf_counter() - self.started
                self.metrics.handler(self.kind, self.name, elapsed)
        elif isinstance(error, Exception) and not isinstance(error, StoreError):
            raise _Failed(self.name, error) from error


class Pipeline:
    """The request path for one app: one method per webhook route, environ in, answer out."""

    def __init__(
        self, registry: Registry, settings: Settings, store: Store, runner: Runner | None = None
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.store = store
        #: Runs the jobs of ``background=True`` handlers; None when there are none.
        self.runner = runner
        self.verifier = Verifier(settings.auth_tokens, registry.load_tokens)
        self.url_of = URLBuilder(settings.public_url, settings.proxy_hops)
        self.conversations = Conversations(store, settings.conversation_ttl)
        self.opt_outs = OptOutPolicy(
            store, recognise=settings.opt_out_keywords, replies=settings.opt_out_replies
        )
        self.correlator = Correlator(settings.secret_key)
        self._started_in = -1  # _Process.forks when its threads were started
        self._error_reply: bytes | None = None
        if settings.error_reply:
            reply = MessagingResponse()
            reply.message(settings.error_reply)
            self._error_reply = reply.to_bytes()
        both = frozenset(("GET", "POST"))
        #: Route name -> (handler, HTTP methods); Twilio may use GET for incoming messages.
        self.routes: dict[str, tuple[Handle, frozenset[str]]] = {
            "messages": (self.messages, both),
            "fallback": (self.fallback, both),
            "status": (self.status, frozenset(("POST",))),
        }
        #: What is counted when WEBHOOK_KIT_METRICS is on; None (and nothing imported) if off.
        self.metrics: Observer | None = None
        if settings.metrics:
            from .metrics import Observer

            self.metrics = Observer(list(self.routes))
            self.routes = {
                name: (_counted(handle, self.metrics.webhooks[name]), methods)
                for name, (handle, methods) in self.routes.items()
            }

    @staticmethod
    def view(handle: Handle) -> Callable[[], Response]:
        """A Flask view running ``handle`` inside Flask's request cycle."""

        def respond() -> Response:
            answer = handle(request.environ)
            return Response(answer.body, answer.status, content_type=answer.content_type)

        return respond

    # -- routes --------------------------------------------------------------------------

    def messages(self, environ: dict[str, Any]) -> Answer:
        return self._inbound(environ, parse_inbound, "message", self.registry.messages)

    def fallback(self, environ: dict[str, Any]) -> Answer:
        return self._inbound(environ, parse_fallback, "fallback", self.registry.fallback)

    def status(self, environ: dict[str, Any]) -> Answer:
        try:
            incoming = self._read(environ)
            self._verify(environ, incoming)
            update = parse_status(incoming.fields)
            error = update.error.code if update.error else ""
            key = f"status:{update.message_sid}:{update.status.value}:"
            key += f"{update.event_type or ''}:{error}"
            routes = [route for route in self.registry.status if route.accepts(update)]
            # Only a final status can make a message final, so only then can hooks run.
            hooks = self.registry.final if update.status.is_final else []
            # A genuine token links the callback to its send even before the SID was stored.
            correlation = self.correlator.verify_query(environ.get("QUERY_STRING", ""))
            now = time.time()
            entry = StatusEntry.from_callback(update, key, now, incoming.form, correlation)
            # Nothing to run after recording: claim and record finish in one store step.
            lease = self.settings.claim_lease if routes or hooks else None
            applied = self._settle(
                key,
                lambda replace: self.store.record_status(entry, lease, replace),
                lambda applied: applied.claim,
            )
        except _REJECTED as rejected:
            return _reject(environ, rejected)
        if applied.recorded and self.metrics is not None:
            self.metrics.recorded(entry)
        claim = applied.claim
        if claim.outcome is not Outcome.CLAIMED:
            if not applied.recorded:
                _duplicate(environ, key)
                return _REPLAYED  # a retry of a finished callback
            return _EMPTY  # claimed and recorded in the same step
        jobs: list[Job] = []
        try:
            for route in routes:
                background = self.registry.background_for(route.handler)
                if background is not None:
                    job_key = f"{key}#{background.name}"
                    jobs.append(Job(job_key, JobKind.STATUS, background.name, incoming.form, now))
                    continue
                with self._running("status", route.handler):
                    call_status_handler(route, update)
            if hooks and applied.final:
                self._finalise(update.message_sid)
            if jobs:
                self._enqueue(key, claim, b"", jobs)
        except StoreError as failure:
            self._release(key, claim)
            return _reject(environ, failure)
        except _Failed as failure:
            self._release(key, claim)
            return self._failed(failure, update, environ)
        if not jobs:
            self._complete(key, claim, b"")
        return _EMPTY

    # -- steps ---------------------------------------------------------------------------

    def _inbound(
        self,
        environ: dict[str, Any],
        parse: Callable[[Fields], InboundMessage],
        kind: str,
        router: MessageRouter,
    ) -> Answer:
        try:
            incoming = self._read(environ)
            self._verify(environ, incoming)
            message = parse(incoming.fields)
            key = f"{kind}:{message.message_sid}"
            lease = self.settings.claim_lease
            facts = MessageFacts.inbound(message, ledger_now())  # recorded with the claim
            senders = senders_of(message)  # the claim also reads the reply's opt-out screen
            claim = self._settle(
                key,
                lambda replace: self.store.claim(
                    key, lease, replace=replace, message=facts, senders=senders
                ),
                lambda claim: claim,
            )
        except _REJECTED as error:
            return _reject(environ, error)
        if claim.outcome is Outcome.DONE:
            _duplicate(environ, key)
            # A retry gets the first answer, handler not rerun.
            return Answer(200, claim.answer, TWIML_TYPE, "replayed")
        opened: Opened | None = None
        try:
            if router.needs_conversation:  # waits while another message of the person runs
                opened = self.conversations.open(message, self._lock, time.time())
            conversation = opened.conversation if opened else None
            opted_out = claim.opted_out
            if opened is not None:  # read under the lock: the message before may have been STOP
                opted_out = self.opt_outs.registry.is_opted_out(message.from_, *senders)
            reply, background = self._answer(message, router, kind, conversation, opted_out)
            answer = reply.to_bytes()
            saved = self.conversations.write(opened, reply, time.time()) if opened else None
            if background is not None:  # durable with the claim, before the webhook's answer
                job = Job(key, JobKind.MESSAGE, background.name, incoming.form, time.time())
                self._enqueue(key, claim, answer, [job], saved)
        except (StoreError, InFlightError) as error:
            self._release(key, claim, opened)
            return _reject(environ, error)
        except _Failed as failure:
            self._release(key, claim, opened)
            return self._failed(failure, message, environ)
        if background is None:
            self._complete(key, claim, answer, saved)
        return Answer(200, answer)

    def _read(self, environ: dict[str, Any]) -> Incoming:
        if self._started_in != _Process.forks:  # first request of this worker process
            housekeeping.watch(self.store)
            if self.runner is not None:
                self.runner.start()
            self._started_in = _Process.forks
        if environ["REQUEST_METHOD"] in ("GET", "HEAD"):
            # Twilio appends GET parameters to the URL itself; nothing more is signed.
            query = environ.get("QUERY_STRING", "")
            return Incoming(Fields(_parse_form(_latin1_to_utf8(query))), (), None, query)
        body = _read_body(environ, self.settings.max_body)
        content_type = environ.get("CONTENT_TYPE", "")
        media_type = content_type.partition(";")[0].strip().lower()
        if media_type == "application/x-www-form-urlencoded" or (not media_type and not body):
            try:
                form = body.decode()
            except UnicodeDecodeError:
                raise BadRequestError("request body is not valid UTF-8") from None
            pairs = _parse_form(form)
            return Incoming(Fields(pairs), pairs, None, form)
        if media_type == "application/json":
            pairs, form = _json_fields(body)
            return Incoming(Fields(pairs), (), body, form)
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
        account_sid = None
        if self.registry.token_loader is not None:  # the user's loader may need current_app
            _user_code()
            account_sid = incoming.fields.get("AccountSid")
        if self.verifier.verify(
            url, incoming.signed, signature, json_body=incoming.json_body, account_sid=account_sid
        ):
            return
        reason = "missing X-Twilio-Signature header" if not signature else "invalid signature"
        hint = _hint(environ, self.settings, incoming.fields.get("AccountSid"))
        if mode == "log-only":
            log.warning("log-only: would reject %s for %s%s", reason, url, hint)
            return
        log.warning("rejected %s for %s%s", reason, url, hint)
        raise SignatureError(f"{reason}: request not from Twilio")

    def _settle(
        self, key: str, attempt: Callable[[str], _S], claim_of: Callable[[_S], Claim]
    ) -> _S:
        """Claim through ``attempt(replace)``; while another worker holds the key, wait briefly.

        A holder whose process is gone (killed, timed out) is replaced at once: its delivery
        was never answered, so this one runs the handler, once.
        """
        result = attempt("")
        deadline = time.monotonic() + self.settings.claim_wait
        delay = 0.005
        while (claim := claim_of(result)).outcome is Outcome.BUSY:
            if new_owner.is_dead(claim.owner):
                log.warning("%s: its owner %s died; this delivery takes it over", key, claim.owner)
                result = attempt(claim.owner)
                continue  # won, or lost to a live delivery that took it over first
            if time.monotonic() >= deadline:
                raise InFlightError("an earlier delivery of this webhook is still being handled")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
            result = attempt("")
        return result

    def _lock(self, key: str) -> Claim:
        """Take ``key`` as a lock, waiting for its holder (a conversation's other message)."""
        lease = self.settings.claim_lease
        return self._settle(
            key, lambda replace: self.store.claim(key, lease, replace=replace), lambda claim: claim
        )

    def _answer(
        self,
        message: InboundMessage,
        router: MessageRouter,
        kind: str,
        conversation: Conversation | None,
        opted_out: bool,
    ) -> tuple[MessagingResponse, Background | None]:
        """The TwiML answer; for a background handler, its ack and the handler to enqueue.

        ``opted_out``: whether the sender had opted out of the number it wrote to.
        """
        message, compliance = self.opt_outs.classify(message, opted_out)
        if conversation is not None and message.opt_out_type is OptOutType.STOP:
            conversation.end()  # whoever asked to stop is not in the middle of anything
        step = conversation.step if conversation is not None else None
        with _Running("a message filter (when=)"):
            chosen = router.select(message, step, by_keyword=compliance is not None)
        if chosen is None:
            return compliance or MessagingResponse(), None
        route, accepted = chosen
        background = self.registry.background_for(route.handler)
        if background is not None:  # the job runs it later; Twilio gets the ack now
            reply = MessagingResponse()
            if background.ack is not None:
                reply.message(background.ack)
        else:
            with self._running(kind, route.handler):
                if route.takes_conversation:
                    result = route.handler(accepted, conversation)
                else:
                    result = route.handler(accepted)
                reply = as_twiml(result, route.handler)
        if compliance is not None and not reply.verbs:  # the handler only recorded it
            return compliance, background
        reply = self.opt_outs.screen(message, reply, opted_out)
        segments = reply.segments
        if segments > self.settings.max_segments:
            log.warning(
                "reply to %s costs %d SMS segments (WEBHOOK_KIT_MAX_SEGMENTS=%d)",
                message.message_sid,
                segments,
                self.settings.max_segments,
            )
        return reply, background

    def _finalise(self, message_sid: str) -> None:
        """Run the final-state hooks once per message, across retries and hosts."""
        key = "final:" + message_sid
        lease, now = self.settings.claim_lease, time.time()
        claim = self.store.claim(key, lease)
        if claim.outcome is Outcome.BUSY and new_owner.is_dead(claim.owner):
            claim = self.store.claim(key, lease, replace=claim.owner)
        if claim.outcome is not Outcome.CLAIMED:
            return
        jobs: list[Job] = []
        try:
            record = self.store.get_message(message_sid)
            if record is not None:
                for hook in self.registry.final:
                    background = self.registry.background_for(hook)
                    if background is not None:
                        name = background.name
                        jobs.append(Job(f"{key}#{name}", JobKind.FINAL, name, message_sid, now))
                        continue
                    with self._running("final", hook):
                        hook(record)
            if jobs:
                self._enqueue(key, claim, b"", jobs)
        except BaseException:
            self._release(key, claim)
            raise
        if not jobs:
            self._complete(key, claim, b"")

    def _running(self, kind: str, handler: Callable[..., Any]) -> _Running:
        """A guard for calling the user's ``handler``: a 500 if it raises, timed if it returns."""
        return _Running(handler_name(handler), kind, self.metrics)

    def _failed(
        self, failure: _Failed, event: InboundMessage | StatusCallback, environ: dict[str, Any]
    ) -> Answer:
        error = failure.error
        log.error(
            "handler %s failed for %s %s (I-Twilio-Idempotency-Token %s)",
            failure.name,
            type(event).__name__,
            event.message_sid,
            environ.get("HTTP_I_TWILIO_IDEMPOTENCY_TOKEN", "-"),
            exc_info=error,
        )
        if self.registry.errors:
            _user_code()
        for handler in self.registry.errors:
            try:
                result = handler(error, event)
                if result is not None and isinstance(event, InboundMessage):
                    reply = as_twiml(result, handler).to_bytes()
                    return Answer(200, reply, TWIML_TYPE, _FAILED.outcome)
            except Exception:
                log.exception("error handler %s failed", handler_name(handler))
        if self._error_reply is not None and isinstance(event, InboundMessage):
            return Answer(200, self._error_reply, TWIML_TYPE, _FAILED.outcome)
        return _FAILED

    def _enqueue(
        self,
        key: str,
        claim: Claim,
        answer: bytes,
        jobs: list[Job],
        conversation: ConversationWrite | None = None,
    ) -> None:
        """Finish the claim, save the conversation and store the jobs in one step.

        A store failure propagates (the webhook gets a 503 and Twilio retries): the ack must
        not go out unless the job is durable.
        """
        done = self.store.complete(key, claim.owner, answer, conversation=conversation, jobs=jobs)
        if not done:
            log.warning("%s: its claim was taken over; that delivery enqueues the job", key)
            return
        if self.runner is not None:
            try:
                self.runner.submit(jobs)
            except Exception:  # stored: the runner's sweep finds it
                log.exception("%s: job stored, but the runner could not be told", key)

    def _complete(
        self, key: str, claim: Claim, answer: bytes, conversation: ConversationWrite | None = None
    ) -> None:
        try:
            self.store.complete(key, claim.owner, answer, conversation=conversation)
        except StoreError as error:
            # The answer still goes out; a retry inside the lease gets 409, after it reruns.
            log.warning("could not store the answer for %s: %s", key, error)

    def _release(self, key: str, claim: Claim, opened: Opened | None = None) -> None:
        try:
            self.store.release(key, claim.owner)
            if opened is not None:
                self.conversations.close(opened)
        except StoreError as error:
            log.warning("could not release %s (released when the store answers): %s", key, error)


class DirectDispatch:
    """WSGI middleware that answers the kit's routes before Flask builds a request.

    Everything else, and any method a route does not take, goes on to the Flask app. User
    code (handlers, filters, hooks, token loaders) runs inside an app context (``current_app``,
    ``kit.ledger``, ``url_for`` work), pushed once per request when the first of it runs; there
    is no Flask request: they get everything from the typed event.
    """

    __slots__ = ("_app", "_next", "_routes")

    def __init__(
        self,
        wsgi_app: WSGIApplication,
        app: Flask,
        routes: Mapping[str, tuple[Handle, frozenset[str]]],
    ) -> None:
        self._next = wsgi_app
        self._app = app
        self._routes = dict(routes)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        route = self._routes.get(environ.get("PATH_INFO", ""))
        if route is None or environ["REQUEST_METHOD"] not in route[1]:
            return self._next(environ, start_response)
        scope = _AppScope(self._app)
        token = _scope.set(scope)
        try:
            try:
                answer = route[0](environ)
            finally:
                _scope.reset(token)
                scope.exit()
        except Exception:  # a bug of ours: log it, never show it
            log.exception("webhook_kit failed on %s", environ.get("PATH_INFO"))
            answer = Answer(500, b"internal error\n", TEXT_TYPE)
        start_response(
            _status_line(answer.status),
            [("Content-Type", answer.content_type), ("Content-Length", str(len(answer.body)))],
        )
        return [answer.body]


_STATUS_LINES: dict[int, str] = {}


def _status_line(code: int) -> str:
    line = _STATUS_LINES.get(code)
    if line is None:
        line = _STATUS_LINES[code] = f"{code} {HTTPStatus(code).phrase}"
    return line


def _reject(
    environ: Mapping[str, Any], error: BadRequestError | SignatureError | StoreError | InFlightError
) -> Answer:
    if not isinstance(error, SignatureError):  # signature failures were logged with the URL
        log.warning(
            "rejected %s %s: %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), error
        )
    if isinstance(error, StoreError):  # the details (hosts, paths) are for the log only
        return _STORE_DOWN
    return Answer(error.status_code, f"{error}\n".encode(), TEXT_TYPE, error.reason)


def _counted(handle: Handle, count: Mapping[str, Callable[[], None]]) -> Handle:
    """``handle``, counting each answer by its outcome (only when metrics are on)."""

    def counted(environ: dict[str, Any]) -> Answer:
        answer = handle(environ)
        count[answer.outcome]()
        return answer

    return counted


def _duplicate(environ: Mapping[str, Any], key: str) -> None:
    """Log a duplicate with Twilio's idempotency token: a diagnostic, never the key."""
    if log.isEnabledFor(logging.INFO):
        token = environ.get("HTTP_I_TWILIO_IDEMPOTENCY_TOKEN", "-")
        log.info("%s: duplicate answered without the handler (idempotency token %s)", key, token)


def _read_body(environ: dict[str, Any], limit: int) -> bytes:
    try:
        return _read_input(environ, limit)
    except (BadRequestError, MemoryError):
        raise
    except Exception as error:  # each server has its own: gunicorn's NoMoreData, InvalidChunkSize
        raise BadRequestError(
            f"request body could not be read ({type(error).__name__}: a chunked body cut "
            "short or malformed?)"
        ) from None


def _read_input(environ: dict[str, Any], limit: int) -> bytes:
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
    if "+" in form:  # a literal '+' is always sent as %2B, so every '+' is a space
        form = form.replace("+", " ")
    pairs: list[tuple[str, str]] = []
    append = pairs.append
    try:
        for piece in form.split("&"):
            name, _, value = piece.partition("=")
            if "%" in piece:  # strict: invalid UTF-8 after decoding is an error, not U+FFFD
                append((unquote_to_bytes(name).decode(), unquote_to_bytes(value).decode()))
            elif piece:
                append((name, value))
    except UnicodeDecodeError:
        raise BadRequestError("form field is not valid UTF-8 after percent-decoding") from None
    if len(pairs) > _MAX_FIELDS:
        raise BadRequestError(f"more than {_MAX_FIELDS} form fields")
    return pairs


def _json_fields(body: bytes) -> tuple[list[tuple[str, str]], str]:
    """The fields of a JSON body, and the same form-encoded (which checks they are UTF-8)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequestError("request body is not valid JSON (or nested too deeply)") from None
    if not isinstance(data, dict):
        raise BadRequestError("JSON webhook body must be an object")
    pairs = [
        (str(name), value if isinstance(value, str) else json.dumps(value))
        for name, value in data.items()
    ]
    try:
        return pairs, urlencode(pairs)
    except UnicodeEncodeError:  # "\ud800": a lone surrogate is no character
        raise BadRequestError("JSON body holds a lone surrogate (\\ud800-\\udfff)") from None


def _latin1_to_utf8(text: str) -> str:
    # WSGI strings are latin-1 decoded bytes; raw UTF-8 in a query needs decoding again.
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode()
    except UnicodeError:
        raise BadRequestError("query string is not valid UTF-8") from None


_ACCOUNT_SID = re.compile(r"AC[0-9a-f]{32}")


def _hint(environ: Mapping[str, Any], settings: Settings, account_sid: str | None) -> str:
    """Say what to check: the URL when a proxy is not configured (the most common cause of
    failed signatures), else the auth token."""
    forwarded = "HTTP_X_FORWARDED_PROTO" in environ or "HTTP_X_FORWARDED_HOST" in environ
    if forwarded and settings.public_url is None and settings.proxy_hops == 0:
        return (
            " (the request came through a proxy: set WEBHOOK_KIT_PROXY_HOPS or "
            "WEBHOOK_KIT_PUBLIC_URL so the URL matches the one Twilio called)"
        )
    if "HTTP_X_TWILIO_SIGNATURE" not in environ:
        return ""
    known = account_sid is not None and _ACCOUNT_SID.fullmatch(account_sid)  # it is not verified
    account = f"account {account_sid}" if known else "the account that sent it"
    return (
        f" (if that is the URL Twilio called, check that TWILIO_AUTH_TOKEN or "
        f"WEBHOOK_KIT_AUTH_TOKEN is the auth token of {account})"
    )
