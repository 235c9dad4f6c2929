"""Conversations: what one person and one of your senders have said, kept across messages.

A conversation is identified by (their address, our number or Messaging Service, account,
channel). For every inbound message the request path locks it (a second message from the
same person waits for the first, bounded by ``WEBHOOK_KIT_CLAIM_WAIT``), loads it, hands it
to the handler, and saves it in the same atomic store step that completes the message's
idempotency claim: a retried webhook replays the first answer and never applies a change
twice, and a handler that fails changes nothing. It expires after
``WEBHOOK_KIT_CONVERSATION_TTL`` seconds without a message.

:class:`Flow` is the declarative helper for question/validate/next-step sequences.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .errors import ConversationStateError
from .ledger import timestamp
from .once import Claim, ConversationWrite, Once, Outcome
from .stores import Store
from .twiml import MessagingResponse

if TYPE_CHECKING:
    from .events import InboundMessage
    from .routing import Reply

log = logging.getLogger("webhook_kit")

#: How many recent messages (both directions) a conversation keeps.
HISTORY_LIMIT = 20
DEFAULT_TTL = 4 * 3600.0


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of a conversation: ``in`` from the person, ``out`` a reply we sent."""

    direction: Literal["in", "out"]
    body: str
    at: datetime
    #: The inbound message's SID; None for replies.
    message_sid: str | None = None


class Conversation:
    """The state of one conversation, handed to handlers that take a second argument.

    ``state`` is a mutable mapping of JSON-serialisable values; ``step`` routes the next
    message to the handler registered with ``on_message(step=...)``. Changes are saved after
    the handler returns, only if it returns (a handler that raises changes nothing).
    """

    __slots__ = (
        "_ended",
        "history",
        "id",
        "last_seen",
        "started_at",
        "state",
        "step",
        "timeout_at",
    )

    def __init__(
        self,
        id: str,
        *,
        state: dict[str, Any] | None = None,
        step: str | None = None,
        started_at: datetime,
        last_seen: datetime,
        history: Sequence[Turn] = (),
        timeout_at: datetime | None = None,
    ) -> None:
        self.id = id
        self.state: dict[str, Any] = state if state is not None else {}
        self.step = step
        self.started_at = started_at
        #: When the previous message arrived (equal to ``started_at`` for a new one).
        self.last_seen = last_seen
        #: Recent messages, oldest first, up to :data:`HISTORY_LIMIT` (this one included).
        self.history: list[Turn] = list(history)
        #: When the ``on_timeout`` hooks run if the person stays silent (see
        #: :meth:`timeout_after`); every message from them clears it.
        self.timeout_at = timeout_at
        self._ended = False

    @property
    def address(self) -> str:
        """The person's address (``From`` of their messages)."""
        return self.id.partition("|")[0]

    @property
    def sender(self) -> str:
        """Our side: the number, or Messaging Service SID (``MG...``), the person wrote to."""
        return self.id.split("|")[1]

    @property
    def is_new(self) -> bool:
        """True for the first message of a conversation (nothing was saved before)."""
        return len(self.history) <= 1

    @property
    def ended(self) -> bool:
        return self._ended

    def goto(self, step: str | None) -> None:
        """Route the person's next message to the handlers of ``step`` (None: no step)."""
        self.step = step

    def timeout_after(self, seconds: float) -> None:
        """Run the kit's ``on_timeout`` hooks if no message comes within ``seconds``.

        ``webhook-kit maintenance --handlers ...`` (from cron) or ``kit.run_timeouts()`` runs
        them, once per timeout, with this conversation; a message before then cancels it.
        """
        self.timeout_at = timestamp(time.time() + seconds)

    def end(self) -> None:
        """Forget this conversation once the reply is sent; the next message starts anew."""
        self._ended = True

    def __repr__(self) -> str:
        return f"Conversation({self.id!r}, step={self.step!r}, state={self.state!r})"


