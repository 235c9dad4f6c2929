"""Which handler gets a message, and how its return value becomes TwiML.

Message routes are tried in registration order, routes with filters before the one without
(the default), and the first that accepts the message wins. Status routes all run.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

from .errors import ConfigurationError, ReplyTypeError
from .events import Channel, InboundMessage, OptOutType, StatusCallback
from .status import MessageStatus
from .twiml import MAX_BODY_LENGTH, MessagingResponse

Reply: TypeAlias = str | MessagingResponse | Sequence[str] | None
MessageHandler: TypeAlias = Callable[[InboundMessage], Reply]
StatusHandler: TypeAlias = Callable[[StatusCallback], object]
Predicate: TypeAlias = Callable[[InboundMessage], bool]
OneOrMany: TypeAlias = str | Iterable[str]

_PUNCTUATION = ".,!?;:'\"()[]{}"


@dataclass(frozen=True, slots=True)
class MessageRoute:
    """A handler and the filters a message must pass to reach it (all of them)."""

    handler: Callable[..., Reply]
    keywords: frozenset[str] | None = None
    pattern: re.Pattern[str] | None = None
    senders: frozenset[str] | None = None
    recipients: frozenset[str] | None = None
    channels: frozenset[str] | None = None
    has_media: bool | None = None
    opt_out: frozenset[str] | None = None
    predicate: Predicate | None = None
    #: The conversation steps this route handles (``on_message(step=...)``).
    steps: frozenset[str] | None = None
    #: The handler takes the conversation as its second argument.
    takes_conversation: bool = False

    @property
    def is_default(self) -> bool:
        return (
            self.keywords is None
            and self.pattern is None
            and self.senders is None
            and self.recipients is None
            and self.channels is None
            and self.has_media is None
            and self.opt_out is None
            and self.predicate is None
            and self.steps is None
        )

    def accept(
        self, message: InboundMessage, first_word: str, step: str | None = None
    ) -> InboundMessage | None:
        """The message to hand to the handler (with ``match`` set), or None to skip."""
        if self.steps is not None and step not in self.steps:
            return None
        if self.keywords is not None and first_word not in self.keywords:
            return None
        if self.senders is not None and message.from_ not in self.senders:
            return None
        if self.recipients is not None and message.to not in self.recipients:
            return None
        if self.channels is not None and message.channel not in self.channels:
            return None
        if self.has_media is not None and bool(message.media) is not self.has_media:
            return None
        if self.opt_out is not None and (
            message.opt_out_type is None or message.opt_out_type not in self.opt_out
        ):
            return None
        if self.pattern is not None:
            match = self.pattern.search(message.body)
            if match is None:
                return None
            message = replace(message, match=match)
        if self.predicate is not None and not self.predicate(message):
            return None
        return message


def message_route(
    handler: Callable[..., Reply],
    *,
    keyword: OneOrMany | None = None,
    pattern: str | re.Pattern[str] | None = None,
    from_: OneOrMany | None = None,
    to: OneOrMany | None = None,
    channel: Channel | OneOrMany | None = None,
    has_media: bool | None = None,
    opt_out: bool | OptOutType | OneOrMany | None = None,
    when: Predicate | None = None,
    step: OneOrMany | None = None,
) -> MessageRoute:
    """Validate and normalise the filters of ``on_message`` once, at registration."""
    keywords = _many(keyword)
    if keywords is not None:
        bad = [word for word in keywords if not word or word.split() != [word]]
        if bad:
            raise ConfigurationError(
                f"keyword filters are single words, got {bad!r}; use pattern= for phrases"
            )
        keywords = frozenset(word.casefold() for word in keywords)
    if opt_out is True:
        opt_out_types: frozenset[str] | None = frozenset(OptOutType)
    elif opt_out is False or opt_out is None:
        opt_out_types = None
    else:
        opt_out_types = frozenset(value.upper() for value in _many(opt_out) or ())
    return MessageRoute(
        handler,
        keywords=keywords,
        pattern=re.compile(pattern) if isinstance(pattern, str) else pattern,
        senders=_many(from_),
        recipients=_many(to),
        channels=None if channel is None else frozenset(c.lower() for c in _many(channel) or ()),
        has_media=has_media,
        opt_out=opt_out_types,
        predicate=when,
        steps=_many(step),
        takes_conversation=_positional_parameters(handler) >= 2,
    )


def _positional_parameters(handler: Callable[..., Any]) -> int:
    """How many positional arguments ``handler`` can take (a second one: the conversation)."""
    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature: one argument
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds for p in parameters)


class MessageRouter:
    """First-match dispatch over message routes."""

    __slots__ = ("_default", "_routes", "needs_conversation")

    def __init__(self) -> None:
        self._routes: list[MessageRoute] = []
        self._default: MessageRoute | None = None
        #: A route filters by step or takes the conversation: load it for every message.
        self.needs_conversation = False

    def add(self, route: MessageRoute) -> None:
        if route.steps is not None or route.takes_conversation:
            self.needs_conversation = True
        if not route.is_default:
            self._routes.append(route)
            return
        if self._default is not None:
            raise ConfigurationError(
                f"{handler_name(route.handler)} and {handler_name(self._default.handler)} are "
                "both default handlers (no filter); only one can be reached, so give one a filter"
            )
        self._default = route

    def select(
        self, message: InboundMessage, step: str | None = None, *, by_keyword: bool = False
    ) -> tuple[MessageRoute, InboundMessage] | None:
        """The route that gets the message and the message it gets, or None.

        ``step`` is the conversation's current step, for routes registered with ``step=``.
        ``by_keyword``: an opt-out keyword the kit answers (not Advanced Opt-Out) also reaches
        routes whose ``keyword`` filter names it.

        A message Twilio's Advanced Opt-Out has already answered (``OptOutType`` set) only
        reaches routes that ask for it with ``opt_out=``, so nobody replies twice.
        """
        word = _first_word(message.body)
        opted_out = message.opt_out_type is not None
        for route in self._routes:
            named = by_keyword and route.keywords is not None and word in route.keywords
            if opted_out and route.opt_out is None and not named:
                continue
            accepted = route.accept(message, word, step)
            if accepted is not None:
                return route, accepted
        if self._default is not None and not opted_out:
            return self._default, message
        return None


@dataclass(frozen=True, slots=True)
class StatusRoute:
    handler: StatusHandler
    statuses: frozenset[MessageStatus] | None

    def accepts(self, update: StatusCallback) -> bool:
        return self.statuses is None or update.status in self.statuses


def as_twiml(result: object, handler: Callable[..., Any]) -> MessagingResponse:
    """Turn what a message handler returned into a TwiML response.

    Plain text longer than one ``<Message>`` holds (1600 characters) becomes several
    ``<Message>`` verbs, split at word boundaries, rather than an error: an echo of a
    maximal message with a prefix must still reach the person.
    """
    if result is None:
        return MessagingResponse()
    if isinstance(result, MessagingResponse):
        return result
    if type(result) is str and len(result) <= MAX_BODY_LENGTH:  # the usual reply: one verb
        response = MessagingResponse()
        response.message(result)
        return response
    texts = [result] if isinstance(result, str) else result
    if isinstance(texts, list | tuple) and all(isinstance(item, str) for item in texts):
        response = MessagingResponse()
        for text in texts:
            for piece in split_text(text):
                response.message(piece)
        return response
    raise ReplyTypeError(
        f"handler {handler_name(handler)} returned {type(result).__name__}; return a str, a "
        "list of str, a MessagingResponse (kit.reply()), or None for no reply"
    )


def split_text(text: str, limit: int = MAX_BODY_LENGTH) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut at whitespace where possible.

    Whitespace at a cut is dropped; a word longer than ``limit`` is cut inside the word.
    """
    pieces: list[str] = []
    while len(text) > limit:
        cut = next((i for i in range(limit, 0, -1) if text[i].isspace()), 0)
        piece, text = (text[:cut], text[cut:].lstrip()) if cut else (text[:limit], text[limit:])
        if piece.strip():
            pieces.append(piece.rstrip())
    if text or not pieces:
        pieces.append(text)
    return pieces


