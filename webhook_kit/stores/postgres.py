"""A store in PostgreSQL, so that many hosts share one durable ledger.

Each operation is one statement on a pooled connection in autocommit mode: a claim is an
``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` that only takes a new or lapsed key, and
claiming and recording a status callback is one statement of data-modifying CTEs, so it is
atomic and durable (committed) before the 200 goes out.

The tables live in their own schema (``?schema=``, default ``webhook_kit``), so the ledger can
sit in the same database as the application's data. The schema is created on first use and
versioned: :data:`MIGRATIONS` lists every step, ``wk_schema_version`` records which ran, and a
process that finds steps missing runs them under an advisory lock.

A database that is down or hung makes requests fail fast: the store's ``timeout`` bounds
connecting (``connect_timeout``), the wait for a pooled connection (``pool_timeout``) and every
statement (``statement_timeout``), each answered as :class:`~webhook_kit.errors.StoreError`
(503). The pool drops broken connections and reconnects in the background, so a database that
comes back is used again without restarting a worker. Expired rows are deleted, and lost
claims released, by :meth:`PostgresStore.maintain` on the housekeeping thread or in
``webhook-kit maintenance``, never inside a request.

The ledger follows the rules every store runs (:mod:`.rules`, whose merge is this store's
``ON CONFLICT`` clause); a send's pending record (``WK…``) is merged into its SID's record in
the same transaction that learns the SID.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from operator import itemgetter
from typing import Any, Final, Self
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ..errors import ConfigurationError, StoreError
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
    masked_url,
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
    POSTGRES_TYPES,
    Dialect,
    Statements,
    apply_event_writes,
    conversation_writes,
    job_params,
    migrations,
    opt_out_params,
)

try:
    import psycopg
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as error:  # pragma: no cover - exercised without the extra installed
    raise ConfigurationError(
        "the PostgreSQL store needs psycopg 3: pip install 'webhook_kit[postgres]'"
    ) from error

#: The schema's steps (:data:`.sql.MIGRATIONS`) in PostgreSQL's words, each one text of
#: statements where ``{schema}`` is the quoted schema name.
MIGRATIONS: Final[tuple[str, ...]] = tuple(
    ";\n".join(step) for step in migrations("{schema}.", POSTGRES_TYPES, indexes=True)
)

log = logging.getLogger("webhook_kit")
_SCHEMA_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_OUR_OPTIONS: Final = ("schema", "pool_size", "pool_timeout")
DEFAULT_SCHEMA: Final = "webhook_kit"
DEFAULT_POOL_SIZE: Final = 4
# libpq (and psycopg) wait at least 2 s to connect, whatever connect_timeout asks for.
_MIN_CONNECT_TIMEOUT: Final = 2
# How long the pool retries a lost connection in the background (1 s, then 1 s) before it
# gives up and lets the next request start a new attempt at once: a database that is back is
# used again within about a second.
_RECONNECT_TIMEOUT: Final = 2.0
_PURGE_EVERY: Final = 10.0
_PURGE_BATCH: Final = 5000
# A server that stopped answering (SIGSTOP, a hung host) cancels nothing and its kernel still
# acknowledges every packet: no timeout of libpq's fires. A connection busy for this many
# store timeouts has its socket cut by the store's watchdog (statement_timeout, the server's
# own answer, comes at one).
_STUCK_AFTER: Final = 2.0

# A new key, or one whose claim lapsed (a dead worker's lease, or a finished key past its
# retention), or the unfinished claim of an owner known dead (``replace``), is taken in one
# statement; a returned row says this call won it. ``{commit}`` may make the statement's own
# commit asynchronous (see PostgresStore.claim).
_CLAIM = """
INSERT INTO {schema}.wk_claims AS c (key, owner, done, answer, expires)
SELECT %(key)s, %(owner)s, %(done)s, NULL, %(expires)s {commit}
ON CONFLICT (key) DO UPDATE
SET owner = excluded.owner, done = excluded.done, answer = NULL, expires = excluded.expires
WHERE {claimable}
RETURNING true
""".replace(
    "{claimable}",
    claimable_sql(
        ends="c.expires", done="c.done", owner="c.owner", now="%(now)s", dead="%(replace)s"
    ),
)
_BINARY = ' COLLATE "C"'
# Merging a new row into the stored one (``excluded``: the new values) by the declared
# rules (see .rules); a send's absorbed pending record keeps the SID's descriptive values.
_MERGE = "\nON CONFLICT (sid) DO UPDATE SET\n    " + merge_sql(binary=_BINARY) + "\n"
_MERGE_KEPT = (
    "\nON CONFLICT (sid) DO UPDATE SET\n    " + merge_sql(given_wins=False, binary=_BINARY) + "\n"
)
_COLUMNS = NAMES
_IN_RECORD_ORDER = itemgetter(*map(_COLUMNS.index, RECORD_COLUMNS))
# MessageFacts saved (``{where}``: only if a claim in the same statement was won).
_SAVE = (
    "INSERT INTO {schema}.wk_messages AS m ("
    + ", ".join(_COLUMNS)
    + ") SELECT "
    + ", ".join(f"%({name})s" for name in _COLUMNS)
    + " {where}"
    + _MERGE
)
# Also answers whether the message's sender opted out of any of ``senders`` (an empty array
# matches nothing), so an inbound claim is one round trip.
_CLAIM_SAVE = """
WITH claimed AS ({claim}), saved AS ({save})
SELECT EXISTS (SELECT FROM claimed), EXISTS (
    SELECT FROM {schema}.wk_opt_outs
    WHERE sender = ANY(%(senders)s) AND address = %(from_addr)s AND opted_out
)
"""
# The record kept under a send's correlation id merged into its SID's, and dropped; returns
# the merged status (no row: there was nothing to merge).
_ABSORB = (
    "WITH alias AS (DELETE FROM {schema}.wk_messages WHERE sid = %(alias)s RETURNING *) "
    "INSERT INTO {schema}.wk_messages AS m ("
    + ", ".join(_COLUMNS)
    + ") SELECT %(sid)s, "
    + ", ".join(_COLUMNS[1:])
    + " FROM alias"
    + _MERGE_KEPT
    + "RETURNING m.status"
)
# The claim (``{claim}``: a claim statement, or ``SELECT true`` when none is written), the
# event and the monotonic update of the message in one statement.
_RECORD = (
    """