def conversation_id(message: InboundMessage) -> str:
    """``their address|our number or Messaging Service|account|channel``.

    SMS and MMS are one channel: a photo sent mid-survey belongs to the same conversation.
    """
    channel = "sms" if message.channel in ("sms", "mms") else str(message.channel)
    ours = message.messaging_service_sid or message.to
    return "|".join((message.from_, ours, message.account_sid or "", channel))


def dumps(conversation: Conversation) -> bytes:
    """The stored form: JSON. A value JSON cannot hold is the handler's mistake."""
    try:
        return json.dumps(
            {
                "state": conversation.state,
                "step": conversation.step,
                "started_at": conversation.started_at.timestamp(),
                "timeout_at": _epoch(conversation.timeout_at),
                "history": [
                    [turn.direction, turn.body, turn.at.timestamp(), turn.message_sid]
                    for turn in conversation.history[-HISTORY_LIMIT:]
                ],
            },
            separators=(",", ":"),
            allow_nan=False,
        ).encode()
    except (TypeError, ValueError) as error:
        raise ConversationStateError(
            f"conversation state must be JSON-serialisable (str, int, float, bool, None, "
            f"lists and dicts of them): {error}"
        ) from None


def loads(id: str, data: bytes | None, now: float) -> Conversation:
    """A conversation from its stored form; a new one when nothing is stored."""
    if data is None:
        return Conversation(id, started_at=timestamp(now), last_seen=timestamp(now))
    saved = json.loads(data)
    history = [
        Turn(direction, body, timestamp(at), sid) for direction, body, at, sid in saved["history"]
    ]
    return Conversation(
        id,
        state=saved["state"],
        step=saved["step"],
        started_at=timestamp(saved["started_at"]),
        last_seen=history[-1].at if history else timestamp(now),
        history=history,
        timeout_at=None if saved["timeout_at"] is None else timestamp(saved["timeout_at"]),
    )


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


@dataclass(slots=True)
class Opened:
    """A conversation loaded for one request, and the lock that serialises it."""

    conversation: Conversation
    lock: Claim

    @property
    def held(self) -> tuple[str, str]:
        """The conversation's lock as ``(key, owner)``: released with the message's claim."""
        return "lock:" + self.conversation.id, self.lock.owner


class Conversations:
    """The conversation step of the request path, for one app's store."""

    __slots__ = ("_store", "ttl")

    def __init__(self, store: Store, ttl: float) -> None:
        self._store = store
        self.ttl = ttl

    def open(self, message: InboundMessage, lock: Callable[[str], Claim], now: float) -> Opened:
        """Lock the message's conversation (``lock`` waits for another holder), then load it.

        The caller must pass the result to :meth:`write` (saving it with the claim) or
        release :attr:`Opened.held` with the message's claim.
        """
        id = conversation_id(message)
        claim = lock("lock:" + id)
        try:
            conversation = loads(id, self._store.get_conversation(id), now)
        except BaseException:
            self._store.release("lock:" + id, claim.owner)
            raise
        conversation.history.append(Turn("in", message.body, timestamp(now), message.message_sid))
        conversation.timeout_at = None  # the person is not silent
        return Opened(conversation, claim)

    def write(self, opened: Opened, reply: MessagingResponse, now: float) -> ConversationWrite:
        """What :meth:`Store.complete` saves: the conversation with the replies just sent."""
        conversation = opened.conversation
        for message in reply.messages:
            conversation.history.append(Turn("out", str(message.body), timestamp(now)))
        return self._saving(conversation, opened.lock)

    def _saving(self, conversation: Conversation, lock: Claim) -> ConversationWrite:
        data = None if conversation.ended else dumps(conversation)
        due = _epoch(conversation.timeout_at)
        # A timeout past the TTL keeps the conversation until its hooks have run.
        ttl = self.ttl if due is None else max(self.ttl, due - time.time() + self.ttl)
        return ConversationWrite(conversation.id, lock.owner, data, ttl, due)

    def run_timeouts(
        self, hooks: Sequence[Callable[[Conversation], object]], lease: float, limit: int = 1000
    ) -> int:
        """Run ``hooks`` once for each conversation whose timeout is due; how many ran.

        Each run holds the conversation's lock (a conversation whose person is writing right
        now is left for the next run) and an idempotency claim on the timeout itself, and
        saves what the hooks changed with that claim's completion: once, across processes.
        A hook that raises is logged and runs again next time.
        """
        ran = 0
        now = time.time()
        once = Once(self._store, lease)
        for id in self._store.due_conversations(now, limit):
            lock = once.take("lock:" + id).claim
            if lock.outcome is not Outcome.CLAIMED:
                continue
            data = self._store.get_conversation(id)
            conversation = loads(id, data, now)
            due = _epoch(conversation.timeout_at)
            key = f"timeout:{id}:{due}"
            claim = once.take(key).claim
            if claim.outcome is not Outcome.CLAIMED:
                once.release("lock:" + id, lock)
                continue
            try:
                if data is None:  # expired meanwhile: forget its due time too
                    conversation.end()
                elif due is not None and due <= now:
                    conversation.timeout_at = None
                    for hook in hooks:
                        hook(conversation)
                    ran += 1
                write = self._saving(conversation, lock)
            except Exception:
                log.exception("on_timeout hook failed for conversation %s", id)
                once.release(key, claim, ("lock:" + id, lock.owner))
                continue
            once.finish(key, claim, b"", write)
        return ran


