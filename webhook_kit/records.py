"""The record types of the delivery ledger, apart from the ledger so that both it and the
stores import them (``ledger`` -> ``records`` <- ``stores``) without a circle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import parse_qsl, urlencode

from .events import Fields
from .status import DeliveryFailure, MessageStatus, OpenStrEnum

if TYPE_CHECKING:
    from .events import InboundMessage, StatusCallback

#: Key prefix of the history entries that reconciliation wrote (not a callback from Twilio).
RECONCILED = "reconciled:"
#: Prefix of the ledger key of an outbound message whose SID is not known yet.
PENDING = "WK"
#: The form field of a history entry that Event Streams brought: the CloudEvent, as JSON.
STREAM_FIELD = "EventStreamsEvent"


class Direction(OpenStrEnum):
    """Twilio's ``direction`` of a message."""

    INBOUND = "inbound"
    OUTBOUND_API = "outbound-api"
    OUTBOUND_REPLY = "outbound-reply"
    OUTBOUND_CALL = "outbound-call"


@dataclass(frozen=True, slots=True)
class StatusEntry:
    """One callback as the store writes it."""

    message_sid: str
    key: str
    status: str
    rank: int
    final: bool
    error_code: int | None
    event_type: str | None
    received_at: float
    #: Every field of the callback, form-encoded (kept whole for audits and replays).
    form: str
    #: The verified correlation id of the send this callback belongs to: its pending record
    #: (written before the SID was known) is merged into the SID's record in the same step.
    correlation: str | None = None

    @staticmethod
    def key_of(update: StatusCallback) -> str:
        """The idempotency key of a status update: whichever channel brings it (a status
        callback or Event Streams), the same status of a message is one entry."""
        error = update.error.code if update.error else ""
        event_type = update.event_type or ""
        return f"status:{update.message_sid}:{update.status.value}:{event_type}:{error}"

    @classmethod
    def from_callback(
        cls,
        update: StatusCallback,
        key: str,
        received_at: float,
        form: str | None = None,
        correlation: str | None = None,
    ) -> StatusEntry:
        status = update.status
        return cls(
            update.message_sid,
            key,
            status.value,
            status.rank,
            status.is_final,
            update.error.code if update.error else None,
            update.event_type,
            received_at,
            form if form is not None else urlencode(update.raw.items(multi=True)),
            correlation,
        )


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the kit learnt about a message outside its callbacks, written with ``save_message``.

    A store merges facts into the record by the rules of :mod:`webhook_kit.stores.rules`:
    every field given (not None, an empty string included) replaces the stored one, except
    ``status``, which only moves further on (with its ``error_code``), and the times, which
    keep the earliest (``created_at``, sent, final) or the latest (updated). ``redact`` drops
    the body for good.
    """

    message_sid: str
    #: When these facts were learnt (epoch seconds): the record's update and final time.
    at: float
    direction: str | None = None
    from_: str | None = None
    to: str | None = None
    body: str | None = None
    num_segments: int | None = None
    num_media: int | None = None
    created_at: float | None = None
    status: str | None = None
    error_code: int | None = None
    price: str | None = None
    price_unit: str | None = None
    ref: str | None = None
    in_reply_to: str | None = None
    redact: bool = False

    @property
    def rank(self) -> int:
        return MessageStatus(self.status).rank if self.status else -2

    @property
    def final(self) -> bool:
        return self.status is not None and MessageStatus(self.status).is_final

    #: The descriptive fields, in the order stores keep them.
    TEXT_FIELDS = ("direction", "from_", "to", "body", "price", "price_unit", "ref", "in_reply_to")

    @classmethod
    def inbound(cls, message: InboundMessage, at: float) -> MessageFacts:
        """An inbound message as it is recorded with its claim."""
        return cls(
            message.message_sid,
            at,
            direction=Direction.INBOUND.value,
            from_=message.from_,
            to=message.to,
            body=message.body,
            num_segments=message.num_segments,
            num_media=message.num_media,
            created_at=at,
            status=MessageStatus.RECEIVED.value,
        )


@dataclass(frozen=True, slots=True)
class EventWrite:
    """What one Event Streams event writes to the ledger, applied with the rest of its batch
    in one atomic step (``Store.apply_events``)."""

    #: The event's dedupe record: kept as a finished claim for the claims' retention, so a
    #: retried or duplicated event finds it and writes nothing.
    key: str
    #: The status update it stands for, recorded as its callback would be.
    status: StatusEntry | None = None
    #: The inbound message it stands for, merged as the inbound webhook's record is.
    message: MessageFacts | None = None


class EventApplied(NamedTuple):
    """What ``Store.apply_events`` did with one event."""

    #: Its dedupe record was written by this call (False: applied before, or earlier in
    #: the same batch), and so were its ledger effects.
    new: bool
    #: Its status joined the message's history (False too when a callback brought it first).
    recorded: bool


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """One status callback in a message's history."""

    status: MessageStatus
    received_at: datetime
    error_code: int | None
    event_type: str | None
    key: str
    form: str

    @property
    def raw(self) -> Fields:
        """Every field of the callback as Twilio sent it."""
        return Fields(parse_qsl(self.form, keep_blank_values=True))

    @property
    def reconciled(self) -> bool:
        """True when reconciliation fetched this status; no callback brought it."""
        return self.key.startswith(RECONCILED)

    @property
    def source(self) -> str:
        """What brought this status first: ``callback``, ``event-streams`` or ``reconcile``."""
        if self.reconciled:
            return "reconcile"
        return "event-streams" if STREAM_FIELD in self.raw else "callback"


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A message: what is known about it, its current status and its callbacks, oldest first.

    Records returned by :meth:`Ledger.find` carry no ``history``; :meth:`Ledger.get` does.
    """

    message_sid: str
    status: MessageStatus | None
    error_code: int | None
    updated_at: datetime
    final_at: datetime | None
    history: tuple[LedgerEvent, ...]
    direction: Direction | None = None
    from_: str | None = None
    to: str | None = None
    #: None once redacted (``redacted`` is then True), or when the body was never known.
    body: str | None = None
    redacted: bool = False
    num_segments: int | None = None
    num_media: int | None = None
    created_at: datetime | None = None
    #: When the ``sent`` callback arrived.
    sent_at: datetime | None = None
    price: str | None = None
    price_unit: str | None = None
    ref: str | None = None
    #: The SID of the inbound message this one replied to.
    in_reply_to: str | None = None

    @property
    def is_final(self) -> bool:
        return self.final_at is not None

    @property
    def error(self) -> DeliveryFailure | None:
        return DeliveryFailure(self.error_code) if self.error_code else None

    @property
    def pending(self) -> bool:
        """True for a send whose API call has not answered (``message_sid`` is its key)."""
        return self.message_sid.startswith(PENDING)


@dataclass(frozen=True, slots=True)
class Query:
    """A ledger search as stores run it: every given filter must hold; newest first."""

    ref: str | None = None
    to: str | None = None
    from_: str | None = None
    statuses: tuple[str, ...] = ()
    direction: str | None = None
    #: ``created_at`` bounds in epoch seconds: since <= created < until.
    since: float | None = None
    until: float | None = None
    #: Only messages that are not final.
    open_only: bool = False
    #: Keyset paging: only records ordered after this (created, sid), i.e. older.
    after: tuple[float, str] | None = None
    limit: int = 100

    def matches(self, record: MessageRecord) -> bool:
        """The filters in Python, for stores that cannot run them as a query."""
        created = record.created_at.timestamp() if record.created_at else 0.0
        return (
            (self.ref is None or record.ref == self.ref)
            and (self.to is None or record.to == self.to)
            and (self.from_ is None or record.from_ == self.from_)
            and (not self.statuses or (record.status or "") in self.statuses)
            and (self.direction is None or record.direction == self.direction)
            and (self.since is None or created >= self.since)
            and (self.until is None or created < self.until)
            and not (self.open_only and record.is_final)
            and (self.after is None or (created, record.message_sid) < self.after)
        )


def now() -> float:
    """The ledger's clock: epoch seconds in whole microseconds, so that the datetimes of
    records (and the paging cursors made from them) convert back to exactly what is stored."""
    return time.time_ns() // 1000 / 1e6  # a division is correctly rounded; round() is slow


def timestamp(seconds: float) -> datetime:
    """Stores keep epoch seconds; records show aware UTC datetimes."""
    return datetime.fromtimestamp(seconds, UTC)


def optional_timestamp(seconds: float | None) -> datetime | None:
    return timestamp(seconds) if seconds is not None else None
