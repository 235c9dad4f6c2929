"""A store in process memory: for tests and single-process development servers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..ledger import LedgerEvent, MessageRecord, StatusEntry, timestamp
from ..status import MessageStatus
from . import (
    DEFAULT_LEDGER_RETENTION,
    DEFAULT_RETENTION,
    Applied,
    Claim,
    ConversationWrite,
    OptOut,
    Outcome,
    names_address,
    new_owner,
)

_PURGE_EVERY = 60.0


@dataclass(slots=True)
class _Claim:
    owner: str
    done: bool
    answer: bytes
    expires: float


@dataclass(slots=True)
class _Message:
    status: str | None = None
    rank: int = -2
    error_code: int | None = None
    updated: float = 0.0
    final_at: float | None = None
    history: list[StatusEntry] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)


class MemoryStore:
    """Thread-safe, bounded by the retention periods; not shared between processes."""

    def __init__(
        self,
        *,
        retention: float = DEFAULT_RETENTION,
        ledger_retention: float = DEFAULT_LEDGER_RETENTION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._retention = retention
        self._ledger_retention = ledger_retention
        self._clock = clock
        self._lock = threading.Lock()
        self._claims: dict[str, _Claim] = {}
        self._messages: dict[str, _Message] = {}
        #: id -> (data, expires, due or None)
        self._conversations: dict[str, tuple[bytes, float, float | None]] = {}
        self._opt_outs: dict[tuple[str, str], OptOut] = {}
        self._next_purge = clock() + _PURGE_EVERY

    def claim(self, key: str, lease: float, replace: str = "") -> Claim:
        with self._lock:
            return self._claim(key, lease, replace, self._clock())[0]

    def _claim(self, key: str, lease: float | None, replace: str, now: float) -> tuple[Claim, bool]:
        """Take ``key`` (``lease=None``: finished at once) and say if it was won; hold the lock."""
        current = self._claims.get(key)
        if (
            current is None
            or current.expires < now
            or (replace and not current.done and current.owner == replace)
        ):
            if lease is None:
                self._claims[key] = _Claim("", True, b"", now + self._retention)
                return Claim(Outcome.DONE), True
            owner = new_owner()
            self._claims[key] = _Claim(owner, False, b"", now + lease)
            return Claim(Outcome.CLAIMED, owner), True
        if current.done:
            return Claim(Outcome.DONE, answer=current.answer), False
        return Claim(Outcome.BUSY, current.owner), False

    def complete(
        self, key: str, owner: str, answer: bytes, conversation: ConversationWrite | None = None
    ) -> None:
        with self._lock:
            current = self._claims.get(key)
            if current is None or current.owner != owner:
                return
            now = self._clock()
            current.done = True
            current.answer = answer
            current.expires = now + self._retention
            if conversation is None:
                return
            if conversation.data is None:
                self._conversations.pop(conversation.id, None)
            else:
                expires = now + conversation.ttl
                saved = (conversation.data, expires, conversation.due)
                self._conversations[conversation.id] = saved
            lock = self._claims.get("lock:" + conversation.id)
            if lock is not None and lock.owner == conversation.lock_owner and not lock.done:
                del self._claims["lock:" + conversation.id]

    def release(self, key: str, owner: str) -> None:
        with self._lock:
            current = self._claims.get(key)
            if current is not None and current.owner == owner:
                del self._claims[key]

    def record_status(
        self, entry: StatusEntry, lease: float | None = None, replace: str = ""
    ) -> Applied:
        with self._lock:
            claim, won = self._claim(entry.key, lease, replace, self._clock())
            if not won:
                return Applied(claim, False, None)
            message = self._messages.setdefault(entry.message_sid, _Message())
            if entry.key in message.keys:
                return Applied(claim, False, _status(message.status))
            message.keys.add(entry.key)
            message.history.append(entry)
            message.updated = entry.received_at
            if entry.rank > message.rank:
                message.status, message.rank = entry.status, entry.rank
                message.error_code = entry.error_code
            if entry.final and message.final_at is None:
                message.final_at = entry.received_at
            return Applied(claim, True, _status(message.status))

    def get_message(self, message_sid: str) -> MessageRecord | None:
        with self._lock:
            message = self._messages.get(message_sid)
            if message is None:
                return None
            return MessageRecord(
                message_sid,
                _status(message.status),
                message.error_code,
                timestamp(message.updated),
                timestamp(message.final_at) if message.final_at is not None else None,
                tuple(_event(entry) for entry in message.history),
            )

    def get_conversation(self, id: str) -> bytes | None:
        with self._lock:
            saved = self._conversations.get(id)
        return saved[0] if saved is not None and saved[1] >= self._clock() else None

    def due_conversations(self, now: float, limit: int) -> list[str]:
        with self._lock:
            due = [
                id for id, (_, _, at) in self._conversations.items() if at is not None and at <= now
            ]
        return due[:limit]

    def set_opt_out(self, record: OptOut) -> None:
        with self._lock:
            self._opt_outs[record.sender, record.address] = record

    def get_opt_out(self, sender: str, address: str) -> OptOut | None:
        with self._lock:
            return self._opt_outs.get((sender, address))

    def list_opt_outs(self, sender: str | None = None) -> list[OptOut]:
        with self._lock:
            return [
                record
                for key, record in sorted(self._opt_outs.items())
                if sender is None or key[0] == sender
            ]

    def purge_address(self, address: str) -> int:
        with self._lock:
            conversations = [id for id in self._conversations if id.startswith(address + "|")]
            for id in conversations:
                del self._conversations[id]
            messages = [
                sid
                for sid, message in self._messages.items()
                if any(names_address(entry.form, address) for entry in message.history)
            ]
            for sid in messages:
                del self._messages[sid]
        return len(conversations) + len(messages)

    def maintain(self, *, full: bool = False) -> None:
        """Drop expired keys and records, at most once a minute unless ``full``."""
        now = self._clock()
        if now < self._next_purge and not full:
            return
        with self._lock:
            self._next_purge = now + _PURGE_EVERY
            self._claims = {key: c for key, c in self._claims.items() if c.expires >= now}
            horizon = now - self._ledger_retention
            self._messages = {sid: m for sid, m in self._messages.items() if m.updated >= horizon}
            self._conversations = {
                id: saved for id, saved in self._conversations.items() if saved[1] >= now
            }

    def close(self) -> None:
        """Nothing to release."""


def _status(value: str | None) -> MessageStatus | None:
    return MessageStatus(value) if value is not None else None


def _event(entry: StatusEntry) -> LedgerEvent:
    return LedgerEvent(
        MessageStatus(entry.status),
        timestamp(entry.received_at),
        entry.error_code,
        entry.event_type,
        entry.key,
        entry.form,
    )
