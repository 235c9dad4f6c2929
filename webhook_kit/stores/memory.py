"""A store in process memory: for tests and single-process development servers."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..jobs import Job, JobState
from ..records import (
    EventApplied,
    EventWrite,
    LedgerEvent,
    MessageFacts,
    MessageRecord,
    Query,
    StatusEntry,
    timestamp,
)
from ..status import MessageStatus
from .base import (
    DEFAULT_LEDGER_RETENTION,
    DEFAULT_RETENTION,
    RECORD_COLUMNS,
    Applied,
    Claim,
    ConversationWrite,
    OptOut,
    Outcome,
    names_address,
    new_owner,
    record_from_row,
)
from .rules import (
    NAMES,
    Row,
    claimable,
    entry_row,
    facts_row,
    history_order,
    holds,
    job_due,
    job_order,
    lapsed,
    ledger_horizon,
    merge,
)

_PURGE_EVERY = 60.0


@dataclass(slots=True)
class _Claim:
    owner: str
    done: bool
    answer: bytes
    expires: float


class _Message:
    """A ledger record: its row (see :mod:`.rules`) and its callbacks, as they came."""

    __slots__ = ("history", "row")

    def __init__(self, row: Row) -> None:
        self.row = row
        # A tuple: most records (every inbound message) have no callback, and the empty tuple
        # is shared, where an empty list would cost each of them 56 bytes.
        self.history: tuple[StatusEntry, ...] = ()


class MemoryStore:
    """Thread-safe, bounded by the retention periods; not shared between processes.

    It runs the same declared rules as every other store (:mod:`.rules`), so that a test
    suite on it sees what production sees.
    """

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
        self._jobs: dict[str, Job] = {}
        #: id -> (data, expires, due or None)
        self._conversations: dict[str, tuple[bytes, float, float | None]] = {}
        self._opt_outs: dict[tuple[str, str], OptOut] = {}
        self._next_purge = clock() + _PURGE_EVERY

    def claim(
        self,
        key: str,
        lease: float,
        *,
        replace: str = "",
        message: MessageFacts | None = None,
        senders: Sequence[str] = (),
    ) -> Claim:
        with self._lock:
            claim = self._claim(key, lease, replace, self._clock())
            if claim.outcome is Outcome.CLAIMED and message is not None:
                self._save(facts_row(message), None)
                if senders and self._opted_out(message.from_ or "", senders):
                    return Claim(Outcome.CLAIMED, claim.owner, opted_out=True)
            return claim

    def _claim(self, key: str, lease: float, replace: str, now: float) -> Claim:
        """Take ``key`` if free, lapsed, or unfinished and held by ``replace``; hold the lock."""
        current = self._claims.get(key)
        if current is None or claimable(current.expires, current.done, current.owner, now, replace):
            owner = new_owner()
            self._claims[key] = _Claim(owner, False, b"", now + lease)
            return Claim(Outcome.CLAIMED, owner)
        if current.done:
            return Claim(Outcome.DONE, answer=current.answer)
        return Claim(Outcome.BUSY, current.owner)

    def complete(
        self,
        key: str,
        owner: str,
        answer: bytes,
        *,
        conversation: ConversationWrite | None = None,
        jobs: Sequence[Job] = (),
    ) -> bool:
        with self._lock:
            current = self._claims.get(key)
            now = self._clock()
            if current is None or not holds(
                current.expires, current.done, current.owner, now, owner
            ):
                return False
            current.done, current.answer = True, answer
            current.expires = now + self._retention
            for job in jobs:
                self._jobs.setdefault(job.key, job)
            if conversation is not None:
                self._save_conversation(conversation, now)
            return True

    def _save_conversation(self, conversation: ConversationWrite, now: float) -> None:
        if conversation.data is None:
            self._conversations.pop(conversation.id, None)
        else:
            expires = now + conversation.ttl
            self._conversations[conversation.id] = (conversation.data, expires, conversation.due)
        self._release("lock:" + conversation.id, conversation.lock_owner)

    def release(self, key: str, owner: str) -> None:
        with self._lock:
            self._release(key, owner)

    def _release(self, key: str, owner: str) -> None:
        """Drop ``owner``'s unfinished claim; a finished one keeps its answer. Hold the lock."""
        current = self._claims.get(key)
        if current is not None and current.owner == owner and not current.done:
            del self._claims[key]

    def record_status(
        self, entry: StatusEntry, lease: float | None = None, replace: str = ""
    ) -> Applied:
        with self._lock:
            if lease is None:  # no claim: the recorded callback itself is the key
                claim = Claim(Outcome.DONE)
            else:
                claim = self._claim(entry.key, lease, replace, self._clock())
                if claim.outcome is not Outcome.CLAIMED:
                    return Applied(claim, False, None)
            message = self._absorbed(entry.message_sid, entry.correlation)
            if message is not None and _recorded(message, entry.key):
                return Applied(claim, False, _status(message.row) if lease else None)
            message = self._save(entry_row(entry), None)
            message.history += (entry,)
            return Applied(claim, True, _status(message.row))

    def apply_events(self, writes: Sequence[EventWrite]) -> list[EventApplied]:
        """Under the lock; if a write raises, what the batch changed is put back."""
        with self._lock:
            now = self._clock()
            undo = _Undo()
            try:
                return [self._apply_event(write, now, undo) for write in writes]
            except BaseException:
                undo.restore(self._claims, self._messages)
                raise

    def _apply_event(self, write: EventWrite, now: float, undo: _Undo) -> EventApplied:
        """One write of :meth:`apply_events`, noting first what it changes; hold the lock."""
        current = self._claims.get(write.key)
        if current is not None and not claimable(
            current.expires, current.done, current.owner, now, ""
        ):
            return EventApplied(False, False)
        undo.claims.setdefault(write.key, current)
        self._claims[write.key] = _Claim("", True, b"", now + self._retention)
        recorded = False
        entry, facts = write.status, write.message
        if entry is not None:
            message = undo.keep(self._messages, entry.message_sid)
            if not _recorded(message, entry.key):
                self._save(entry_row(entry), None).history += (entry,)
                recorded = True
        if facts is not None:
            undo.keep(self._messages, facts.message_sid)
            self._save(facts_row(facts), None)
        return EventApplied(True, recorded)

    def save_message(self, facts: MessageFacts, alias: str | None = None) -> None:
        with self._lock:
            self._save(facts_row(facts), alias)

    def _save(self, row: Row, alias: str | None) -> _Message:
        """Merge ``row`` into its record, after the one kept under ``alias``; hold the lock."""
        sid = str(row[0])
        message = self._absorbed(sid, alias)
        if message is None:
            message = self._messages[sid] = _Message(row)
        else:
            message.row = merge(message.row, row)
        return message

    def _absorbed(self, sid: str, alias: str | None) -> _Message | None:
        """The record of ``sid`` with the one kept under ``alias`` merged in; hold the lock."""
        message = self._messages.get(sid)
        pending = self._messages.pop(alias, None) if alias and alias != sid else None
        if pending is not None:
            row = (sid, *pending.row[1:])
            if message is None:
                message = self._messages[sid] = _Message(row)
            else:
                message.row = merge(message.row, row, given_wins=False)
        return message

    def get_message(self, message_sid: str) -> MessageRecord | None:
        with self._lock:
            message = self._messages.get(message_sid)
            if message is None:
                return None
            history = sorted(message.history, key=lambda e: history_order(e.received_at, e.key))
            return _record(message.row, tuple(map(_event, history)))

    def find_messages(self, query: Query) -> list[MessageRecord]:
        with self._lock:
            records = [_record(message.row, ()) for message in self._messages.values()]
        found = sorted(
            (record for record in records if query.matches(record)),
            key=lambda r: (r.created_at.timestamp() if r.created_at else 0.0, r.message_sid),
            reverse=True,
        )
        return found[: query.limit]

    def get_conversation(self, id: str) -> bytes | None:
        with self._lock:
            saved = self._conversations.get(id)
        return saved[0] if saved is not None and not lapsed(saved[1], self._clock()) else None

    def due_conversations(self, now: float, limit: int) -> list[str]:
        current = self._clock()
        with self._lock:
            due = sorted(
                (at, id)
                for id, (_, expires, at) in self._conversations.items()
                if at is not None and at <= now and not lapsed(expires, current)
            )
        return [id for _, id in due[:limit]]

    def set_opt_out(self, record: OptOut) -> None:
        with self._lock:
            self._opt_outs[record.sender, record.address] = record

    def get_opt_out(self, sender: str, address: str) -> OptOut | None:
        with self._lock:
            return self._opt_outs.get((sender, address))

    def opted_out(self, address: str, senders: Sequence[str]) -> bool:
        with self._lock:
            return self._opted_out(address, senders)

    def _opted_out(self, address: str, senders: Sequence[str]) -> bool:
        """:meth:`opted_out`, holding the lock."""
        if not self._opt_outs:
            return False
        for sender in senders:
            record = self._opt_outs.get((sender, address))
            if record is not None and record.opted_out:
                return True
        return False

    def list_opt_outs(self, sender: str | None = None) -> list[OptOut]:
        with self._lock:
            return [
                record
                for key, record in sorted(self._opt_outs.items())
                if sender is None or key[0] == sender
            ]

    def purge_address(self, address: str) -> int:
        now = self._clock()
        with self._lock:
            conversations = [id for id in self._conversations if id.startswith(address + "|")]
            live = 0
            for id in conversations:
                live += not lapsed(self._conversations.pop(id)[1], now)
            messages = [
                sid
                for sid, message in self._messages.items()
                if address in (message.row[_FROM], message.row[_TO])
                or any(names_address(entry.form, address) for entry in message.history)
            ]
            for sid in messages:
                del self._messages[sid]
        return live + len(messages)

    # -- jobs (see webhook_kit.jobs.JobStore) ---------------------------------------------

    def take_job(self, lease: float, key: str | None = None) -> Job | None:
        with self._lock:
            now = self._clock()
            candidates = [self._jobs[key]] if key in self._jobs else []
            if key is None:
                candidates = sorted(self._jobs.values(), key=lambda j: job_order(j.created, j.key))
            for job in candidates:
                if job_due(job.state.value, job.run_at, job.expires, now):
                    taken = dataclasses.replace(
                        job,
                        state=JobState.RUNNING,
                        owner=new_owner(),
                        expires=now + lease,
                        attempts=job.attempts + 1,
                    )
                    self._jobs[job.key] = taken
                    return taken
            return None

    def get_job(self, key: str) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def renew_job(self, key: str, owner: str, lease: float) -> bool:
        with self._lock:
            job = self._running(key, owner)
            if job is not None:
                self._jobs[key] = dataclasses.replace(job, expires=self._clock() + lease)
            return job is not None

    def finish_job(
        self, key: str, owner: str, state: JobState | None, run_at: float = 0.0, error: str = ""
    ) -> bool:
        with self._lock:
            job = self._running(key, owner)
            if job is None:
                return False
            if state is None:
                del self._jobs[key]
            else:
                self._jobs[key] = dataclasses.replace(
                    job, state=state, run_at=run_at, error=error or None, owner=""
                )
            return True

    def list_jobs(self, state: JobState | None = None, limit: int = 100) -> list[Job]:
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: job_order(j.created, j.key))
        return [job for job in jobs if state is None or job.state is state][:limit]

    def retry_job(self, key: str) -> bool:
        with self._lock:
            job = self._jobs.get(key)
            if job is None or job.state is not JobState.DEAD:
                return False
            self._jobs[key] = dataclasses.replace(
                job, state=JobState.PENDING, attempts=0, run_at=self._clock()
            )
            return True

    def purge_jobs(self, state: JobState = JobState.DEAD) -> int:
        with self._lock:
            doomed = [key for key, job in self._jobs.items() if job.state is state]
            for key in doomed:
                del self._jobs[key]
            return len(doomed)

    def _running(self, key: str, owner: str) -> Job | None:
        job = self._jobs.get(key)
        ok = job is not None and job.state is JobState.RUNNING and job.owner == owner
        return job if ok else None

    def maintain(self, *, full: bool = False) -> None:
        """Drop expired keys and records, at most once a minute unless ``full``."""
        now = self._clock()
        if now < self._next_purge and not full:
            return
        with self._lock:
            self._next_purge = now + _PURGE_EVERY
            self._claims = {k: c for k, c in self._claims.items() if not lapsed(c.expires, now)}
            horizon = ledger_horizon(now, self._ledger_retention)
            self._messages = {
                sid: m
                for sid, m in self._messages.items()
                if m.row[_UPDATED] > horizon  # type: ignore[operator]
            }
            self._conversations = {
                id: saved for id, saved in self._conversations.items() if not lapsed(saved[1], now)
            }

    def close(self) -> None:
        """Nothing to release."""


