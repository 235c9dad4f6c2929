"""The path of one webhook request, composing one module per step (see DESIGN.md):

1. read     :mod:`~webhook_kit.incoming`      the body, size-capped, as fields   -> 400 / 413
2. verify   :mod:`~webhook_kit.signature`     X-Twilio-Signature                 -> 403
3. parse    :mod:`~webhook_kit.events`        typed events                       -> 400
4. claim    :mod:`~webhook_kit.once`          exactly once: replay, wait, take over -> 409
5. record   :mod:`~webhook_kit.ledger`        the message or callback, before the ack
6. load     :mod:`~webhook_kit.conversation`  the person's conversation, locked
7. dispatch :mod:`~webhook_kit.routing`       the first matching handler (or its job)
8. answer   :mod:`~webhook_kit.twiml`         TwiML; the claim completed with it

This module only orders them and turns their errors into one-line 4xx/503 answers; nothing
before dispatch runs user code. It works on the WSGI environ and returns an :class:`Answer`,
so it runs the same behind Flask's request cycle (the blueprint of :mod:`~webhook_kit.views`)
and in front of it (:class:`DirectDispatch`, which saves building a Flask request per webhook).

Only a user's handler can make a 500: bad input is a 4xx, a failing store a 503, and a
claim whose owner died (same host: its process is gone) is taken over by the next delivery.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

from flask import Flask
from flask.ctx import AppContext

from .basic_auth import CHALLENGE, BasicAuth
from .conversation import Conversation, Conversations, Opened
from .correlation import Correlator
from .errors import (
    BadRequestError,
    InFlightError,
    SignatureError,
    StoreError,
    UnauthorizedError,
)
from .events import (
    Fields,
    InboundMessage,
    OptOutType,
    StatusCallback,
    StreamEvent,
    parse_fallback,
    parse_inbound,
    parse_status,
)
from .incoming import read, read_batch
from .jobs import Job, JobKind, Runner
from .ledger import MessageFacts, StatusEntry
from .ledger import now as ledger_now
from .once import Claim, ConversationWrite, Once, Outcome
from .optout import OptOutPolicy, senders_of
from .process import process
from .routing import (
    MessageRouter,
    StatusRoute,
    as_twiml,
    call_message_handler,
    call_status_handler,
    handler_name,
)
from .signature import SignatureCheck, URLBuilder, Verifier
from .stores import Store, housekeeping
from .streams import Received, parse_batch
from .twiml import MessagingResponse

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .config import Settings
    from .metrics import Observer
    from .registry import Background, Registry

log = logging.getLogger("webhook_kit")

TWIML_TYPE = "text/xml; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
EMPTY_TWIML = MessagingResponse().to_bytes()
_REJECTED = (UnauthorizedError, BadRequestError, SignatureError, StoreError, InFlightError)
Rejection = UnauthorizedError | BadRequestError | SignatureError | StoreError | InFlightError


class Answer(NamedTuple):
    """What the pipeline answers: status code, body and content type."""

    status: int
    body: bytes
    content_type: str = TWIML_TYPE
    #: How the webhook ended, as metrics count it: handled, replayed, failed, or the reason
    #: it was rejected (an error's ``reason``).
    outcome: str = "handled"
    #: More response headers (a 401's challenge).
    headers: tuple[tuple[str, str], ...] = ()


_EMPTY = Answer(200, EMPTY_TWIML)
_REPLAYED = Answer(200, EMPTY_TWIML, TWIML_TYPE, "replayed")
_FAILED = Answer(500, EMPTY_TWIML, TWIML_TYPE, "failed")
_STORE_DOWN = Answer(503, b"store unavailable: try again later\n", TEXT_TYPE, StoreError.reason)
_APPLIED = Answer(200, b"", TEXT_TYPE)


Handle = Callable[[dict[str, Any]], Answer]


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

    def __init__(self, name: str, error: Exception, event: StreamEvent | None = None) -> None:
        super().__init__(name, error)
        self.name = name
        self.error = error
        #: The Event Streams event whose handler raised, if it was one.
        self.event = event


class _Running:
    """Mark user code: its exceptions become :class:`_Failed`, except a store's (503).

    With ``kind`` and metrics on, the time of a call that returned is counted too. A class,
    not a generator-based context manager: it wraps every handler call, and this costs a
    third as much.
    """

    __slots__ = ("event", "kind", "metrics", "name", "started")

    def __init__(
        self,
        name: str,
        kind: str = "",
        metrics: Observer | None = None,
        event: StreamEvent | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.metrics = metrics
        self.event = event
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
            raise _Failed(self.name, error, self.event) from error


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
        #: Rebuilds the URL Twilio requested (what its signature covers).
        self.url_of = URLBuilder(settings.public_url, settings.proxy_hops)
        self.check = SignatureCheck(
            Verifier(settings.auth_tokens, self._load_tokens, settings.shared_keys),
            self.url_of,
            settings.validate,
            BasicAuth(settings.basic_auth),
        )
        self.conversations = Conversations(store, settings.conversation_ttl)
        self.opt_outs = OptOutPolicy(
            store, recognise=settings.opt_out_keywords, replies=settings.opt_out_replies
        )
        self.correlator = Correlator(settings.secret_key)
        #: Claims, waits for and takes over the idempotency keys (exactly once).
        self.once = Once(store, settings.claim_lease, settings.claim_wait)
        self._started_in = -1  # process.forks when its services were started
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
            "events": (self.events, frozenset(("POST",))),
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

    # -- routes --------------------------------------------------------------------------

    def messages(self, environ: dict[str, Any]) -> Answer:
        return self._inbound(environ, parse_inbound, "message", self.registry.messages)

    def fallback(self, environ: dict[str, Any]) -> Answer:
        return self._inbound(environ, parse_fallback, "fallback", self.registry.fallback)

    def _inbound(
        self,
        environ: dict[str, Any],
        parse: Callable[[Fields], InboundMessage],
        kind: str,
        router: MessageRouter,
    ) -> Answer:
        self._serving()
        try:
            incoming = read(environ, self.settings.max_body)
            self.check(environ, incoming)
            message = parse(incoming.fields)
            key = f"{kind}:{message.message_sid}"
            lease = self.settings.claim_lease
            facts = MessageFacts.inbound(message, ledger_now())  # recorded with the claim
            senders = senders_of(message)  # the claim also reads the reply's opt-out screen
            claim = self.once.settle(
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
                opened = self.conversations.open(message, self.once.lock, time.time())
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
            self.once.complete(key, claim, answer, saved)
        return Answer(200, answer)

    def status(self, environ: dict[str, Any]) -> Answer:
        self._serving()
        try:
            incoming = read(environ, self.settings.max_body)
            self.check(environ, incoming)
            update = parse_status(incoming.fields)
            # A genuine token links the callback to its send even before the SID was stored.
            correlation = self.correlator.verify_query(environ.get("QUERY_STRING", ""))
        except _REJECTED as rejected:
            return _reject(environ, rejected)
        return self._update(environ, update, incoming.form, correlation)

    def _update(
        self,
        environ: dict[str, Any],
        update: StatusCallback,
        form: str | None,
        correlation: str | None,
    ) -> Answer:
        """Record a status update once by its key and run its handlers and final hooks.

        ``form`` is the callback's body as received (None: encode ``update.raw``).
        """
        try:
            key = StatusEntry.key_of(update)
            routes = [route for route in self.registry.status if route.accepts(update)]
            # Only a final status can make a message final, so only then can hooks run.
            hooks = self.registry.final if update.status.is_final else []
            now = time.time()
            entry = StatusEntry.from_callback(update, key, now, form, correlation)
            # Nothing to run after recording: claim and record finish in one store step.
            lease = self.settings.claim_lease if routes or hooks else None
            applied = self.once.settle(
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
        final = bool(hooks) and applied.final
        return self._run_status(environ, update, entry, claim, routes=routes, final=final)

    def _run_status(
        self,
        environ: dict[str, Any],
        update: StatusCallback,
        entry: StatusEntry,
        claim: Claim,
        *,
        routes: list[StatusRoute],
        final: bool,
    ) -> Answer:
        """Under ``claim`` on ``entry.key``: the status handlers (or their jobs) and, when
        ``final``, the final hooks; the claim completed, or released if they fail."""
        key, now = entry.key, entry.received_at
        jobs: list[Job] = []
        try:
            for route in routes:
                background = self.registry.background_for(route.handler)
                if background is not None:
                    job_key = f"{key}#{background.name}"
                    jobs.append(Job(job_key, JobKind.STATUS, background.name, entry.form, now))
                    continue
                with self._running("status", route.handler):
                    call_status_handler(route, update)
            if final:
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
            self.once.complete(key, claim, b"")
        return _EMPTY

    def events(self, environ: dict[str, Any]) -> Answer:
        """Event Streams: a signed JSON array of CloudEvents, checked whole, then its ledger
        effects applied in one atomic store step (all or nothing: a failure is a 503 and
        Twilio's retry applies it whole), then the handlers, each under its own claim.

        A handler that fails (500) or a batch past ``WEBHOOK_KIT_EVENTS_BUDGET`` (503) has
        Twilio retry it: its ledger step is then a no-op, and only the handlers that did not
        finish run.
        """
        deadline = time.monotonic() + self.settings.events_budget
        self._serving()
        try:
            incoming = read_batch(environ, self.settings.events_max_body)
            self.check(environ, incoming)
            batch = parse_batch(incoming.json_body or b"", self.settings.events_max_batch)
            now = ledger_now()  # each event a microsecond on: the history keeps their order
            writes = [received.write(round(now + n / 1e6, 6)) for n, received in enumerate(batch)]
            applied = self.store.apply_events(writes)
        except _REJECTED as rejected:
            return _reject(environ, rejected)
        for write, result in zip(writes, applied, strict=True):
            if not result.new:
                _duplicate(environ, write.key)
            elif result.recorded and write.status is not None and self.metrics is not None:
                self.metrics.recorded(write.status)
        ran = False  # by this request: each retry makes progress, however slow
        try:
            for done, (received, write) in enumerate(zip(batch, writes, strict=True), 1):
                answer = self._handle_event(environ, received, write.status)
                if answer is not None:
                    if answer.status != 200:
                        return answer
                    ran = True
                if ran and done < len(batch) and time.monotonic() > deadline:
                    return _partial(environ, done, len(batch))
        except _REJECTED as rejected:
            return _reject(environ, rejected)
        except _Failed as failure:  # only on_event handlers get here; their event comes along
            assert failure.event is not None
            return self._failed(failure, failure.event, environ)
        return _APPLIED

    def _handle_event(
        self, environ: dict[str, Any], received: Received, entry: StatusEntry | None
    ) -> Answer | None:
        """The handlers of one applied event: ``on_status`` (and the final hooks) under the
        status's claim, the one a status callback takes, so they run once whichever channel
        brings it first; then ``on_event`` under the event's. None if none had to run; an
        answer other than 200 stops the batch."""
        ran = False
        update = received.update
        if update is not None and entry is not None:
            routes = [route for route in self.registry.status if route.accepts(update)]
            # A final update leaves the record final: the ledger is monotonic.
            final = update.status.is_final and bool(self.registry.final)
            if routes or final:
                claim = self.once.lock(entry.key)
                if claim.outcome is Outcome.CLAIMED:
                    answer = self._run_status(
                        environ, update, entry, claim, routes=routes, final=final
                    )
                    if answer.status != 200:
                        return answer
                    ran = True
        routes_of_event = [route for route in self.registry.events if route.accepts(received.event)]
        if routes_of_event:
            key = received.key
            claim = self.once.lock(key)
            if claim.outcome is Outcome.CLAIMED:
                try:
                    for route in routes_of_event:
                        with self._running("event", route.handler, received.event):
                            route.handler(received.event)
                except BaseException:
                    self._release(key, claim)
                    raise
                self.once.complete(key, claim, b"")
                ran = True
        return _APPLIED if ran else None

    # -- shared by the routes --------------------------------------------------------------

    def _serving(self) -> None:
        """On the first request of each process: its services (housekeeping, the runner)."""
        if self._started_in != process.forks:
            housekeeping.watch(self.store)
            if self.runner is not None:
                self.runner.start()
            self._started_in = process.forks

    def _load_tokens(self, account_sid: str) -> str | Sequence[str] | None:
        """A subaccount's tokens from the user's loader, which may need ``current_app``."""
        if self.registry.token_loader is None:
            return None
        _user_code()
        return self.registry.token_loader(account_sid)

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
                reply = call_message_handler(route, accepted, conversation)
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
        now = time.time()
        claim = self.once.take(key).claim
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
            self.once.complete(key, claim, b"")

    def _running(
        self, kind: str, handler: Callable[..., Any], event: StreamEvent | None = None
    ) -> _Running:
        """A guard for calling the user's ``handler``: a 500 if it raises, timed if it returns."""
        return _Running(handler_name(handler), kind, self.metrics, event)

    def _failed(
        self,
        failure: _Failed,
        event: InboundMessage | StatusCallback | StreamEvent,
        environ: dict[str, Any],
    ) -> Answer:
        error = failure.error
        log.error(
            "handler %s failed for %s %s (I-Twilio-Idempotency-Token %s)",
            failure.name,
            type(event).__name__,
            event.id if isinstance(event, StreamEvent) else event.message_sid,
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
        """Finish the claim with its jobs (durable before the ack), then tell the runner."""
        if self.once.finish(key, claim, answer, conversation, jobs) and self.runner is not None:
            try:
                self.runner.submit(jobs)
            except Exception:  # stored: the runner's sweep finds it
                log.exception("%s: job stored, but the runner could not be told", key)

    def _release(self, key: str, claim: Claim, opened: Opened | None = None) -> None:
        if opened is None:
            self.once.release(key, claim)
        else:
            self.once.release(key, claim, opened.held)


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
            [
                ("Content-Type", answer.content_type),
                ("Content-Length", str(len(answer.body))),
                *answer.headers,
            ],
        )
        return [answer.body]


_STATUS_LINES: dict[int, str] = {}


def _status_line(code: int) -> str:
    line = _STATUS_LINES.get(code)
    if line is None:
        line = _STATUS_LINES[code] = f"{code} {HTTPStatus(code).phrase}"
    return line


def _reject(environ: Mapping[str, Any], error: Rejection) -> Answer:
    if isinstance(error, UnauthorizedError):  # logged by the signature check
        body = f"{error}\n".encode()
        return Answer(401, body, TEXT_TYPE, error.reason, (("WWW-Authenticate", CHALLENGE),))
    if not isinstance(error, SignatureError):  # signature failures were logged with the URL
        log.warning(
            "rejected %s %s: %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), error
        )
    if isinstance(error, StoreError):  # the details (hosts, paths) are for the log only
        return _STORE_DOWN
    return Answer(error.status_code, f"{error}\n".encode(), TEXT_TYPE, error.reason)


def _partial(environ: Mapping[str, Any], done: int, total: int) -> Answer:
    """A batch whose handlers ran out of time (its ledger effects are all applied): Twilio
    retries it, and the retry runs only the handlers not finished."""
    message = (
        f"ran the handlers of {done} of {total} events within WEBHOOK_KIT_EVENTS_BUDGET"
        "; retry the rest"
    )
    log.warning("%s: %s", environ.get("PATH_INFO"), message)
    return Answer(503, f"{message}\n".encode(), TEXT_TYPE, "partial")


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
