"""The embedded default store: one SQLite file in WAL mode.

WAL lets every gunicorn worker on the host read while one writes, and each write is a
single short transaction, so claims are atomic across processes. ``synchronous=normal``
(the default) survives a killed process: a committed transaction is in the WAL file
before the 200 goes out. ``synchronous=full`` also survives power loss, at the cost of an
fsync per write.

Every table is one B-tree (no secondary index): each index would be one more page written
on every webhook. Expired rows are therefore swept a batch of primary keys at a time, and
WAL checkpoints are taken, by :meth:`SQLiteStore.maintain` on the housekeeping thread (or
``webhook-kit maintenance``), never inside a request. A connection that fails is dropped
and reopened by the next operation, so a file made read-only and then restored serves again
at once; ``timeout`` bounds the wait for another connection's write lock. A forked child
(a gunicorn worker of a ``--preload`` master) abandons the connections it inherited and opens
its own.

Writers take turns through :class:`WriterLock` (``flock`` on ``<file>-writer``) before they
ask SQLite: its busy handler sleeps 1 ms and then longer whatever the holder needs, so
several workers writing at once convoy; a waiting writer here retries within tens of
microseconds.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from contextlib import suppress
from operator import itemgetter
from typing import Any

from ..errors import ConfigurationError
from ..jobs import Job, JobState, job_from_row
from ..process import process
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
    DEFAULT_TIMEOUT,
    RECORD_COLUMNS,
    Abandoned,
    Applied,
    Claim,
    ConversationWrite,
    OptOut,
    Outcome,
    StoreErrors,
    lost_claim,
    names_address,
    new_owner,
    query_equalities,
    record_from_row,
)
from .rules import (
    HISTORY_ORDER_SQL,
    LAPSED_SQL,
    NAMES,
    claimable_sql,
    entry_row,
    facts_row,
    ledger_horizon,
    merge_sql,
)
from .sql import (
    SQLITE_TYPES,
    Dialect,
    Statements,
    apply_event_writes,
    conversation_writes,
    event_params,
    job_params,
    migrations,
    opt_out_params,
)

#: The schema's steps (:data:`.sql.MIGRATIONS`) in SQLite's words, without indexes.
MIGRATIONS = migrations("", SQLITE_TYPES, indexes=False)

# A new key, or one whose claim lapsed (a crashed worker's lease, a finished key past its
# retention, or the unfinished claim of an owner known dead: ?6), is taken in one atomic
# statement; rowcount (or the row it returns) tells who won.
_CLAIM = f"""
INSERT INTO wk_claims (key, owner, done, answer, expires) VALUES (?1, ?2, ?3, NULL, ?4)
ON CONFLICT (key) DO UPDATE SET owner = ?2, done = ?3, answer = NULL, expires = ?4
WHERE {
    claimable_sql(
        ends="wk_claims.expires",
        done="wk_claims.done",
        owner="wk_claims.owner",
        now="?5",
        dead="?6",
    )
}
"""
_COLUMNS = ", ".join(NAMES)
_COLUMNS_AFTER_KEY = ", ".join(NAMES[1:])
_MARKS = ", ".join(f"?{n}" for n in range(1, len(NAMES) + 1))
# A row of the ledger merged into the stored one by the declared rules (see .rules); the
# record's status after the merge comes back.
_UPSERT = f"""
INSERT INTO wk_messages AS m ({_COLUMNS}) VALUES ({_MARKS})
ON CONFLICT (sid) DO UPDATE SET
    {merge_sql()}
RETURNING status
"""
# The record kept under a send's correlation id (?2) merged into its SID's (?1), the SID's
# descriptive values winning, and dropped.
_ABSORB = f"""
INSERT INTO wk_messages AS m ({_COLUMNS}) SELECT ?1, {_COLUMNS_AFTER_KEY} FROM wk_messages
WHERE sid = ?2
ON CONFLICT (sid) DO UPDATE SET
    {merge_sql(given_wins=False)}
