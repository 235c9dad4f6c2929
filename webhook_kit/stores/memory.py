"""A store in process memory: for tests and single-process development servers."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..jobs import Job, JobState
from ..records import (
    Direction,
    LedgerEvent,
    MessageFacts,
    MessageRecord,
    Query,
    StatusEntry,
    optional_timestamp,
    timestamp,
)
from ..status import MessageStatus
from .base import (
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


#: The facts a record keeps as they were last given.
_FACT_FIELDS = (*MessageFacts.TEXT_FIELDS, "num_segments", "num_media")


@dataclass(slots=True)
class _Message:
    status: str | None = None
    rank: int = -2
    error_code: int | None = None
    updated: float = 0.0
    final_at: float | None = None
    created: float | None = None
    sent_at: float | None = None
    history: list[StatusEntry] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    facts: dict[str, object] = field(default_factory=dict)
    redacted: bool = False

    def apply(
        self, status: str | None, rank: int, error_code: int | None, at: float, final: bool
    ) -> None:
        """Move the status forward only; the first final time and the ``sent`` time stay."""
        self.updated = max(self.updated, at)
        self.created = at if self.created is None else min(self.created, at)
        if status and rank > self.rank:
            self.status, self.rank, self.error_code = status, rank, error_code
        if final and self.final_at is None:
            self.final_at = at
        if status == "sent":
            self.sent_at = at if self.sent_at is None else min(self.sent_at, at)

    def merge(self, facts: MessageFacts) -> None:
        for name in _FACT_FIELDS:
            value = getattr(facts, name)
            if value is not None and not (name == "body" and self.redacted):
                self.facts[name] = value  # once redacted, a body is never stored again
        if facts.redact:
            self.facts.pop("body", None)
            self.redacted = True
        self.apply(facts.status, facts.rank, facts.error_code, facts.at, facts.final)
        if facts.created_at is not None:
            self.created = min(self.created or facts.created_at, facts.created_at)

    def absorb(self, other: _Message) -> None:
        """Take in the record of the same send kept under its correlation id."""
        for name, value in other.facts.items():
            self.facts.setdefault(name, value)
        self.redacted = self.redacted or other.redacted
        if self.redacted:
            self.facts.pop("body", None)
        if other.created is not None:
            self.apply(other.status, other.rank, other.error_code, other.created, False)
        if other.final_at is not None:
            self.final_at = min(self.final_at or other.final_at, other.final_at)


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
            claim, won = self._claim(key, lease, replace, self._clock())
            if won and message is not None:
                self._save(message, None)
                if senders and self._opted_out(message.from_ or "", senders):
                    return Claim(Outcome.CLAIMED, claim.owner, opted_out=True)
            return claim

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
            if current is None or current.owner != owner or current.done:
                return False
            now = self._clock()
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
            message = self._message(entry.message_sid, entry.correlation)
            if entry.key in message.keys:
                return Applied(claim, False, _status(message.status))
            message.keys.add(entry.key)
            message.history.append(entry)
            at = entry.received_at
            message.apply(entry.status, entry.rank, entry.error_code, at, entry.final)
            return Applied(claim, True, _status(message.status))

    def save_message(self, facts: MessageFacts, alias: str | None = None) -> None:
        with self._lock:
            self._save(facts, alias)

    def _save(self, facts: MessageFacts, alias: str | None) -> None:
        self._message(facts.message_sid, alias).merge(facts)

    def _message(self, sid: str, alias: str | None) -> _Message:
        """The record of ``sid``, with the one kept under ``alias`` merged in; hold the lock."""
        message = self._messages.get(sid)
        if message is None:  # not setdefault: that builds a record for every callback
            message = self._messages[sid] = _Message()
        pending = self._messages.pop(alias, None) if alias and alias != sid else None
        if pending is not None:
            message.absorb(pending)
        return message

    def get_message(self, message_sid: str) -> MessageRecord | None:
        with self._lock:
            message = self._messages.get(message_sid)
            if message is None:
                return None
            return _record(message_sid, message, tuple(_event(e) for e in message.history))

    def find_messages(self, query: Query) -> list[MessageRecord]:
        with self._lock:
            records = [_record(sid, message, ()) for sid, message in self._messages.items()]
        found = sorted(
            (record for record in records if query.matches(record)),
            key=lambda r: (r.created_at.timestamp() if r.created_at else 0.0, r.message_sid),
            reverse=True,
        )
        return found[: query.limit]

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
        with self._lock:
            conversations = [id for id in self._conversations if id.startswith(address + "|")]
            for id in conversations:
                del self._conversations[id]
            messages = [
                sid
                for sid, message in self._messages.items()
                if address in (message.facts.get("from_"), message.facts.get("to"))
                or any(names_address(entry.form, address) for entry in message.history)
            ]
            for sid in messages:
                del self._messages[sid]
        return len(conversations) + len(messages)

    # -- jobs (see webhook_kit.jobs.JobStore) ---------------------------------------------

    def take_job(self, lease: float, key: str | None = None) -> Job | None:
        with self._lock:
            now = self._clock()
            candidates = [self._jobs[key]] if key in self._jobs else []
            if key is None:
                candidates = sorted(self._jobs.values(), key=lambda job: (job.created, job.key))
            for job in candidates:
                if _due(job, now):
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
                    job, state=state, run_at=run_at, error=error, owner=""
                )
            return True

    def list_jobs(self, state: JobState | None = None, limit: int = 100) -> list[Job]:
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda job: (job.created, job.key))
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
            self._claims = {key: c for key, c in self._claims.items() if c.expires >= now}
            horizon = now - self._ledger_retention
            self._messages = {sid: m for sid, m in self._messages.items() if m.updated >= horizon}
            self._conversations = {
                id: saved for id, saved in self._conversations.items() if saved[1] >= now
            }

    def close(self) -> None:
        """Nothing to release."""


def _due(job: Job, now: float) -> bool:
    if job.state is JobState.PENDING:
        return job.run_at <= now
    return job.state is JobState.RUNNING and job.expires < now


def _status(value: str | None) -> MessageStatus | None:
    return MessageStatus(value) if value else None


def _record(sid: str, message: _Message, history: tuple[LedgerEvent, ...]) -> MessageRecord:
    facts = message.facts
    direction = facts.get("direction")
    return MessageRecord(
        sid,
        _status(message.status),
        message.error_code,
        timestamp(message.updated),
        optional_timestamp(message.final_at),
        history,
        direction=Direction(direction) if isinstance(direction, str) else None,
        from_=_text(facts.get("from_")),
        to=_text(facts.get("to")),
        body=_text(facts.get("body")),
        redacted=message.redacted,
        num_segments=_number(facts.get("num_segments")),
        num_media=_number(facts.get("num_media")),
        created_at=optional_timestamp(message.created),
        sent_at=optional_timestamp(message.sent_at),
        price=_text(facts.get("price")),
        price_unit=_text(facts.get("price_unit")),
        ref=_text(facts.get("ref")),
        in_reply_to=_text(facts.get("in_reply_to")),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _event(entry: StatusEntry) -> LedgerEvent:
    return LedgerEvent(
        MessageStatus(entry.status),
        timestamp(entry.received_at),
        entry.error_code,
        entry.event_type,
        entry.key,
        entry.form,
    )
