"""The Flask extension: decorators filling the handler registry, configuration, blueprint."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from functools import partial
from typing import Any, Concatenate, ParamSpec, TypeVar, overload
from weakref import WeakKeyDictionary

from flask import Flask, current_app

from .config import DEFAULTS, Settings, unknown_keys
from .conversation import Conversation
from .errors import ConfigurationError
from .events import Channel, InboundMessage, OptOutType, StatusCallback, StreamEvent
from .jobs import JobKind, Runner
from .jobs.embedded import EmbeddedRunner
from .jobs.execute import Executor
from .ledger import Ledger, MessageRecord
from .ledger_page import ledger_blueprint
from .optout import OptOuts
from .pipeline import DirectDispatch, Pipeline
from .registry import Background, FinalHook, Registry, background_name
from .routing import (
    MessageRoute,
    OneOrMany,
    Predicate,
    Reply,
    handler_name,
    message_route,
    status_route,
)
from .sending import Sender
from .status import MessageStatus
from .stores import Store, open_store
from .streams import event_route
from .twiml import Message, MessagingResponse
from .views import mount

log = logging.getLogger("webhook_kit")

MessageHandlerT = TypeVar("MessageHandlerT", bound=Callable[..., Reply])
StatusHandlerT = TypeVar("StatusHandlerT", bound=Callable[[StatusCallback], None])
FinalHandlerT = TypeVar("FinalHandlerT", bound=Callable[[MessageRecord], None])
EventHandlerT = TypeVar("EventHandlerT", bound=Callable[[StreamEvent], None])
ErrorHandlerT = TypeVar(
    "ErrorHandlerT", bound=Callable[[Exception, InboundMessage | StatusCallback], Reply]
)
TimeoutHookT = TypeVar("TimeoutHookT", bound=Callable[[Conversation], object])
TokenLoaderT = TypeVar("TokenLoaderT", bound=Callable[[str], str | Sequence[str] | None])
P = ParamSpec("P")
R = TypeVar("R")


def _on_sender(
    method: Callable[Concatenate[Sender, P], R],
) -> Callable[Concatenate[WebhookKit, P], R]:
    """``kit.send(...)`` and friends: the method of the current app's :class:`Sender`."""

    def call(kit: WebhookKit, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return method(kit.sender(), *args, **kwargs)

    call.__name__, call.__qualname__, call.__doc__ = (
        method.__name__,
        method.__name__,
        method.__doc__,
    )
    return call


class WebhookKit:
    """Receive Twilio messaging webhooks in a Flask app.

    Register handlers with the decorators, then call :meth:`init_app` (or pass the app
    here). The app gets ``POST /twilio/messages`` (GET too), ``POST /twilio/status``,
    ``POST /twilio/fallback`` and ``POST /twilio/events`` (an Event Streams sink);
    configuration comes from ``WEBHOOK_KIT_*`` keys in ``app.config`` (see
    :data:`webhook_kit.config.DEFAULTS`).

    :param app: an app to initialise now.
    :param url_prefix: where the webhook routes are mounted.
    :param store: a store instance, overriding ``WEBHOOK_KIT_STORE``.
    """

    def __init__(
        self, app: Flask | None = None, *, url_prefix: str = "/twilio", store: Store | None = None
    ) -> None:
        self.url_prefix = url_prefix
        self._store = store
        #: Everything registered with the decorators; what each app's pipeline dispatches to.
        self.registry = Registry()
        self._pipelines: WeakKeyDictionary[Flask, Pipeline] = WeakKeyDictionary()
        self._senders: WeakKeyDictionary[Flask, Sender] = WeakKeyDictionary()
        self._prefixes: WeakKeyDictionary[Flask, str] = WeakKeyDictionary()
        self._executors: WeakKeyDictionary[Flask, Executor] = WeakKeyDictionary()
        if app is not None:
            self.init_app(app)

    # -- registration ----------------------------------------------------------------------

    def on_message(
        self,
        *,
        keyword: OneOrMany | None = None,
        pattern: str | re.Pattern[str] | None = None,
        from_: OneOrMany | None = None,
        to: OneOrMany | None = None,
        channel: Channel | OneOrMany | None = None,
        has_media: bool | None = None,
        opt_out: bool | OptOutType | OneOrMany | None = None,
        when: Predicate | None = None,
        background: bool = False,
        ack: str | None = None,
        step: OneOrMany | None = None,
    ) -> Callable[[MessageHandlerT], MessageHandlerT]:
        """Register a handler for inbound messages that pass every given filter.

        :param keyword: the first word of the body, case-insensitive (one or several).
        :param pattern: a regex searched in the body; groups are in ``message.match``.
        :param from_: sender address(es), e.g. ``"+15551234567"``, ``"whatsapp:+1555..."``.
        :param to: recipient address(es): which of your numbers received it.
        :param channel: ``"sms"``, ``"mms"``, ``"whatsapp"``, ``"messenger"``, ``"rcs"``...
        :param has_media: True for messages with attachments, False for those without.
        :param opt_out: True, or ``"STOP"``/``"START"``/``"HELP"``: messages Twilio's
            Advanced Opt-Out already answered; only such routes receive them.
        :param when: any predicate on the message.
        :param background: run the handler as a job, off the webhook: Twilio gets ``ack``
            (or no reply) at once, and what the handler returns is sent with ``kit.send``
            as a reply to the message (see "Slow handlers" in the docs).
        :param ack: with ``background``, a text answered at once, e.g. ``"One moment…"``.
        :param step: the conversation's step(s) (see :meth:`Conversation.goto`).

        A handler that takes a second positional argument receives the
        :class:`~webhook_kit.conversation.Conversation` there (not with ``background``).

        Routes are tried in registration order, the one without filters last; the first
        that accepts a message gets it. The handler returns a ``str`` (one reply), a list
        of ``str``, a :class:`MessagingResponse`, or None (no reply).
        """

        if ack is not None and not background:
            raise ConfigurationError("ack= is the immediate answer of a background=True handler")

        def register(handler: MessageHandlerT) -> MessageHandlerT:
            route = message_route(
                handler,
                keyword=keyword,
                pattern=pattern,
                from_=from_,
                to=to,
                channel=channel,
                has_media=has_media,
                opt_out=opt_out,
                when=when,
                step=step,
            )
            if background:
                if route.takes_conversation:
                    raise ConfigurationError(
                        f"{handler_name(handler)} takes a conversation and has background=True: "
                        "the conversation is saved when the webhook answers, before the job "
                        "runs; change it in a handler that runs in the request"
                    )
                self._background(handler, JobKind.MESSAGE, ack, route)
            self.registry.messages.add(route)
            return handler

        return register

    def on_fallback(
        self,
        *,
        keyword: OneOrMany | None = None,
        pattern: str | re.Pattern[str] | None = None,
        when: Predicate | None = None,
    ) -> Callable[[MessageHandlerT], MessageHandlerT]:
        """Register a handler for the fallback URL (Twilio calls it when the primary failed).

        It receives a :class:`FallbackRequest`: the message plus ``error_code`` and
        ``error_url``. Without a fallback handler the fallback URL answers with no reply.
        """

        def register(handler: MessageHandlerT) -> MessageHandlerT:
            self.registry.fallback.add(
                message_route(handler, keyword=keyword, pattern=pattern, when=when)
            )
            return handler

        return register

    def on_status(
        self, *statuses: MessageStatus | str, background: bool = False
    ) -> Callable[[StatusHandlerT], StatusHandlerT]:
        """Register a handler for status callbacks with one of ``statuses`` (none: all).

        Every matching handler runs, after the callback is safely in the ledger. Status
        handlers cannot reply: Twilio ignores what a status callback answers. With
        ``background=True`` the handler runs as a job, once per callback, off the webhook.
        """

        def register(handler: StatusHandlerT) -> StatusHandlerT:
            route = status_route(handler, statuses)
            if background:
                self._background(handler, JobKind.STATUS)
            self.registry.status.append(route)
            return handler

        return register

    def on_event(self, *types: str) -> Callable[[EventHandlerT], EventHandlerT]:
        """Register a handler for Event Streams events of ``types`` (none: every type).

        A type is exact (``com.twilio.messaging.inbound-message.received``) or a prefix
        ending in ``.*`` (``com.twilio.messaging.*``). The handler receives the
        :class:`StreamEvent` once per event id, across retries, duplicates and hosts, after
        a message status event is safely in the ledger (where ``on_status`` handlers ran for
        it, unless its status callback came first). If it raises, the batch is answered 500
        and Twilio retries it; events already applied are skipped then.
        """

        def register(handler: EventHandlerT) -> EventHandlerT:
            self.registry.events.append(event_route(handler, types))
            return handler

        return register

    @overload
    def on_final(self, handler: FinalHandlerT) -> FinalHandlerT: ...

    @overload
    def on_final(self, *, background: bool = False) -> Callable[[FinalHandlerT], FinalHandlerT]: ...

    def on_final(self, handler: FinalHook | None = None, *, background: bool = False) -> Any:
        """Register a hook that runs once when a message reaches a final status.

        It receives the message's :class:`MessageRecord`. Once means once per message,
        across retries, duplicates and hosts; if it raises, the callback is answered 500
        and the hook runs again on Twilio's retry. ``@kit.on_final(background=True)`` runs
        it as a job instead, retried on failure.
        """

        def register(hook: FinalHook) -> FinalHook:
            if background:
                self._background(hook, JobKind.FINAL)
            self.registry.final.append(hook)
            return hook

        return register(handler) if handler is not None else register

    def _background(
        self,
        handler: Callable[..., Any],
        kind: JobKind,
        ack: str | None = None,
        route: MessageRoute | None = None,
    ) -> None:
        name = background_name(handler)
        if len(self._pipelines):
            raise ConfigurationError(
                f"{name}: register background=True handlers before kit.init_app(app), which "
                "starts the runner"
            )
        if name in self.registry.background:
            raise ConfigurationError(
                f"two background handlers are named {name!r}; jobs find their handler by "
                "module and name, so give each a distinct name at module level"
            )
        self.registry.background[name] = Background(name, kind, handler, ack, route)

    def on_error(self, handler: ErrorHandlerT) -> ErrorHandlerT:
        """Register a hook for handler failures: ``handler(error, event)``.

        For an inbound message it may return a reply to send instead of the default
        (``WEBHOOK_KIT_ERROR_REPLY``, else an empty answer with status 500 so that Twilio
        tries the fallback URL).
        """
        self.registry.errors.append(handler)
        return handler

    def on_timeout(self, hook: TimeoutHookT) -> TimeoutHookT:
        """Register ``hook(conversation)`` for conversations whose person went silent.

        A handler sets the timeout with ``conversation.timeout_after(seconds)``; any message
        from the person cancels it. Due timeouts run from :meth:`run_timeouts` (``webhook-kit
        maintenance --handlers ...`` from cron), once each; what the hook changes in the
        conversation (state, step, ``end()``, a new timeout) is saved.
        """
        self.registry.timeouts.append(hook)
        return hook

    def run_timeouts(self, app: Flask | None = None) -> int:
        """Run the ``on_timeout`` hooks of every due conversation of ``app``; how many ran."""
        pipeline = self.pipeline(app)
        with app.app_context() if app is not None else nullcontext():  # for kit.opt_outs...
            return pipeline.conversations.run_timeouts(
                self.registry.timeouts, pipeline.settings.claim_lease
            )

    def auth_token_loader(self, loader: TokenLoaderT) -> TokenLoaderT:
        """Register ``loader(account_sid) -> token(s) | None`` for apps serving subaccounts."""
        self.registry.token_loader = loader
        return loader

    # -- Flask integration -------------------------------------------------------------------

    def init_app(
        self,
        app: Flask,
        *,
        url_prefix: str | None = None,
        direct: bool = False,
        celery: Any = None,
    ) -> None:
        """Read the configuration, open the store and mount the webhook routes on ``app``.

        :param url_prefix: where the routes are mounted (default: the kit's ``url_prefix``).
        :param celery: a Celery app to run ``background=True`` handlers on (default:
            ``app.extensions["celery"]``; ``WEBHOOK_KIT_RUNNER=embedded`` keeps them off it).
        :param direct: answer the webhook routes in front of Flask's request cycle, which
            is about half the cost of a request. Handlers then run in an app context but
            without ``flask.request``, and ``before_request``/``after_request`` hooks do not
            see webhooks. The standalone app does this; wrap ``app.wsgi_app`` with other
            middleware after ``init_app``.
        """
        if "webhook_kit" in app.extensions:
            raise ConfigurationError(
                "this app already has a WebhookKit; call init_app once per app"
            )
        for mistake in unknown_keys(app.config, DEFAULTS):
            log.warning("app.config: %s", mistake)
        settings = Settings.from_config(app.config)
        if settings.validate == "off":
            log.warning(
                "WEBHOOK_KIT_VALIDATE=off: X-Twilio-Signature is NOT verified; anyone who "
                "can reach this app can post webhooks to it"
            )
        elif not (settings.auth_tokens or settings.shared_keys or self.registry.token_loader):
            raise ConfigurationError(
                "no Twilio auth token: set TWILIO_AUTH_TOKEN (or app.config"
                "['WEBHOOK_KIT_AUTH_TOKEN']), WEBHOOK_KIT_SHARED_KEYS, or register "
                "@kit.auth_token_loader before init_app; WEBHOOK_KIT_VALIDATE=off disables "
                "verification explicitly"
            )
        store = self._store or open_store(
            settings.store,
            retention=settings.retention,
            ledger_retention=settings.ledger_retention,
            timeout=settings.store_timeout,
        )
        runner = self._runner(app, settings, store, celery)
        pipeline = Pipeline(self.registry, settings, store, runner)
        self._pipelines[app] = pipeline
        app.extensions["webhook_kit"] = self

        prefix = (url_prefix or self.url_prefix).rstrip("/")
        mount(app, pipeline, prefix)
        if settings.ledger_page:
            app.register_blueprint(ledger_blueprint(store, settings), url_prefix=prefix)
        self._prefixes[app] = prefix
        if direct:
            routes = {f"{prefix}/{name}": route for name, route in pipeline.routes.items()}
            app.wsgi_app = DirectDispatch(app.wsgi_app, app, routes)  # type: ignore[method-assign]

    def _runner(self, app: Flask, settings: Settings, store: Store, celery: Any) -> Runner | None:
        """The runner of ``app``'s background handlers (started here if embedded)."""
        if not self.registry.background:
            return None
        executor = Executor(
            app,
            self.registry,
            store,
            settings.jobs,
            partial(self._send_reply, app),
            metrics=settings.metrics,
        )
        self._executors[app] = executor
        # Flask's Celery pattern keeps the Celery app in app.extensions["celery"].
        celery = celery if celery is not None else app.extensions.get("celery")
        runner = settings.runner or ("celery" if celery is not None else "embedded")
        if runner == "celery":
            from .jobs.celery import CeleryRunner

            if celery is None:
                raise ConfigurationError(
                    "WEBHOOK_KIT_RUNNER=celery needs a Celery app: kit.init_app(app, "
                    "celery=celery_app), or set app.extensions['celery'] before init_app"
                )
            app.extensions.setdefault("celery", celery)  # the worker finds it there
            return CeleryRunner(celery, executor)
        if runner == "off":
            return None
        embedded = EmbeddedRunner(
            executor,
            threads=settings.job_threads,
            poll=settings.job_poll,
            grace=settings.jobs.lease,
        )
        embedded.start()
        return embedded

    def _send_reply(self, app: Flask, message: InboundMessage, reply: Message, key: str) -> None:
        """Send one ``<Message>`` of a background handler's reply, at most once per ``key``."""
        self.sender(app).send(
            reply.to,
            reply.body or None,
            from_=reply.from_,
            media_url=list(reply.media_urls),
            in_reply_to=message,
            key=key,
        )

    def executor(self, app: Flask | None = None) -> Executor:
        """What runs ``app``'s jobs (``webhook-kit worker`` drives one)."""
        target = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        try:
            return self._executors[target]
        except KeyError:
            raise ConfigurationError(
                "this app has no background=True handlers (or was not initialised with "
                "this kit): register them before kit.init_app(app)"
            ) from None

    def reply(self) -> MessagingResponse:
        """A new TwiML response to build a reply with."""
        return MessagingResponse()

    @property
    def ledger(self) -> Ledger:
        """The delivery ledger of the current app (needs an app context)."""
        return Ledger(self.pipeline().store)

    @property
    def opt_outs(self) -> OptOuts:
        """The opt-out registry of the current app (needs an app context)."""
        return OptOuts(self.pipeline().store)

    # -- sending ---------------------------------------------------------------------------

    send = _on_sender(Sender.send)
    cancel = _on_sender(Sender.cancel)
    redact = _on_sender(Sender.redact)
    confirm = _on_sender(Sender.confirm)
    delete = _on_sender(Sender.delete)
    fetch = _on_sender(Sender.fetch)
    reconcile = _on_sender(Sender.reconcile)
    download = _on_sender(Sender.download)
    delete_media = _on_sender(Sender.delete_media)
    window_open = _on_sender(Sender.window_open)

    def route_path(self, name: str, app: Flask | None = None) -> str:
        """The path of a webhook route (``messages``, ``status``, ...) on ``app``."""
        target = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        return f"{self._prefixes[target]}/{name}"

    def webhook_url(self, name: str, app: Flask | None = None) -> str | None:
        """The URL Twilio must call for a route: ``WEBHOOK_KIT_PUBLIC_URL`` + its path.

        None without a public URL (the app then verifies against the Host it is asked for).
        """
        target = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        public = self.pipeline(target).settings.public_url
        return public.rstrip("/") + self.route_path(name, target) if public else None

    def sender(self, app: Flask | None = None, *, client: Any = None) -> Sender:
        """The :class:`Sender` of ``app`` (default: the current app), built on first use.

        It sends with the app's credentials (``WEBHOOK_KIT_ACCOUNT_SID`` and the auth token,
        or an API key), records in the app's ledger, and points status callbacks at the
        app's ``/status`` route under ``WEBHOOK_KIT_PUBLIC_URL``. Pass ``client`` (a twilio
        ``Client``) to send through it instead; it then replaces the app's sender.
        """
        target = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        sender = self._senders.get(target)
        if sender is None or client is not None:
            pipeline = self.pipeline(target)
            status_url = self.webhook_url("status", target)
            sender = Sender.from_config(
                target.config, pipeline.store, status_url=status_url, client=client
            )
            self._senders[target] = sender
        return sender

    def pipeline(self, app: Flask | None = None) -> Pipeline:
        """The request path, settings and store of ``app`` (default: the current app)."""
        target = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        try:
            return self._pipelines[target]
        except KeyError:
            raise ConfigurationError(
                "this app was not initialised with this WebhookKit: call kit.init_app(app)"
            ) from None