def call_message_handler(
    route: MessageRoute, message: InboundMessage, conversation: object
) -> MessagingResponse:
    """Run one message handler (with the conversation, if it takes one); its reply as TwiML."""
    if route.takes_conversation:
        result = route.handler(message, conversation)
    else:
        result = route.handler(message)
    return as_twiml(result, route.handler)


def call_status_handler(route: StatusRoute, update: StatusCallback) -> None:
    """Run one status handler; a reply from it is a mistake worth an error."""
    result = route.handler(update)
    if result is not None:
        raise ReplyTypeError(
            f"status handler {handler_name(route.handler)} returned {type(result).__name__}; "
            "status callbacks cannot reply, return None"
        )


def _first_word(body: str) -> str:
    words = body.split(None, 1)
    return words[0].strip(_PUNCTUATION).casefold() if words else ""


def _many(value: str | Iterable[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset((value,))
    values = frozenset(value)
    if not values:
        raise ConfigurationError("a filter was given an empty collection; it could never match")
    return values


def handler_name(handler: Callable[..., Any]) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)


def status_route(handler: StatusHandler, statuses: Collection[MessageStatus | str]) -> StatusRoute:
    """Normalise ``on_status`` arguments; no statuses means every status."""
    return StatusRoute(
        handler, frozenset(MessageStatus(status) for status in statuses) if statuses else None
    )