_FROM, _TO, _UPDATED, _STATUS = (
    NAMES.index(name) for name in ("from_addr", "to_addr", "updated", "status")
)


class _Undo:
    """What an Event Streams batch changed, as it was before: put back if the batch fails."""

    __slots__ = ("claims", "messages")

    def __init__(self) -> None:
        self.claims: dict[str, _Claim | None] = {}
        self.messages: dict[str, tuple[Row, tuple[StatusEntry, ...]] | None] = {}

    def keep(self, messages: dict[str, _Message], sid: str) -> _Message | None:
        """Note the record of ``sid`` before its first change; it, as it is now."""
        message = messages.get(sid)
        if sid not in self.messages:
            self.messages[sid] = None if message is None else (message.row, message.history)
        return message

    def restore(self, claims: dict[str, _Claim], messages: dict[str, _Message]) -> None:
        for key, claim in self.claims.items():
            if claim is None:
                claims.pop(key, None)
            else:
                claims[key] = claim
        for sid, kept in self.messages.items():
            if kept is None:
                messages.pop(sid, None)
            else:
                message = messages[sid] = _Message(kept[0])
                message.history = kept[1]


def _recorded(message: _Message | None, key: str) -> bool:
    """Whether the status entry ``key`` is in the history of ``message`` already."""
    return message is not None and any(entry.key == key for entry in message.history)


def _status(row: Row) -> MessageStatus | None:
    value = row[_STATUS]
    return MessageStatus(value) if isinstance(value, str) and value else None


def _record(row: Row, history: tuple[LedgerEvent, ...]) -> MessageRecord:
    return record_from_row([row[index] for index in _IN_RECORD_ORDER], history)


_IN_RECORD_ORDER = tuple(NAMES.index(name) for name in RECORD_COLUMNS)


def _event(entry: StatusEntry) -> LedgerEvent:
    return LedgerEvent(
        MessageStatus(entry.status),
        timestamp(entry.received_at),
        entry.error_code,
        entry.event_type,
        entry.key,
        entry.form,
    )