WITH claimed AS ({claim}),
recorded AS (
    INSERT INTO {schema}.wk_events (sid, key, status, error_code, event_type, received, form)
    SELECT %(sid)s, %(key)s, %(status)s, %(error_code)s, %(event_type)s, %(received)s, %(form)s
    WHERE EXISTS (SELECT FROM claimed)
    ON CONFLICT DO NOTHING
    RETURNING true
),
applied AS (
    INSERT INTO {schema}.wk_messages AS m ("""
    + ", ".join(_COLUMNS)
    + ") SELECT "
    + ", ".join(f"%(row_{name})s" for name in _COLUMNS)
    + """
    WHERE EXISTS (SELECT FROM recorded)"""
    + _MERGE
    + """
    RETURNING status
)
SELECT
    EXISTS (SELECT FROM claimed),
    EXISTS (SELECT FROM recorded),
    coalesce(
        (SELECT status FROM applied),
        (SELECT status FROM {schema}.wk_messages WHERE sid = %(sid)s)
    )
"""
)
_RECORD_COLUMNS = ", ".join(f"m.{name}" for name in _COLUMNS)
# set_config(..., true) lasts until the end of the statement's own transaction, its commit.
_ASYNC_COMMIT = "WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL"
_GET = (
    "SELECT "
    + _RECORD_COLUMNS
    + """, e.status, e.received, e.error_code, e.event_type, e.key, e.form
FROM {schema}.wk_messages AS m LEFT JOIN {schema}.wk_events AS e ON e.sid = m.sid
WHERE m.sid = %s
ORDER BY {order}
"""
)
_FIND = "SELECT " + _RECORD_COLUMNS + " FROM {schema}.wk_messages AS m"
_CREATED = "coalesce(m.created, 0)"
# One batch of expired rows per statement, which returns how many went; SKIP LOCKED lets
# every worker's housekeeping run at once without waiting on each other's rows (or a request's).
_PURGE_EXPIRED = """
WITH expired AS (
    DELETE FROM {schema}.{table} WHERE {key} IN (
        SELECT {key} FROM {schema}.{table} WHERE {expired} LIMIT %s FOR UPDATE SKIP LOCKED
    )
    RETURNING true
)
SELECT count(*) FROM expired
"""
_PURGE_MESSAGES = """
WITH expired AS (
    DELETE FROM {schema}.wk_messages WHERE sid IN (
        SELECT sid FROM {schema}.wk_messages WHERE {outlived} LIMIT %s FOR UPDATE SKIP LOCKED
    )
    RETURNING sid
),
events AS (DELETE FROM {schema}.wk_events WHERE sid IN (SELECT sid FROM expired))
SELECT count(*) FROM expired
"""
_COMPACT = (
    "VACUUM (ANALYZE) {schema}.wk_claims, {schema}.wk_messages, {schema}.wk_events,"
    " {schema}.wk_conversations, {schema}.wk_jobs"
)


#: Why the last attempt to connect with each conninfo failed: the pool connects in the
#: background and raises only "couldn't get a connection", so a log line names it from here.
_connect_errors: dict[str, str] = {}


class _Connection(psycopg.Connection[Any]):
    """A pooled connection that runs the webhook path's statements on one kept cursor."""

    _kept: psycopg.Cursor[Any] | None = None

    @classmethod
    def connect(cls, *args: Any, **kwargs: Any) -> Self:
        """Connect, noting why it failed (see :func:`_unreachable`)."""
        conninfo = str(args[0] if args else kwargs.get("conninfo", ""))
        try:
            connection = super().connect(*args, **kwargs)
        except psycopg.Error as error:
            _connect_errors[conninfo] = " ".join(str(error).split())
            raise
        _connect_errors.pop(conninfo, None)
        return connection

    def run(self, query: str, params: Sequence[Any] | Mapping[str, Any]) -> psycopg.Cursor[Any]:
        """:meth:`execute` on the kept cursor: a new cursor per statement costs ~15 µs.

        The cursor returned is valid until the next :meth:`run` on this connection.
        """
        if self._kept is None:
            self._kept = self.cursor()
        return self._kept.execute(query, params)


class PostgresStore:
    """Safe for many threads, worker processes and hosts; each process pools its connections."""

    def __init__(
        self,
        url: str,
        *,
        retention: float = DEFAULT_RETENTION,
        ledger_retention: float = DEFAULT_LEDGER_RETENTION,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        conninfo, options = _split_options(url, timeout)
        schema = options.get("schema", DEFAULT_SCHEMA)
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigurationError(
                f"PostgreSQL schema {schema!r} is not a plain identifier: use letters, digits "
                "and '_' (at most 63), not starting with a digit"
            )
        self.schema = schema
        self._conninfo = conninfo
        self._pool_size = int(_number(options, "pool_size", DEFAULT_POOL_SIZE))
        self._pool_timeout = _number(options, "pool_timeout", timeout)
        self._retention = retention
        self._ledger_retention = ledger_retention
        self._clock = clock
        quoted = f'"{schema}"'
        self._quoted = quoted
        self._claim_sql = _CLAIM.format(schema=quoted, commit=_ASYNC_COMMIT)
        self._save_sql = _SAVE.format(schema=quoted, where="")
        self._claim_save_sql = _CLAIM_SAVE.format(
            schema=quoted,
            claim=self._claim_sql,
            save=_SAVE.format(schema=quoted, where="WHERE EXISTS (SELECT FROM claimed)"),
        )
        self._absorb_sql = _ABSORB.format(schema=quoted)
        self._record_sql = _RECORD.format(
            claim=_CLAIM.format(schema=quoted, commit=""), schema=quoted
        )
        self._record_unclaimed_sql = _RECORD.format(claim="SELECT true", schema=quoted)
        # SKIP LOCKED lets runners on many hosts take different jobs at once.
        self._sql = Statements(
            Dialect(
                tables=f"{quoted}.",
                pyformat=True,
                lock_next=" FOR UPDATE SKIP LOCKED",
                binary=_BINARY,
            )
        )
        self._get_sql = _GET.format(schema=quoted, order=HISTORY_ORDER_SQL)
        self._find_sql = _FIND.format(schema=quoted)
        expired = LAPSED_SQL.format(ends="expires", now="%s")
        outlived = LAPSED_SQL.format(ends="updated", now="%s")
        self._purge_sql = (
            (
                _PURGE_EXPIRED.format(schema=quoted, table="wk_claims", key="key", expired=expired),
                0.0,
            ),
            (_PURGE_MESSAGES.format(schema=quoted, outlived=outlived), ledger_retention),
            (
                _PURGE_EXPIRED.format(
                    schema=quoted, table="wk_conversations", key="id", expired=expired
                ),
                0.0,
            ),
        )
        self._compact_sql = _COMPACT.format(schema=quoted)
        self._lock = threading.Lock()
        self._pool: ConnectionPool[_Connection] | None = None
        self._forks = -1  # the fork generation its pool was opened in
        #: id(connection) -> (connection, deadline) while an operation uses it.
        self._busy: dict[int, tuple[_Connection, float]] = {}
        self._stuck_after = _STUCK_AFTER * timeout
        self._migrated = False
        self._next_purge = 0.0
        self._suspect = False  # an operation failed: idle connections may be broken too
        self._abandoned = Abandoned()
        self._guard = StoreErrors(
            psycopg.Error, f"PostgreSQL store {masked_url(conninfo)!r}", self._suspect_pool
        )

    def claim(
        self,
        key: str,
        lease: float,
        *,
        replace: str = "",
        message: MessageFacts | None = None,
        senders: Sequence[str] = (),
    ) -> Claim:
        """Take ``key`` (and save ``message`` if won, and read its sender's opt-outs, in the
        same statement); its commit does not wait for the WAL to reach the disk.

        Nothing is acknowledged on a claim alone: the 200 follows :meth:`complete`, whose
        synchronous commit flushes the WAL, and so this claim, before it returns. That saves
        one of the two disk flushes an inbound message would otherwise wait for.
        """
        now = self._clock()
        owner = new_owner()
        params = {
            "key": key,
            "owner": owner,
            "done": False,
            "expires": now + lease,
            "now": now,
            "replace": replace,
        }
        opted_out = False
        with self._abandoned.guarding(key, owner), self._connection() as db:
            if message is None:
                won = db.run(self._claim_sql, params).fetchone() is not None
            else:
                params |= _fact_params(message)
                params["senders"] = list(senders)
                row = db.run(self._claim_save_sql, params).fetchone()
                assert row is not None  # a SELECT without FROM always returns its row
                won, opted_out = row
            if not won:
                return self._lost(db, key)
        return Claim(Outcome.CLAIMED, owner, opted_out=opted_out)

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
        with self._connection() as db:
            if conversation is None and not jobs:  # one statement: no transaction needed
                return db.run(self._sql.complete, values).rowcount == 1
            with db.transaction():
                if db.execute(self._sql.complete, values).rowcount != 1:
                    return False  # taken over: its new owner writes the conversation and jobs
                if jobs:
                    with db.cursor() as cursor:
                        cursor.executemany(self._sql.insert_job, [job_params(j) for j in jobs])
                if conversation is not None:
                    for sql, params in conversation_writes(self._sql, conversation, now):
                        db.execute(sql, params)
        return True

    def release(self, key: str, owner: str) -> None:
        with self._connection() as db:
            db.execute(self._sql.release, {"key": key, "owner": owner})

    def record_status(
        self, entry: StatusEntry, lease: float | None = None, replace: str = ""
    ) -> Applied:
        """Without ``lease`` no claim row is written: the event's own key in ``wk_events``
        says whether it was recorded before, so a duplicate is lost (DONE) without one.
        """
        now = self._clock()
        owner = "" if lease is None else new_owner()
        params = {
            "key": entry.key,
            "owner": owner,
            "done": False,
            "expires": now + (lease or 0.0),
            "now": now,
            "replace": replace,
            "sid": entry.message_sid,
            "status": entry.status,
            "rank": entry.rank,
            "error_code": entry.error_code,
            "event_type": entry.event_type,
            "received": entry.received_at,
            "form": entry.form,
        }
        params |= {
            f"row_{name}": value for name, value in zip(_COLUMNS, entry_row(entry), strict=True)
        }
        sql = self._record_unclaimed_sql if lease is None else self._record_sql
        alias = entry.correlation if entry.correlation != entry.message_sid else None
        with (
            self._abandoned.guarding(entry.key, owner),
            self._connection() as db,
            db.transaction() if alias else nullcontext(),
        ):
            row = db.run(sql, params).fetchone()
            assert row is not None  # a SELECT without FROM always returns its row
            won, recorded, status = row
            if not won:
                return Applied(self._lost(db, entry.key), False, None)
            if alias:
                merged = db.execute(self._absorb_sql, {"sid": entry.message_sid, "alias": alias})
                status = next(iter(merged.fetchall()), (status,))[0]
        if lease is None:
            if not recorded:
                return Applied(Claim(Outcome.DONE), False, None)
            return Applied(Claim(Outcome.DONE), True, _status(status))
        return Applied(Claim(Outcome.CLAIMED, owner), recorded, _status(status))

    def apply_events(self, writes: Sequence[EventWrite]) -> list[EventApplied]:
        """One transaction: a failure (a lost connection too) rolls the whole batch back."""
        now = self._clock()
        with self._connection() as db, db.transaction():
            return apply_event_writes(
                lambda sql, params: db.execute(sql, params).rowcount,
                self._sql,
                writes,
                now,
                self._retention,
            )

    def get_message(self, message_sid: str) -> MessageRecord | None:
        with self._connection() as db:
            rows = db.execute(self._get_sql, (message_sid,)).fetchall()
        if not rows:
            return None
        width = len(_COLUMNS)
        return _record(
            rows[0][:width],
            tuple(
                LedgerEvent(MessageStatus(s), timestamp(received), code, kind, key, form)
                for s, received, code, kind, key, form in (row[width:] for row in rows)
                if key is not None
            ),
        )

    def save_message(self, facts: MessageFacts, alias: str | None = None) -> None:
        params = _fact_params(facts)
        with self._connection() as db:
            if not alias or alias == facts.message_sid:  # one statement: atomic by itself
                db.execute(self._save_sql, params)
                return
            with db.transaction():
                db.execute(self._absorb_sql, {"sid": facts.message_sid, "alias": alias})
                db.execute(self._save_sql, params)

    def find_messages(self, query: Query) -> list[MessageRecord]:
        equalities = query_equalities(query)
        where = [f"m.{column} = %s" for column, _ in equalities]
        args: list[object] = [value for _, value in equalities]
        if query.statuses:
            where.append("m.status = ANY(%s)")
            args.append(list(query.statuses))
        if query.since is not None:
            where.append(f"{_CREATED} >= %s")
            args.append(query.since)
        if query.until is not None:
            where.append(f"{_CREATED} < %s")
            args.append(query.until)
        if query.open_only:
            where.append("m.final_at IS NULL")
        if query.after is not None:
            # The same (created, sid) order as the index and the other stores (code points).
            where.append(f'({_CREATED}, m.sid COLLATE "C") < (%s, %s)')
            args.extend(query.after)
        sql = self._find_sql
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f' ORDER BY {_CREATED} DESC, m.sid COLLATE "C" DESC LIMIT %s'
        with self._connection() as db:
            rows = db.execute(sql, (*args, query.limit)).fetchall()
        return [_record(row, ()) for row in rows]

    def get_conversation(self, id: str) -> bytes | None:
        with self._connection() as db:
            row = db.execute(
                self._sql.get_conversation, {"id": id, "now": self._clock()}
            ).fetchone()
        return bytes(row[0]) if row is not None else None

    def due_conversations(self, now: float, limit: int) -> list[str]:
        due = {"due": now, "now": self._clock(), "limit": limit}
        with self._connection() as db:
            rows = db.execute(self._sql.due_conversations, due).fetchall()
        return [row[0] for row in rows]

    def set_opt_out(self, record: OptOut) -> None:
        with self._connection() as db:
            db.execute(self._sql.set_opt_out, opt_out_params(record))

    def get_opt_out(self, sender: str, address: str) -> OptOut | None:
        with self._connection() as db:
            row = db.execute(
                self._sql.get_opt_out, {"sender": sender, "address": address}
            ).fetchone()
        return OptOut(*row) if row is not None else None

    def opted_out(self, address: str, senders: Sequence[str]) -> bool:
        if not senders:
            return False
        with self._connection() as db:
            row = db.execute(
                f"SELECT 1 FROM {self._quoted}.wk_opt_outs"
                " WHERE sender = ANY(%s) AND address = %s AND opted_out LIMIT 1",
                (list(senders), address),
            ).fetchone()
        return row is not None

    def list_opt_outs(self, sender: str | None = None) -> list[OptOut]:
        with self._connection() as db:
            if sender is None:
                cursor = db.execute(self._sql.list_opt_outs)
            else:
                cursor = db.execute(self._sql.list_opt_outs_of, {"sender": sender})
            rows = cursor.fetchall()
        return [OptOut(*row) for row in rows]

    def purge_address(self, address: str) -> int:
        """A scan of the ledger (no index by address): for rare data-subject requests.

        A ledger record goes if it was sent to or from ``address``, or a callback names it.
        """
        schema = self._quoted
        prefix = address + "|"
        with self._connection() as db, db.transaction():
            db.execute("SET LOCAL statement_timeout = 0")  # a scan of the whole ledger
            purge = {"length": len(prefix), "prefix": prefix, "now": self._clock()}
            # Those that had not expired: the others were gone already.
            removed = sum(
                bool(alive) for (alive,) in db.execute(self._sql.purge_conversations, purge)
            )
            sids = {
                sid
                for sid, form in db.execute(f"SELECT sid, form FROM {schema}.wk_events")
                if names_address(form, address)
            }
            sids.update(
                sid
                for (sid,) in db.execute(
                    f"SELECT sid FROM {schema}.wk_messages WHERE from_addr = %s OR to_addr = %s",
                    (address, address),
                )
            )
            db.execute(f"DELETE FROM {schema}.wk_events WHERE sid = ANY(%s)", (list(sids),))
            db.execute(f"DELETE FROM {schema}.wk_messages WHERE sid = ANY(%s)", (list(sids),))
        return removed + len(sids)

    # -- jobs (see webhook_kit.jobs.JobStore) ---------------------------------------------

    def take_job(self, lease: float, key: str | None = None) -> Job | None:
        now = self._clock()
        params = {"owner": new_owner(), "expires": now + lease, "key": key, "now": now}
        with self._connection() as db:
            row = db.execute(self._sql.take_job, params).fetchone()
        return job_from_row(row) if row is not None else None

    def get_job(self, key: str) -> Job | None:
        with self._connection() as db:
            row = db.execute(self._sql.get_job, {"key": key}).fetchone()
        return job_from_row(row) if row is not None else None

    def renew_job(self, key: str, owner: str, lease: float) -> bool:
        renewal = {"expires": self._clock() + lease, "key": key, "owner": owner}
        with self._connection() as db:
            return db.execute(self._sql.renew_job, renewal).rowcount == 1

    def finish_job(
        self, key: str, owner: str, state: JobState | None, run_at: float = 0.0, error: str = ""
    ) -> bool:
        mine = {"key": key, "owner": owner}
        with self._connection() as db:
            if state is None:
                return db.execute(self._sql.delete_job, mine).rowcount == 1
            settled = mine | {"state": state.value, "run_at": run_at, "error": error}
            return db.execute(self._sql.settle_job, settled).rowcount == 1

    def list_jobs(self, state: JobState | None = None, limit: int = 100) -> list[Job]:
        listed = {"state": state.value if state is not None else None, "limit": limit}
        with self._connection() as db:
            rows = db.execute(self._sql.list_jobs, listed).fetchall()
        return [job_from_row(row) for row in rows]

    def retry_job(self, key: str) -> bool:
        with self._connection() as db:
            retried = {"now": self._clock(), "key": key}
            return db.execute(self._sql.retry_job, retried).rowcount == 1

    def purge_jobs(self, state: JobState = JobState.DEAD) -> int:
        with self._connection() as db:
            return int(db.execute(self._sql.purge_jobs, {"state": state.value}).rowcount)

    def maintain(self, *, full: bool = False) -> None:
        """Release abandoned claims, drop broken connections, then expire a batch when due.

        Every ten seconds each table loses at most one batch of expired rows (sooner again
        while a batch comes back full), each batch one short statement; ``full=True`` deletes
        everything due and vacuums the tables. Expiry does not depend on it (a lapsed claim
        can be taken again at once); it only bounds the tables. The housekeeping thread's
        calls (not ``full``) do nothing for a store this process has closed or not used yet:
        they must not open a pool of their own.
        """
        pool = self._pool
        if not full and (pool is None or self._forks != process.forks):
            return
        self._abandoned.release(self.release)
        if self._suspect and pool is not None and self._forks == process.forks:
            self._suspect = False
            with self._guard:
                pool.check()  # drops every broken idle connection, so no request gets one
        now = self._clock()
        if not full and now < self._next_purge:
            return
        self._next_purge = now + _PURGE_EVERY
        for sql, retention in self._purge_sql:
            while True:
                with self._connection() as db:
                    row = db.execute(sql, (ledger_horizon(now, retention), _PURGE_BATCH)).fetchone()
                if row is None or row[0] < _PURGE_BATCH:
                    break
                if not full:
                    self._next_purge = now  # more is due: the next round goes on
                    break
        if full:
            with self._connection(watched=False) as db:
                db.execute("SET statement_timeout = 0")  # a vacuum may take a while
                try:
                    db.execute(self._compact_sql)
                finally:
                    db.execute("RESET statement_timeout")

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._forks == process.forks:
                self._pool.close()
            self._pool = None  # a forked child drops its parent's: psycopg leaves it open

    @contextmanager
    def _connection(self, *, watched: bool = True) -> Iterator[_Connection]:
        """A pooled connection of this process; database errors become StoreError (503).

        ``watched``: cut by the watchdog if the operation outlasts the store timeout twice.
        """
        pool = self._pool
        if pool is None or self._forks != process.forks:
            pool = self._open()
        with self._guard:
            # getconn/putconn rather than pool.connection(): its ``with conn`` only commits
            # or rolls back, which an autocommit connection never needs (putconn rolls back
            # a transaction left open and drops a broken connection).
            try:
                db = pool.getconn()
            except PoolTimeout as error:
                self._suspect_pool()
                raise _unreachable(self._conninfo, error) from error
            try:
                if not self._migrated:
                    self._migrate(db)  # may take long: unwatched
                if watched:
                    self._busy[id(db)] = (db, time.monotonic() + self._stuck_after)
                yield db
            finally:
                self._busy.pop(id(db), None)
                pool.putconn(db)

    def _suspect_pool(self) -> None:
        """After a failure, have the next :meth:`maintain` check the pool's idle connections.

        A connection that broke in the failed operation is discarded by the pool already;
        the others a restarted database broke are found before a request takes them.
        """
        self._suspect = True

    def _open(self) -> ConnectionPool[_Connection]:
        with self._lock:
            if self._forks != process.forks:
                # A connection must not cross a fork: a gunicorn worker forked from a master
                # that used the store opens its own pool. psycopg closes a connection only in
                # the process that opened it, so dropping the parent's pool is safe.
                self._pool = None
            if self._pool is None:
                self._pool = ConnectionPool(
                    self._conninfo,
                    min_size=1,
                    max_size=self._pool_size,
                    timeout=self._pool_timeout,
                    reconnect_timeout=_RECONNECT_TIMEOUT,
                    kwargs={"autocommit": True},
                    connection_class=_Connection,
                    open=True,
                    name=f"webhook_kit-{self.schema}",
                )
                self._forks = process.forks
                self._busy = {}
                watchdog = threading.Thread(
                    target=_watch,
                    args=(weakref.ref(self), self._pool, min(0.25, self._stuck_after / 4)),
                    name="webhook_kit-postgres-watchdog",
                    daemon=True,
                )
                watchdog.start()
            return self._pool

    def _cut_stuck(self, now: float) -> None:
        """Cut the socket of every connection busy past its deadline: the blocked call then
        fails (StoreError, a 503) and the pool drops the connection."""
        for key, (db, deadline) in self._busy.copy().items():
            # Still the same use (a finished one may have handed the connection on).
            if deadline < now and self._busy.get(key, (None, 0.0))[1] == deadline:
                log.warning(
                    "PostgreSQL store %r: no answer in %.1f s; cutting the connection",
                    masked_url(self._conninfo),
                    self._stuck_after,
                )
                _shut(db)

    def _migrate(self, db: psycopg.Connection[Any]) -> None:
        """Create the schema or bring it up to date, once per process, under an advisory lock."""
        quoted = f'"{self.schema}"'
        version_table = f"{quoted}.wk_schema_version"
        with db.transaction():
            # A migration may take longer than a statement is allowed to (LOCAL: until commit).
            db.execute("SET LOCAL statement_timeout = 0")
            db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"webhook_kit:{quoted}",))
            # Look before creating: CREATE ... IF NOT EXISTS needs the CREATE privilege even
            # when the object exists, and a DBA may have created the schema for a user without.
            if _missing(db, "SELECT to_regnamespace(%s)", quoted):
                db.execute(f"CREATE SCHEMA {quoted}")
            if _missing(db, "SELECT to_regclass(%s)", version_table):
                db.execute(
                    f"CREATE TABLE {version_table} ("
                    " version integer PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
            row = db.execute(f"SELECT max(version) FROM {version_table}").fetchone()
            current = row[0] if row and row[0] is not None else 0
            if current > len(MIGRATIONS):
                raise ConfigurationError(
                    f"PostgreSQL schema {self.schema!r} is at version {current}, newer than this "
                    f"webhook_kit knows ({len(MIGRATIONS)}): upgrade webhook_kit"
                )
            for version in range(current + 1, len(MIGRATIONS) + 1):
                db.execute(MIGRATIONS[version - 1].format(schema=quoted))
                db.execute(f"INSERT INTO {version_table} (version) VALUES (%s)", (version,))
        self._migrated = True

    def _lost(self, db: _Connection, key: str) -> Claim:
        """Why a claim on ``key`` was not won: a finished claim (with its answer) or a live one."""
        row = db.run(self._sql.lost, {"key": key}).fetchone()
        return lost_claim(row)


def _status(value: str | None) -> MessageStatus | None:
    return MessageStatus(value) if value else None


def _fact_params(facts: MessageFacts) -> dict[str, object]:
    """The row of ``facts`` as :data:`_SAVE` takes it."""
    return dict(zip(_COLUMNS, facts_row(facts), strict=True))


def _record(row: tuple[Any, ...], history: tuple[LedgerEvent, ...]) -> MessageRecord:
    return record_from_row(_IN_RECORD_ORDER(row), history)


def _missing(db: psycopg.Connection[Any], lookup: str, name: str) -> bool:
    row = db.execute(lookup, (name,)).fetchone()
    return row is None or row[0] is None


def _watch(ref: weakref.ReferenceType[PostgresStore], pool: object, every: float) -> None:
    """The watchdog of one store's pool in this process: it ends with the pool."""
    while True:
        time.sleep(every)
        store = ref()
        if store is None or store._pool is not pool:
            return
        store._cut_stuck(time.monotonic())
        del store  # held weakly between rounds


def _shut(db: psycopg.Connection[Any]) -> None:
    """Shut the connection's socket down (on a duplicate descriptor: libpq still owns it)."""
    try:
        with socket.socket(fileno=os.dup(db.pgconn.socket)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error):
        pass  # closed meanwhile: nothing left to cut


def _unreachable(conninfo: str, error: PoolTimeout) -> StoreError:
    """An outage as the log should say it: where, what to check, and the driver's own cause."""
    parts = urlsplit(conninfo)
    try:
        port: object = parts.port or 5432
    except ValueError:  # libpq read it, so this is not expected; say what the URL says
        port = parts.netloc.rpartition(":")[2]
    where = f"{parts.hostname}:{port}" if parts.hostname else "the local socket"
    cause = _connect_errors.get(conninfo, "no connection attempt has finished yet")
    return StoreError(
        f"PostgreSQL store {masked_url(conninfo).partition('?')[0]!r}: {error}; check that "
        f"PostgreSQL runs and accepts connections at {where} (last attempt: {cause})"
    )


def _split_options(url: str, timeout: float) -> tuple[str, dict[str, str]]:
    """The libpq URL and webhook_kit's own options.

    ``timeout`` becomes the default ``connect_timeout`` (whole seconds, at least libpq's 2),
    the default ``tcp_user_timeout`` (a network that stops acknowledging is given up on) and
    the session's ``statement_timeout``, added to any ``options`` the URL gives.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {name: value for name, value in query if name in _OUR_OPTIONS}
    rest = [(name, value) for name, value in query if name not in _OUR_OPTIONS]
    names = {name for name, _ in rest}
    if "connect_timeout" not in names:
        rest.append(("connect_timeout", str(max(_MIN_CONNECT_TIMEOUT, math.ceil(timeout)))))
    if "tcp_user_timeout" not in names:
        rest.append(("tcp_user_timeout", str(math.ceil(timeout * 1000))))
    statement_timeout = f"-c statement_timeout={math.ceil(timeout * 1000)}"
    given = [value for name, value in rest if name == "options"]
    rest = [(name, value) for name, value in rest if name != "options"]
    rest.append(("options", " ".join([statement_timeout, *given])))  # the URL's win
    if "application_name" not in names:
        rest.append(("application_name", "webhook_kit"))
    # libpq decodes %20 but not '+': quote spaces as %20 (options=-c%20name%3Dvalue).
    return urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote))), ours


def _number(options: dict[str, str], name: str, default: float) -> float:
    if name not in options:
        return default
    try:
        value = float(options[name])
    except ValueError:
        value = 0.0
    if value <= 0:
        raise ConfigurationError(
            f"PostgreSQL store option {name}={options[name]!r} must be a positive number"
        )
    return value
