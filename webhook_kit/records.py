"""The record types of the delivery ledger, apart from the ledger so that both it and the
stores import them (``ledger`` -> ``records`` <- ``stores``) without a circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
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