"""

_IN_RECORD_ORDER = itemgetter(*map(NAMES.index, RECORD_COLUMNS))
_SQL = Statements(Dialect())
_EXPIRED = LAPSED_SQL.format(ends="expires", now="?")
_OUTLIVED = LAPSED_SQL.format(ends="updated", now="?")
_PURGE_EVERY = 10.0
_PURGE_BATCH = 5000
# Checkpoints run on the housekeeping thread, on each of its rounds; the automatic one
# (inside a commit, so inside a request) is only a safety net for a store used without it.
# At 2,000 webhooks/s the WAL grows by ~12,000 pages a second: with checkpoints every 2 s
# and the net at 8,000 pages, commits ran them and the p99 was 8-13x the p50; now ~2x.
_CHECKPOINT_EVERY = 0.5
_CHECKPOINT_PAGES = 32000
_PAGE_SIZE = 2048

log = logging.getLogger(__name__)

#: Every SQLite store of this process, for the reset that runs in a forked child.
_stores: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()
#: Connections a forked child inherited: referenced until it exits so that they are never
#: closed there (SQLite forbids using a connection across a fork; closing one could touch
#: the parent's locks and WAL).
_inherited: list[sqlite3.Connection] = []


def _forked() -> None:
    """In a forked child: every store drops its parent's connections and opens its own."""
    for store in list(_stores):
        store._abandon_connections()


process.at_fork(_forked)


