"""The delivery ledger: the record of every message, inbound and outbound, with its callbacks.

Callbacks arrive out of order and more than once. The ledger keeps each distinct callback in
the message's history and moves the current status only forward (a late ``sent`` never
replaces ``delivered``), so the record converges to the same state whatever the order.
Besides the status, a record holds what the kit knew when the message was sent or received
(:class:`MessageFacts`): direction, addresses, body, segments, price, the user's ``ref``.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qsl, urlencode

from .errors import WebhookKitError
from .events import Fields
from .status import DeliveryError, MessageStatus, OpenStrEnum

if TYPE_CHECKING:
    from .events import InboundMessage, StatusCallback

#: Key prefix of the history entries that reconciliation wrote (not a callback from Twilio).
RECONCILED = "reconciled:"
#: Prefix of the ledger key of an outbound message whose SID is not known yet.
PENDING = "WK"


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

    A store merges facts into the record: every field given (not None) replaces the stored
    one, except ``status``, which only moves to a higher rank (with its ``error_code``), and
    ``created_at``, which keeps the earliest. ``redact`` drops the body for good.
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
    def error(self) -> DeliveryError | None:
        return DeliveryError(self.error_code) if self.error_code else None

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


@dataclass(frozen=True, slots=True)
class Page:
    """One page of :meth:`Ledger.find`; pass ``cursor`` back for the next (None: the last)."""

    records: tuple[MessageRecord, ...]
    cursor: str | None

    def __iter__(self) -> Iterator[MessageRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)


@dataclass(frozen=True, slots=True)
class LedgerStats:
    """Counts and delivery figures over the messages created in a window."""

    total: int
    by_status: dict[str, int]
    by_error_code: dict[int, int]
    #: delivered (or read) / outbound messages that reached a final status; None without any.
    delivery_rate: float | None
    #: sent -> delivered latency percentiles in seconds ("p50", "p90", "p99"); empty without data.
    latency: dict[str, float] = field(default_factory=dict)


def now() -> float:
    """The ledger's clock: epoch seconds in whole microseconds, so that the datetimes of
    records (and the paging cursors made from them) convert back to exactly what is stored."""
    return round(time.time(), 6)


def timestamp(seconds: float) -> datetime:
    """Stores keep epoch seconds; records show aware UTC datetimes."""
    return datetime.fromtimestamp(seconds, UTC)


def optional_timestamp(seconds: float | None) -> datetime | None:
    return timestamp(seconds) if seconds is not None else None


def cursor_of(record: MessageRecord) -> str:
    created = record.created_at.timestamp() if record.created_at else 0.0
    return f"{created!r}:{record.message_sid}"


def parse_cursor(cursor: str) -> tuple[float, str]:
    created, _, sid = cursor.partition(":")
    try:
        return float(created), sid
    except ValueError:
        raise LedgerQueryError(f"cursor {cursor!r} is not one that Ledger.find returned") from None


class LedgerQueryError(WebhookKitError, ValueError):
    """A ledger query is malformed (a bad cursor, limit or time range)."""


def seconds_of(moment: datetime | float | None) -> float | None:
    """Query bounds accept aware datetimes or epoch seconds."""
    if moment is None or isinstance(moment, int | float):
        return moment
    if moment.tzinfo is None:
        raise LedgerQueryError(f"{moment!r} has no time zone: pass an aware datetime (UTC)")
    return moment.timestamp()


class Records(Protocol):
    """Where the ledger reads records from: any store (the ledger never imports the stores)."""

    def get_message(self, message_sid: str) -> MessageRecord | None: ...

    def find_messages(self, query: Query) -> list[MessageRecord]: ...


class Ledger:
    """Read access to the delivery ledger of one app (``kit.ledger``)."""

    __slots__ = ("_store",)

    def __init__(self, store: Records) -> None:
        self._store = store

    def get(self, message_sid: str) -> MessageRecord | None:
        """The record of a message, or None if the ledger never saw it."""
        return self._store.get_message(message_sid)

    def status(self, message_sid: str) -> MessageStatus | None:
        """The current status of a message, or None if it is unknown."""
        record = self.get(message_sid)
        return record.status if record else None

    def find(
        self,
        *,
        ref: str | None = None,
        to: str | None = None,
        from_: str | None = None,
        status: MessageStatus | str | Sequence[MessageStatus | str] | None = None,
        direction: Direction | str | None = None,
        since: datetime | float | None = None,
        until: datetime | float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        """Records matching every given filter, newest first, ``limit`` at a time.

        ``since``/``until`` bound the creation time (aware datetimes or epoch seconds).
        Records come without their history: :meth:`get` one for it.
        """
        if not 1 <= limit <= 10_000:
            raise LedgerQueryError(f"limit={limit} must be between 1 and 10000")
        statuses = (status,) if isinstance(status, str) else tuple(status or ())
        query = Query(
            ref=ref,
            to=to,
            from_=from_,
            statuses=tuple(str(MessageStatus(s).value) for s in statuses),
            direction=Direction(direction).value if direction else None,
            since=seconds_of(since),
            until=seconds_of(until),
            after=parse_cursor(cursor) if cursor else None,
            limit=limit,
        )
        records = tuple(self._store.find_messages(query))
        more = len(records) == limit
        return Page(records, cursor_of(records[-1]) if more else None)

    def iter(self, **filters: object) -> Iterator[MessageRecord]:
        """Every record :meth:`find` matches, fetched a page at a time."""
        cursor: str | None = None
        while True:
            page = self.find(**filters, cursor=cursor, limit=1000)  # type: ignore[arg-type]
            yield from page
            if page.cursor is None:
                return
            cursor = page.cursor

    def stats(
        self, *, since: datetime | float | None = None, until: datetime | float | None = None
    ) -> LedgerStats:
        """Counts by status and error code, delivery rate and sent->delivered latency.

        The delivery rate counts outbound messages only: delivered (or read) among those
        that reached a final status.
        """
        by_status: Counter[str] = Counter()
        by_error: Counter[int] = Counter()
        latencies: list[float] = []
        final = succeeded = 0
        for record in self.iter(since=since, until=until):
            status = record.status
            by_status[status.value if status else "unknown"] += 1
            if record.error_code:
                by_error[record.error_code] += 1
            if record.direction is Direction.INBOUND or status is None or not status.is_final:
                continue
            final += 1
            if status in {MessageStatus.DELIVERED, MessageStatus.READ}:
                succeeded += 1
                if record.sent_at and record.final_at:
                    latency = (record.final_at - record.sent_at).total_seconds()
                    latencies.append(max(0.0, latency))
        return LedgerStats(
            total=sum(by_status.values()),
            by_status=dict(by_status.most_common()),
            by_error_code=dict(by_error.most_common()),
            delivery_rate=succeeded / final if final else None,
            latency=percentiles(latencies),
        )


def record_json(record: MessageRecord) -> dict[str, object]:
    """A record as JSON-ready values (ISO times, plain strings), for scripts and the CLI."""

    def plain(value: object) -> object:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, OpenStrEnum):
            return value.value
        return value

    data = {name: plain(getattr(record, name)) for name in _RECORD_FIELDS if name != "history"}
    data["history"] = [
        {
            "status": event.status.value,
            "received_at": event.received_at.isoformat(),
            "error_code": event.error_code,
            "event_type": event.event_type,
            "reconciled": event.reconciled,
            "fields": event.raw.to_dict(),
        }
        for event in record.history
    ]
    return data


_RECORD_FIELDS = tuple(f.name for f in fields(MessageRecord))


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99 by the nearest-rank method."""
    if not values:
        return {}
    ordered = sorted(values)
    return {f"p{p}": ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] for p in (50, 90, 99)}
