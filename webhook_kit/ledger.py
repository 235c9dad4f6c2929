"""The delivery ledger: every status callback, applied to its message in lifecycle order.

Callbacks arrive out of order and more than once. The ledger keeps each distinct callback in
the message's history and moves the current status only forward (a late ``sent`` never
replaces ``delivered``), so the record converges to the same state whatever the order.
"""

from __future__ import annotations

from typing import Protocol

from .records import LedgerEvent, MessageRecord, StatusEntry, timestamp
from .status import MessageStatus

# The record types live in records.py (the stores import them from there); still importable here.
__all__ = ["Ledger", "LedgerEvent", "MessageRecord", "Records", "StatusEntry", "timestamp"]


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