class WriterLock:
    """One writer at a time among this host's processes and threads, checked every few tens
    of microseconds.

    SQLite's own busy handler sleeps 1 ms, then 2, 5, 10... whenever the write lock is taken,
    however briefly the holder needs it (~0.1 ms): several workers writing at once convoy
    behind those sleeps. Here a writer that finds the turn taken retries after 20 µs, then
    twice as long each time up to 1 ms, and gives up after ``timeout`` like SQLite would
    (``database is locked``: a 503). Each thread of each process holds its own descriptor
    (``flock`` excludes open files, not processes), opened after a fork like its connection;
    a killed holder's lock goes with it. Writers outside webhook_kit (the sqlite3 shell) are
    still met by SQLite's busy timeout. Without a writable lock file, writers fall back on
    that timeout alone.
    """

    __slots__ = ("_fd", "_timeout")

    def __init__(self, path: str, timeout: float) -> None:
        self._timeout = timeout
        try:
            self._fd: int | None = os.open(path + "-writer", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            log.warning("%s-writer: %s; SQLite's busy timeout alone orders writers", path, error)
            self._fd = None

    def __enter__(self) -> None:
        fd = self._fd
        if fd is None or _took(fd):
            return
        deadline = time.monotonic() + self._timeout
        pause = _FIRST_PAUSE
        while True:
            time.sleep(pause)
            if _took(fd):
                return
            if time.monotonic() >= deadline:
                raise sqlite3.OperationalError(
                    f"database is locked: another writer kept its turn over {self._timeout:g} s"
                )
            pause = min(pause * 2, _LONGEST_PAUSE)

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_FIRST_PAUSE, _LONGEST_PAUSE = 0.00002, 0.001


def _took(fd: int) -> bool:
    """Take the writer's turn if it is free."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class _Turn:
    """``with`` a connection: in the writer's turn (``writer``), in a transaction
    (``begin``), or both. A class, not a generator: it wraps every store call."""

    __slots__ = ("_begin", "_db", "_writer")

    def __init__(self, db: sqlite3.Connection, writer: WriterLock | None, begin: str) -> None:
        self._db, self._writer, self._begin = db, writer, begin

    def __enter__(self) -> sqlite3.Connection:
        writer = self._writer
        if writer is not None:
            writer.__enter__()
        if self._begin:
            try:
                self._db.execute(self._begin)
            except BaseException:
                if writer is not None:
                    writer.__exit__()
                raise
        return self._db

    def __exit__(self, kind: type[BaseException] | None, *exc_info: object) -> None:
        try:
            if self._begin:  # a read snapshot ends the same either way
                ends = "COMMIT" if kind is None and self._writer is not None else "ROLLBACK"
                self._db.execute(ends)
        finally:
            if self._writer is not None:
                self._writer.__exit__()


class SQLiteStore:
    """Safe for many threads and worker processes on one host."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "normal",
        retention: float = DEFAULT_RETENTION,
        ledger_retention: float = DEFAULT_LEDGER_RETENTION,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if synchronous.lower() not in {"normal", "full"}:
            raise ConfigurationError(
                f"sqlite synchronous={synchronous!r} is not supported: use normal or full"
            )
        self.path = path
        self._synchronous = synchronous.upper()
        self._retention = retention
        self._ledger_retention = ledger_retention
        self._timeout = timeout
        self._clock = clock
        self._local = threading.local()
        # Each thread's connection and writer lock, also held here so that a fork can abandon
        # them all (a forked child drops its parent's other threads and their thread-locals).
        self._connections: dict[threading.Thread, sqlite3.Connection] = {}
        self._writers: dict[threading.Thread, WriterLock] = {}
        self._connections_lock = threading.Lock()
        _stores.add(self)
        self._next_purge = 0.0
        self._next_checkpoint = 0.0
        # Where each table's next sweep starts.
        self._sweeps = {"claims": "", "messages": "", "conversations": ""}
        self._abandoned = Abandoned()
        self._guard = StoreErrors(sqlite3.Error, f"SQLite store {path!r}", self.close)
        with self._guard:
            self._connection()  # fail at start-up, not on the first webhook

    def claim(
        self,
        key: str,
        lease: float,
        *,
        replace: str = "",
        message: MessageFacts | None = None,
        senders: Sequence[str] = (),
    ) -> Claim:
        now = self._clock()
        owner = new_owner()
        claim_row = (key, owner, 0, now + lease, now, replace)
        with self._abandoned.guarding(key, owner), self._guard:
            if message is None:
                with self._write() as db:
                    taken = db.execute(_CLAIM, claim_row).rowcount == 1
                return Claim(Outcome.CLAIMED, owner) if taken else _lost(db, key)
            facts = facts_row(message)  # built before the write lock is taken
            screen = (*claim_row, message.from_ or "", *senders)
            with self._transaction() as db:
                won = db.execute(_screened_claim(len(senders)), screen).fetchall()
                if not won:
                    return _lost(db, key)
                db.execute(_UPSERT, facts).fetchone()
            return Claim(Outcome.CLAIMED, owner, opted_out=bool(won[0][0]))

    def complete(
        self,
        key: str,
        owner: str,
        answer: bytes,
        *,
        conversation: ConversationWrite | None = None,
        jobs: Sequence[Job] = (),
    ) -> bool:
        now = self._clock()
        values = {
            "answer": answer,
            "expires": now + self._retention,
            "key": key,
            "owner": owner,
            "now": now,
        }
        with self._guard:
            if conversation is None and not jobs:  # one statement: no transaction needed
                with self._write() as db:
                    return bool(db.execute(_SQL.complete, values).rowcount)
            with self._transaction() as db:
                if db.execute(_SQL.complete, values).rowcount != 1:
                    return False  # taken over: its new owner writes the conversation and jobs
                if jobs:
                    db.executemany(_SQL.insert_job, [job_params(job) for job in jobs])
                if conversation is not None:
                    _save_conversation(db, conversation, now)
        return True

    def release(self, key: str, owner: str) -> None:
        with self._guard, self._write() as db:
            db.execute(_SQL.release, {"key": key, "owner": owner})

    def record_status(
        self, entry: StatusEntry, lease: float | None = None, replace: str = ""
    ) -> Applied:
        """Without ``lease`` no claim row is written: the event's own key in ``wk_events``
        says whether it was recorded before, so a duplicate is lost (DONE) without one.
        """
        if lease is None:
            with self._guard, self._transaction() as db:
                if not self._record(db, entry):
                    return Applied(Claim(Outcome.DONE), False, None)
                row = self._apply(db, entry)
            return Applied(Claim(Outcome.DONE), True, _status(row))
        now = self._clock()
        owner = new_owner()
        with self._abandoned.guarding(entry.key, owner), self._guard, self._transaction() as db:
            claim_row = (entry.key, owner, 0, now + lease, now, replace)
            if db.execute(_CLAIM, claim_row).rowcount != 1:
                return Applied(_lost(db, entry.key), False, None)
            recorded = self._record(db, entry)
            if recorded:
                row = self._apply(db, entry)
            else:
                sid = (entry.message_sid,)
                row = db.execute("SELECT status FROM wk_messages WHERE sid = ?", sid).fetchone()
        return Applied(Claim(Outcome.CLAIMED, owner), recorded, _status(row))

    def apply_events(self, writes: Sequence[EventWrite]) -> list[EventApplied]:
        """One transaction: a failure rolls the whole batch back."""
        now = self._clock()
        with self._guard, self._transaction() as db:
            return apply_event_writes(
                lambda sql, params: db.execute(sql, params).rowcount,
                _SQL,
                writes,
                now,
                self._retention,
            )

    @staticmethod
    def _record(db: sqlite3.Connection, entry: StatusEntry) -> bool:
        """Add the callback to the history and merge the send's pending record into the
        message's; False if the callback is there already."""
        recorded = db.execute(_SQL.record_event, event_params(entry)).rowcount == 1
        if entry.correlation:
            _absorb(db, entry.message_sid, entry.correlation)
        return recorded

    @staticmethod
    def _apply(db: sqlite3.Connection, entry: StatusEntry) -> tuple[str | None] | None:
        """Merge the callback into the message's record; returns its status row."""
        row: tuple[str | None] | None = db.execute(_UPSERT, entry_row(entry)).fetchone()
        return row

    def get_message(self, message_sid: str) -> MessageRecord | None:
        with self._guard, self._transaction(write=False) as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM wk_messages WHERE sid = ?", (message_sid,)
            ).fetchone()
            if row is None:
                return None
            events = db.execute(
                "SELECT status, received, error_code, event_type, key, form FROM wk_events"
                f" WHERE sid = ? ORDER BY {HISTORY_ORDER_SQL}",
                (message_sid,),
            ).fetchall()
        history = tuple(
            LedgerEvent(MessageStatus(s), timestamp(r), code, kind, key, form)
            for s, r, code, kind, key, form in events
        )
        return _record(row, history)

    def save_message(self, facts: MessageFacts, alias: str | None = None) -> None:
        with self._guard:
            if not alias:  # one statement: atomic without an explicit transaction
                row = facts_row(facts)
                with self._write() as db:
                    db.execute(_UPSERT, row).fetchone()
                return
            with self._transaction() as db:
                _absorb(db, facts.message_sid, alias)
                db.execute(_UPSERT, facts_row(facts)).fetchone()

    def find_messages(self, query: Query) -> list[MessageRecord]:
        equalities = query_equalities(query)
        where = [f"{column} = ?" for column, _ in equalities]
        args: list[object] = [value for _, value in equalities]
        if query.statuses:
            where.append(f"status IN ({', '.join('?' * len(query.statuses))})")
            args.extend(query.statuses)
        if query.since is not None:
            where.append("coalesce(created, 0) >= ?")
            args.append(query.since)
        if query.until is not None:
            where.append("coalesce(created, 0) < ?")
            args.append(query.until)
        if query.open_only:
            where.append("final_at IS NULL")
        if query.after is not None:
            where.append("(coalesce(created, 0) < ? OR (coalesce(created, 0) = ? AND sid < ?))")
            args.extend((query.after[0], query.after[0], query.after[1]))
        sql = f"SELECT {_COLUMNS} FROM wk_messages"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY coalesce(created, 0) DESC, sid DESC LIMIT ?"
        with self._guard:
            rows = self._connection().execute(sql, (*args, query.limit)).fetchall()
        return [_record(row, ()) for row in rows]

    def get_conversation(self, id: str) -> bytes | None:
        with self._guard:
            row = (
                self._connection()
                .execute(_SQL.get_conversation, {"id": id, "now": self._clock()})
                .fetchone()
            )
        return bytes(row[0]) if row is not None else None

    def due_conversations(self, now: float, limit: int) -> list[str]:
        """A scan of the conversations (no index on ``due``): run from maintenance only."""
        with self._guard:
            rows = self._connection().execute(
                _SQL.due_conversations, {"due": now, "now": self._clock(), "limit": limit}
            )
            return [row[0] for row in rows]

    def set_opt_out(self, record: OptOut) -> None:
        with self._guard, self._write() as db:
            db.execute(_SQL.set_opt_out, opt_out_params(record))

    def get_opt_out(self, sender: str, address: str) -> OptOut | None:
        with self._guard:
            row = (
                self._connection()
                .execute(_SQL.get_opt_out, {"sender": sender, "address": address})
                .fetchone()
            )
        return _opt_out(row) if row is not None else None

    def opted_out(self, address: str, senders: Sequence[str]) -> bool:
        if not senders:
            return False
        with self._guard:
            row = (
                self._connection()
                .execute(f"SELECT {_opt_out_screen(1, len(senders))}", (address, *senders))
                .fetchone()
            )
        return bool(row[0])

    def list_opt_outs(self, sender: str | None = None) -> list[OptOut]:
        with self._guard:
            if sender is None:
                rows = self._connection().execute(_SQL.list_opt_outs)
            else:
                rows = self._connection().execute(_SQL.list_opt_outs_of, {"sender": sender})
            return [_opt_out(row) for row in rows]

    def purge_address(self, address: str) -> int:
        """A scan of the ledger (no index by address): for rare data-subject requests."""
        prefix = address + "|"
        with self._guard, self._transaction() as db:
            purge = {"length": len(prefix), "prefix": prefix, "now": self._clock()}
            # Those that had not expired: the others were gone already.
            removed = sum(bool(alive) for (alive,) in db.execute(_SQL.purge_conversations, purge))
            sids = {
                sid
                for sid, form in db.execute("SELECT sid, form FROM wk_events")
                if names_address(form, address)
            }
            sids.update(
                sid
                for (sid,) in db.execute(
                    "SELECT sid FROM wk_messages WHERE from_addr = ?1 OR to_addr = ?1", (address,)
                )
            )
            for sid in sids:
                db.execute("DELETE FROM wk_events WHERE sid = ?", (sid,))
                db.execute("DELETE FROM wk_messages WHERE sid = ?", (sid,))
        return removed + len(sids)

    # -- jobs (see webhook_kit.jobs.JobStore) ---------------------------------------------

    def take_job(self, lease: float, key: str | None = None) -> Job | None:
        now = self._clock()
        with self._guard:
            db = self._connection()
            if key is None:  # a read first: an idle poll never takes the write lock
                row = db.execute(_SQL.next_job, {"key": None, "now": now}).fetchone()
                if row is None:
                    return None
                key = str(row[0])
            taking = {"key": key, "now": now, "owner": new_owner(), "expires": now + lease}
            with self._write():
                taken = db.execute(_SQL.take_job, taking).fetchone()
        return job_from_row(taken) if taken is not None else None

    def get_job(self, key: str) -> Job | None:
        with self._guard:
            row = self._connection().execute(_SQL.get_job, {"key": key}).fetchone()
        return job_from_row(row) if row is not None else None

    def renew_job(self, key: str, owner: str, lease: float) -> bool:
        renewal = {"expires": self._clock() + lease, "key": key, "owner": owner}
        with self._guard, self._write() as db:
            return bool(db.execute(_SQL.renew_job, renewal).rowcount)

    def finish_job(
        self, key: str, owner: str, state: JobState | None, run_at: float = 0.0, error: str = ""
    ) -> bool:
        mine = {"key": key, "owner": owner}
        with self._guard, self._write() as db:
            if state is None:
                return bool(db.execute(_SQL.delete_job, mine).rowcount)
            settled = mine | {"state": state.value, "run_at": run_at, "error": error}
            return bool(db.execute(_SQL.settle_job, settled).rowcount)

    def list_jobs(self, state: JobState | None = None, limit: int = 100) -> list[Job]:
        listed = {"state": state.value if state else None, "limit": limit}
        with self._guard:
            rows = self._connection().execute(_SQL.list_jobs, listed)
            return [job_from_row(row) for row in rows]

    def retry_job(self, key: str) -> bool:
        retried = {"now": self._clock(), "key": key}
        with self._guard, self._write() as db:
            return bool(db.execute(_SQL.retry_job, retried).rowcount)

    def purge_jobs(self, state: JobState = JobState.DEAD) -> int:
        with self._guard, self._write() as db:
            return int(db.execute(_SQL.purge_jobs, {"state": state.value}).rowcount)

    def maintain(self, *, full: bool = False) -> None:
        self._abandoned.release(self.release)
        now = self._clock()
        with self._guard:
            if full or now >= self._next_purge:
                self._next_purge = now + _PURGE_EVERY
                self._purge(now)
                while full and any(self._sweeps.values()):
                    self._purge(now)
            if full or now >= self._next_checkpoint:
                self._next_checkpoint = now + _CHECKPOINT_EVERY
                mode = "TRUNCATE" if full else "PASSIVE"
                self._connection().execute(f"PRAGMA wal_checkpoint({mode})")

    def close(self) -> None:
        """Close this thread's connection (the next operation opens a new one)."""
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            with self._connections_lock:
                self._connections.pop(threading.current_thread(), None)
            with suppress(sqlite3.Error):  # a broken connection is dropped all the same
                connection.close()

    def _abandon_connections(self) -> None:
        """In a forked child: forget the parent's connections without closing them, and close
        its writer-lock descriptors (that leaves the parent's lock alone: a ``flock`` belongs
        to the open file, which the parent still has)."""
        _inherited.extend(self._connections.values())
        for writer in self._writers.values():
            writer.close()
        self._connections, self._writers = {}, {}
        self._connections_lock = threading.Lock()  # the parent's may have been held mid-fork
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        local = self._local
        connection: sqlite3.Connection | None = getattr(local, "connection", None)
        if connection is not None:  # never one of a parent process: see _abandon_connections
            return connection
        if getattr(local, "writer", None) is None:
            local.writer = WriterLock(self.path, self._timeout)
        connection = sqlite3.connect(
            self.path, timeout=self._timeout, isolation_level=None, check_same_thread=True
        )
        # Smaller pages: each commit appends fewer bytes to the WAL. Only a new file takes it.
        connection.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute(f"PRAGMA synchronous = {self._synchronous}")
        connection.execute(f"PRAGMA wal_autocheckpoint = {_CHECKPOINT_PAGES}")
        _migrate(connection)
        with self._connections_lock:
            # Threads that ended took their thread-local with them: let their connections go.
            for thread in [thread for thread in self._writers if not thread.is_alive()]:
                self._writers.pop(thread).close()
                self._connections.pop(thread, None)
            self._connections[threading.current_thread()] = connection
            self._writers[threading.current_thread()] = local.writer
        local.connection = connection
        return connection

    def _write(self) -> _Turn:
        """The connection, for one statement that writes, in this writer's turn."""
        db = self._connection()
        return _Turn(db, self._local.writer, "")

    def _transaction(self, *, write: bool = True) -> _Turn:
        """A transaction; ``write=False``: a read snapshot that never takes the write lock."""
        db = self._connection()
        if write:
            return _Turn(db, self._local.writer, "BEGIN IMMEDIATE")
        return _Turn(db, None, "BEGIN")

    def _purge(self, now: float) -> None:
        """Sweep the next batch of claims and of messages for rows past their retention.

        The batch is read without the write lock; the deletes check expiry again, so a row
        renewed in between is kept, and webhooks wait only for the deletes.
        """
        db = self._connection()
        claims = self._sweep(db, "claims", "key", _EXPIRED, now)
        horizon = ledger_horizon(now, self._ledger_retention)
        messages = self._sweep(db, "messages", "sid", _OUTLIVED, horizon)
        conversations = self._sweep(db, "conversations", "id", _EXPIRED, now)
        if not claims and not messages and not conversations:
            return
        with self._transaction() as db:
            db.executemany(
                f"DELETE FROM wk_claims WHERE key = ? AND {_EXPIRED}",
                [(key, now) for key in claims],
            )
            db.executemany(
                f"DELETE FROM wk_messages WHERE sid = ? AND {_OUTLIVED}",
                [(sid, horizon) for sid in messages],
            )
            db.executemany(
                "DELETE FROM wk_events WHERE sid = ?1"
                " AND NOT EXISTS (SELECT 1 FROM wk_messages WHERE sid = ?1)",
                [(sid,) for sid in messages],
            )
            db.executemany(
                f"DELETE FROM wk_conversations WHERE id = ? AND {_EXPIRED}",
                [(id, now) for id in conversations],
            )

    def _sweep(
        self, db: sqlite3.Connection, table: str, key: str, expired: str, limit: float
    ) -> list[str]:
        """The expired keys among the next batch of ``table``, in key order, wrapping around."""
        rows = db.execute(
            f"SELECT {key}, {expired} FROM wk_{table} WHERE {key} > ? ORDER BY {key} LIMIT ?",
            (limit, self._sweeps[table], _PURGE_BATCH),
        ).fetchall()
        self._sweeps[table] = rows[-1][0] if len(rows) == _PURGE_BATCH else ""
        return [row[0] for row in rows if row[1]]