class _Registers(Protocol):
    """What :meth:`Flow.register` needs of a kit: its ``on_message`` decorator.

    A protocol, not the kit's class: the kit builds the request path, which loads
    conversations, so this module must not import the kit.
    """

    def on_message(
        self, *, step: str
    ) -> Callable[[Callable[[InboundMessage, Conversation], Reply]], object]: ...


@dataclass(frozen=True, slots=True)
class Question:
    """One step of a :class:`Flow`: ask ``prompt``, keep ``parse(answer)`` as ``state[name]``.

    ``parse`` raises :class:`ValueError` for an answer it does not accept; the person is then
    told ``retry`` (``{prompt}`` and ``{error}`` are filled in) and asked again.
    """

    name: str
    prompt: str
    parse: Callable[[str], Any] = str.strip
    retry: str = "Sorry, {error}. {prompt}"


class Flow:
    """A sequence of questions, each validated, answered in order over several messages.

    >>> survey = Flow("survey", [Question("name", "Your name?"), Question("age", "Age?", int)],
    ...               done=lambda conversation: "Thanks!")
    >>> survey.register(kit)

    Start it from any handler with ``return survey.start(conversation)``. Answers are in
    ``conversation.state[question.name]``; after the last one, ``done(conversation)``
    replies and the conversation leaves the flow's steps.
    """

    def __init__(
        self,
        name: str,
        questions: Sequence[Question],
        *,
        done: Callable[[Conversation], Reply],
    ) -> None:
        if not questions:
            raise ValueError("a Flow needs at least one question")
        self.name = name
        self.questions = tuple(questions)
        self.done = done

    def step_of(self, question: Question) -> str:
        return f"{self.name}:{question.name}"

    def start(self, conversation: Conversation) -> str:
        """Ask the first question; the reply to return from the handler that starts it."""
        first = self.questions[0]
        conversation.goto(self.step_of(first))
        return first.prompt

    def register(self, kit: _Registers) -> None:
        """Register one handler per question on ``kit``."""
        for index, question in enumerate(self.questions):
            following = self.questions[index + 1] if index + 1 < len(self.questions) else None
            kit.on_message(step=self.step_of(question))(self._answer(question, following))

    def _answer(
        self, question: Question, following: Question | None
    ) -> Callable[[InboundMessage, Conversation], Reply]:
        def answer(message: InboundMessage, conversation: Conversation) -> Reply:
            try:
                conversation.state[question.name] = question.parse(message.body)
            except ValueError as error:
                return question.retry.format(prompt=question.prompt, error=error)
            if following is None:
                conversation.goto(None)
                return self.done(conversation)
            conversation.goto(self.step_of(following))
            return following.prompt

        answer.__qualname__ = f"{self.name}.{question.name}"
        return answer
