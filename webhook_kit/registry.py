"""The handlers and hooks registered on a kit: everything the request path dispatches to.

The kit owns one and fills it through its decorators; each app's pipeline receives it. So
the request path depends on this object and never on the kit (no import circle), and the
kit's own attributes stay private to it. A background handler's :class:`Background` is a
registration too: the job executor reads it here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from .jobs import JobKind
from .ledger import MessageRecord
from .routing import MessageRoute, MessageRouter, Reply, StatusRoute, handler_name
from .streams import EventRoute

FinalHook: TypeAlias = Callable[[MessageRecord], None]
ErrorHook: TypeAlias = Callable[[Exception, Any], Reply]
TokenLoader: TypeAlias = Callable[[str], str | Sequence[str] | None]


@dataclass(frozen=True, slots=True)
class Background:
    """A handler registered with ``background=True``: what runs as a job, and the ack."""

    #: ``module.qualname``: how the job names its handler in every process.
    name: str
    kind: JobKind
    handler: Callable[..., Any]
    #: The text the webhook answers at once (``ack=``); None: no reply.
    ack: str | None
    #: For messages: the route, whose pattern gives the handler its ``match`` again.
    route: MessageRoute | None = None


def background_name(handler: Callable[..., Any]) -> str:
    """The name a background handler is registered and stored under."""
    return f"{getattr(handler, '__module__', '?')}.{handler_name(handler)}"


class Registry:
    """Routes for messages, the fallback URL and status callbacks; final and error hooks."""

    __slots__ = (
        "background", "errors", "events", "fallback", "final", "messages", "status", "timeouts",
        "token_loader",
    )  # fmt: skip

    def __init__(self) -> None:
        self.messages = MessageRouter()
        self.fallback = MessageRouter()
        self.status: list[StatusRoute] = []
        #: ``@kit.on_event`` handlers of Event Streams events, in registration order.
        self.events: list[EventRoute] = []
        self.final: list[FinalHook] = []
        self.errors: list[ErrorHook] = []
        #: Hooks run with a conversation whose person went silent past its timeout.
        self.timeouts: list[Callable[[Any], object]] = []
        #: ``loader(account_sid) -> token(s) | None`` for apps serving subaccounts.
        self.token_loader: TokenLoader | None = None
        #: Handlers registered with ``background=True``, by :func:`background_name`.
        self.background: dict[str, Background] = {}

    def background_for(self, handler: Callable[..., Any]) -> Background | None:
        """How ``handler`` runs in the background, or None if it runs in the request."""
        found = self.background.get(background_name(handler))
        return found if found is not None and found.handler is handler else None

    def load_tokens(self, account_sid: str) -> str | Sequence[str] | None:
        """The tokens of a subaccount; looked up per request, so a loader may come late."""
        return self.token_loader(account_sid) if self.token_loader is not None else None