def _opt_out_screen(first: int, senders: int) -> str:
    """Whether the address in parameter ``first`` opted out of any of the ``senders`` after it."""
    marks = ", ".join(f"?{first + 1 + n}" for n in range(senders))
    return (
        f"EXISTS (SELECT 1 FROM wk_opt_outs WHERE address = ?{first} AND opted_out"
        f" AND sender IN ({marks}))"
    )


@functools.cache
def _screened_claim(senders: int) -> str:
    """:data:`_CLAIM` answering, when won, the reply's opt-out screen (false without
    senders: ``IN ()`` is empty): no statement more."""
    return f"{_CLAIM} RETURNING {_opt_out_screen(7, senders)}"


def _status(row: tuple[str | None] | None) -> MessageStatus | None:
    return MessageStatus(row[0]) if row and row[0] else None


def _opt_out(row: tuple[str, str, int, float, str]) -> OptOut:
    sender, address, opted_out, updated, source = row
    return OptOut(sender, address, bool(opted_out), updated, source)


def _lost(db: sqlite3.Connection, key: str) -> Claim:
    """Why a claim on ``key`` was not won: a finished claim (with its answer) or a live one."""
    row = db.execute(_SQL.lost, {"key": key}).fetchone()
    return lost_claim(row)


def _migrate(db: sqlite3.Connection) -> None:
    """Bring the file up to :data:`MIGRATIONS`: one read of ``user_version`` when it is."""
    if db.execute("PRAGMA user_version").fetchone()[0] >= len(MIGRATIONS):
        return
    db.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then find it done
    try:
        done = db.execute("PRAGMA user_version").fetchone()[0]
        for version in range(done, len(MIGRATIONS)):
            for statement in MIGRATIONS[version]:
                try:
                    db.execute(statement)
                except sqlite3.OperationalError as error:
                    # A file from before versioning (0) may have its later columns already.
                    if done or "duplicate column" not in str(error):
                        raise
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _absorb(db: sqlite3.Connection, sid: str, alias: str) -> None:
    """Merge the record kept under ``alias`` (a send before its SID was known) into ``sid``."""
    if alias != sid and db.execute(_ABSORB, (sid, alias)).rowcount:
        db.execute("DELETE FROM wk_messages WHERE sid = ?", (alias,))


def _record(row: tuple[Any, ...], history: tuple[LedgerEvent, ...]) -> MessageRecord:
    return record_from_row(_IN_RECORD_ORDER(row), history)


def _save_conversation(db: sqlite3.Connection, conversation: ConversationWrite, now: float) -> None:
    """Save (or delete) a conversation and release its lock, inside the caller's transaction."""
    for sql, params in conversation_writes(_SQL, conversation, now):
        db.execute(sql, params)
