"""The delivery ledger: the record of every message, inbound and outbound, with its callbacks.

Callbacks arrive out of order and more than once. The ledger keeps each distinct callback in
the message's history and moves the current status only forward (a late ``sent`` never
replaces ``delivered``), so the record converges to the same state whatever the order.
Besides the status, a record holds what the kit knew when the message was sent or received
(:class:`MessageFacts`): direction, addresses, body, segments, price, the user's ``ref``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Protocol

from .errors import LedgerQueryError
from .records import (
    PENDING,
    RECONCILED,
    Direction,
    LedgerEvent,
    MessageFacts,
    MessageRecord,
    Query,
    StatusEntry,
    now,
    optional_timestamp,
    timestamp,
)
from .status import MessageStatus, OpenStrEnum

# The record types live in records.py (the stores import them from there); still importable here.
__all__ = [
    "PENDING",
    "RECONCILED",
    "Direction",
    "Ledger",
    "LedgerEvent",
    "LedgerQueryError",
    "LedgerStats",
    "MessageFacts",
    "MessageRecord",
    "Page",
    "Query",
    "Records",
    "StatusEntry",
    "now",
    "optional_timestamp",
    "record_json",
    "timestamp",
]


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


def cursor_of(record: MessageRecord) -> str:
    created = record.created_at.timestamp() if record.created_at else 0.0
    return f"{created!r}:{record.message_sid}"


def parse_cursor(cursor: str) -> tuple[float, str]:
    created, _, sid = cursor.partition(":")
    try:
        return float(created), sid
    except ValueError:
        raise LedgerQueryError(f"cursor {cursor!r} is not one that Ledger.find returned") from None


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
            "source": event.source,
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
