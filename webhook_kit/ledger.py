"""The delivery ledger: every status callback, applied to its message in lifecycle order.

Callbacks arrive out of order and more than once. The ledger keeps each distinct callback in
the message's history and moves the current status only forward (a late ``sent`` never
replaces ``delivered``), so the record converges to the same state whatever the order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qsl, urlencode

from .events import Fields
from .status import DeliveryError, MessageStatus

if TYPE_CHECKING:
    from .events import StatusCallback


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

    @classmethod
    def from_callback(
        cls, update: StatusCallback, key: str, received_at: float, form: str | None = None
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


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A message's current status and its full callback history, oldest first."""

    message_sid: str
    status: MessageStatus | None
    error_code: int | None
    updated_at: datetime
    final_at: datetime | None
    history: tuple[LedgerEvent, ...]

    @property
    def is_final(self) -> bool:
        return self.final_at is not None

    @property
    def error(self) -> DeliveryError | None:
        return DeliveryError(self.error_code) if self.error_code else None


def timestamp(seconds: float) -> datetime:
    """Stores keep epoch seconds; records show aware UTC datetimes."""
    return datetime.fromtimestamp(seconds, UTC)


class Records(Protocol):
    """Where the ledger reads records from: any store (the ledger never imports the stores)."""

    def get_message(self, message_sid: str) -> MessageRecord | None: ...


class Ledger:
    """Read access to the delivery ledger of one app (``kit.ledger``)."""

    __slots__ = ("_store",)

    def __init__(self, store: Records) -> None:
        self._store = store

    def get(self, message_sid: str) -> MessageRecord | None:
        """The record of a message, or None if no callback for it was ever received."""
        return self._store.get_message(message_sid)

    def status(self, message_sid: str) -> MessageStatus | None:
        """The current status of a message, or None if it is unknown."""
        record = self.get(message_sid)
        return record.status if record else None
