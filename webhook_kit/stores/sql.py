"""The statements SQLite and PostgreSQL share, written once for both.

A :class:`Dialect` is all that differs between them here: how a named parameter is spelled,
where the tables live (PostgreSQL's schema), and PostgreSQL's row locks for concurrent
runners. Each store keeps only what is its engine's own (connections, transactions, the
claim's single-statement forms, housekeeping); the rules the statements follow come from
:mod:`.rules`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..jobs import JOB_COLUMNS, Job, job_row
from ..once import ConversationWrite
from ..records import EventApplied, EventWrite, StatusEntry
from .base import OptOut
from .rules import (
    CONVERSATION_ORDER_SQL,
    JOB_DUE_SQL,
    JOB_ORDER_SQL,
    LAPSED_SQL,
    NAMES,
    Row,
    claimable_sql,
    entry_row,
    facts_row,
    holds_sql,
    merge_sql,
)

_NAMED = re.compile(r":([a-z_]+)")
_JOBS = ", ".join(JOB_COLUMNS)
_OPT_OUT_COLUMNS = "sender, address, opted_out, updated, source"


@dataclass(frozen=True)
class Dialect:
    """What one engine spells its own way."""

    #: The prefix of every table name: ``""``, or a quoted schema and a dot.
    tables: str = ""
    #: ``:name`` (sqlite3) or ``%(name)s`` (psycopg).
    pyformat: bool = False
    #: Appended to the query that picks the next job (PostgreSQL: ``FOR UPDATE SKIP LOCKED``).
    lock_next: str = ""
    #: The code-point collation clause (PostgreSQL: ``COLLATE "C"``; SQLite compares so).
    binary: str = ""

    def __call__(self, sql: str) -> str:
        """``sql`` written with ``:name`` parameters and ``{t}`` before each table."""
        sql = sql.replace("{t}", self.tables)
        return _NAMED.sub(r"%(\1)s", sql) if self.pyformat else sql


@dataclass(frozen=True)
class Statements:
    """Every shared statement, in one dialect; parameters are named."""

    dialect: Dialect
    lost: str = field(init=False)
    complete: str = field(init=False)
    release: str = field(init=False)
    save_conversation: str = field(init=False)
    delete_conversation: str = field(init=False)
    get_conversation: str = field(init=False)
    due_conversations: str = field(init=False)
    purge_conversations: str = field(init=False)
    set_opt_out: str = field(init=False)
    get_opt_out: str = field(init=False)
    list_opt_outs: str = field(init=False)
    list_opt_outs_of: str = field(init=False)
    insert_job: str = field(init=False)
    next_job: str = field(init=False)
    take_job: str = field(init=False)
    get_job: str = field(init=False)
    renew_job: str = field(init=False)
    delete_job: str = field(init=False)
    settle_job: str = field(init=False)
    list_jobs: str = field(init=False)
    retry_job: str = field(init=False)
    purge_jobs: str = field(init=False)
    claim_event: str = field(init=False)
    record_event: str = field(init=False)
    merge_message: str = field(init=False)

    def __post_init__(self) -> None:
        d = self.dialect
        live = "NOT " + LAPSED_SQL.format(ends="expires", now=":now")
        mine = "WHERE key = :key AND owner = :owner AND state = 'running'"
        due = JOB_DUE_SQL.format(now=":now")
        # The oldest due job, or the job :key if it is due (rules.JOB_DUE_SQL, JOB_ORDER_SQL).
        next_job = (
            "SELECT key FROM {t}wk_jobs WHERE (CAST(:key AS TEXT) IS NULL OR key = :key)"
            f" AND {due} ORDER BY {JOB_ORDER_SQL} LIMIT 1{d.lock_next}"
        )
        statements = {
            "lost": "SELECT done, answer, owner FROM {t}wk_claims WHERE key = :key",
            # Only the owner's unfinished claim whose lease has not ended (rules.lapsed).
            "complete": "UPDATE {t}wk_claims SET done = TRUE, answer = :answer,"
            " expires = :expires WHERE key = :key AND "
            + holds_sql(ends="expires", done="done", owner="owner", now=":now", me=":owner"),
            # An unfinished claim only: a finished one keeps its answer.
            "release": "DELETE FROM {t}wk_claims WHERE key = :key AND owner = :owner AND NOT done",
            "save_conversation": "INSERT INTO {t}wk_conversations (id, data, expires, due)"
            " VALUES (:id, :data, :expires, :due) ON CONFLICT (id) DO UPDATE SET"
            " data = excluded.data, expires = excluded.expires, due = excluded.due",
            "delete_conversation": "DELETE FROM {t}wk_conversations WHERE id = :id",
            "get_conversation": f"SELECT data FROM {{t}}wk_conversations WHERE id = :id AND {live}",
            "due_conversations": "SELECT id FROM {t}wk_conversations WHERE due <= :due"
            f" AND {live} ORDER BY {CONVERSATION_ORDER_SQL} LIMIT :limit",
            # Each removed conversation says whether it was still alive (those are counted).
            "purge_conversations": "DELETE FROM {t}wk_conversations"
            f" WHERE substr(id, 1, :length) = :prefix RETURNING {live}",
            "set_opt_out": f"INSERT INTO {{t}}wk_opt_outs ({_OPT_OUT_COLUMNS})"
            " VALUES (:sender, :address, :opted_out, :updated, :source)"
            " ON CONFLICT (sender, address) DO UPDATE SET opted_out = excluded.opted_out,"
            " updated = excluded.updated, source = excluded.source",
            "get_opt_out": f"SELECT {_OPT_OUT_COLUMNS} FROM {{t}}wk_opt_outs"
            " WHERE sender = :sender AND address = :address",
            "list_opt_outs": f"SELECT {_OPT_OUT_COLUMNS} FROM {{t}}wk_opt_outs"
            " ORDER BY sender, address",
            "list_opt_outs_of": f"SELECT {_OPT_OUT_COLUMNS} FROM {{t}}wk_opt_outs"
            " WHERE sender = :sender ORDER BY address",
            # A job whose key exists already is left as it is.
            "insert_job": f"INSERT INTO {{t}}wk_jobs ({_JOBS})"
            f" VALUES ({', '.join(':' + name for name in JOB_COLUMNS)}) ON CONFLICT DO NOTHING",
            "next_job": next_job,
            "take_job": "UPDATE {t}wk_jobs SET state = 'running', owner = :owner,"
            f" expires = :expires, attempts = attempts + 1 WHERE key = ({next_job})"
            f" RETURNING {_JOBS}",
            "get_job": f"SELECT {_JOBS} FROM {{t}}wk_jobs WHERE key = :key",
            "renew_job": f"UPDATE {{t}}wk_jobs SET expires = :expires {mine}",
            "delete_job": f"DELETE FROM {{t}}wk_jobs {mine}",
            "settle_job": "UPDATE {t}wk_jobs SET state = :state, run_at = :run_at,"
            f" error = :error, owner = '' {mine}",
            "list_jobs": f"SELECT {_JOBS} FROM {{t}}wk_jobs"
            " WHERE (CAST(:state AS TEXT) IS NULL OR state = :state)"
            f" ORDER BY {JOB_ORDER_SQL} LIMIT :limit",
            "retry_job": "UPDATE {t}wk_jobs SET state = 'pending', attempts = 0, run_at = :now"
            " WHERE key = :key AND state = 'dead'",
            "purge_jobs": "DELETE FROM {t}wk_jobs WHERE state = :state",
            # An Event Streams event's dedupe record: a finished claim, written where a new
            # request may take the key (rules.claimable, no owner known dead).
            "claim_event": "INSERT INTO {t}wk_claims AS c (key, owner, done, answer, expires)"
            " VALUES (:key, '', TRUE, :answer, :expires) ON CONFLICT (key) DO UPDATE SET"
            " owner = excluded.owner, done = excluded.done, answer = excluded.answer,"
            " expires = excluded.expires"
            " WHERE "
            + claimable_sql(
                ends="c.expires", done="c.done", owner="c.owner", now=":now", dead="''"
            ),
            # A status entry joins the history once, whichever channel brought it.
            "record_event": "INSERT INTO {t}wk_events"
            " (sid, key, status, error_code, event_type, received, form) VALUES"
            " (:sid, :key, :status, :error_code, :event_type, :received, :form)"
            " ON CONFLICT DO NOTHING",
            # A row merged into the message's record by the declared rules (see .rules).
            "merge_message": f"INSERT INTO {{t}}wk_messages AS m ({', '.join(NAMES)})"
            f" VALUES ({', '.join(':' + name for name in NAMES)})"
            f" ON CONFLICT (sid) DO UPDATE SET {merge_sql(binary=d.binary)}",
        }
        for name, sql in statements.items():
            object.__setattr__(self, name, d(sql))


def job_params(job: Job) -> dict[str, object]:
    """``job`` as :attr:`Statements.insert_job` takes it."""
    return dict(zip(JOB_COLUMNS, job_row(job), strict=True))


def opt_out_params(record: OptOut) -> dict[str, object]:
    """``record`` as :attr:`Statements.set_opt_out` takes it."""
    return {
        "sender": record.sender,
        "address": record.address,
        "opted_out": record.opted_out,
        "updated": record.updated_at,
        "source": record.source,
    }


def apply_event_writes(
    execute: Callable[[str, dict[str, object]], int],
    sql: Statements,
    writes: Sequence[EventWrite],
    now: float,
    retention: float,
) -> list[EventApplied]:
    """``Store.apply_events`` inside the caller's one transaction; ``execute`` runs a
    statement and returns its row count. A failure raises, and the caller rolls it all back."""
    finished: dict[str, object] = {"answer": b"", "expires": now + retention, "now": now}
    applied = []
    for write in writes:
        if execute(sql.claim_event, finished | {"key": write.key}) != 1:
            applied.append(EventApplied(False, False))
            continue
        entry, facts = write.status, write.message
        recorded = entry is not None and execute(sql.record_event, event_params(entry)) == 1
        if entry is not None and recorded:
            execute(sql.merge_message, _row_params(entry_row(entry)))
        if facts is not None:
            execute(sql.merge_message, _row_params(facts_row(facts)))
        applied.append(EventApplied(True, recorded))
    return applied


def event_params(entry: StatusEntry) -> dict[str, object]:
    """``entry`` as :attr:`Statements.record_event` takes it (a status callback joining a
    message's history, on SQLite or in a batch)."""
    return {
        "sid": entry.message_sid,
        "key": entry.key,
        "status": entry.status,
        "error_code": entry.error_code,
        "event_type": entry.event_type,
        "received": entry.received_at,
        "form": entry.form,
    }


def _row_params(row: Row) -> dict[str, object]:
    """A ledger row as :attr:`Statements.merge_message` takes it."""
    return dict(zip(NAMES, row, strict=True))


def conversation_writes(
    sql: Statements, conversation: ConversationWrite, now: float
) -> list[tuple[str, dict[str, object]]]:
    """The statements that save (or delete) ``conversation`` and release its lock, run in the
    transaction that completes the claim."""
    writes: list[tuple[str, dict[str, object]]]
    if conversation.data is None:
        writes = [(sql.delete_conversation, {"id": conversation.id})]
    else:
        saved: dict[str, object] = {
            "id": conversation.id,
            "data": conversation.data,
            "expires": now + conversation.ttl,
            "due": conversation.due,
        }
        writes = [(sql.save_conversation, saved)]
    lock: dict[str, object] = {"key": "lock:" + conversation.id, "owner": conversation.lock_owner}
    writes.append((sql.release, lock))
    return writes


#: The schema's history, oldest first, for both engines: each step runs once per database,
#: in order, and the engine records how many ran (PostgreSQL: ``wk_schema_version``; SQLite:
#: ``PRAGMA user_version``). ``{t}`` is the table prefix and ``{real}``, ``{blob}``,
#: ``{bool}``, ``{false}``, ``{rowid}`` the engine's spellings (see :func:`migrations`);
#: ``CREATE INDEX`` statements run only where the engine takes indexes (SQLite's tables stay
#: one B-tree each, a page less written per webhook). To change the schema, append a step;
#: never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS {t}wk_claims (
        key text PRIMARY KEY,
        owner text NOT NULL,
        done {bool} NOT NULL,
        answer {blob},
        expires {real} NOT NULL
    ){rowid};
    CREATE INDEX wk_claims_expires ON {t}wk_claims (expires);
    CREATE TABLE IF NOT EXISTS {t}wk_messages (
        sid text PRIMARY KEY,
        status text,
        rank integer NOT NULL,
        error_code integer,
        updated {real} NOT NULL,
        final_at {real}
    ){rowid};
    CREATE INDEX wk_messages_updated ON {t}wk_messages (updated);
    CREATE TABLE IF NOT EXISTS {t}wk_events (
        sid text NOT NULL,
        key text NOT NULL,
        status text NOT NULL,
        error_code integer,
        event_type text,
        received {real} NOT NULL,
        form text NOT NULL,
        PRIMARY KEY (sid, key)
    ){rowid};
    """,
    """
    CREATE TABLE IF NOT EXISTS {t}wk_conversations (
        id text PRIMARY KEY,
        data {blob} NOT NULL,
        expires {real} NOT NULL,
        due {real}
    ){rowid};
    CREATE INDEX wk_conversations_expires ON {t}wk_conversations (expires);
    CREATE INDEX wk_conversations_due ON {t}wk_conversations (due) WHERE due IS NOT NULL;
    CREATE TABLE IF NOT EXISTS {t}wk_opt_outs (
        sender text NOT NULL,
        address text NOT NULL,
        opted_out {bool} NOT NULL,
        updated {real} NOT NULL,
        source text NOT NULL,
        PRIMARY KEY (sender, address)
    ){rowid};
    """,
    # The ledger as the record of every message: what the kit knows besides the status.
    """
    ALTER TABLE {t}wk_messages ADD COLUMN created {real};
    ALTER TABLE {t}wk_messages ADD COLUMN sent_at {real};
    ALTER TABLE {t}wk_messages ADD COLUMN direction text;
    ALTER TABLE {t}wk_messages ADD COLUMN from_addr text;
    ALTER TABLE {t}wk_messages ADD COLUMN to_addr text;
    ALTER TABLE {t}wk_messages ADD COLUMN body text;
    ALTER TABLE {t}wk_messages ADD COLUMN redacted {bool} NOT NULL DEFAULT {false};
    ALTER TABLE {t}wk_messages ADD COLUMN segments integer;
    ALTER TABLE {t}wk_messages ADD COLUMN media integer;
    ALTER TABLE {t}wk_messages ADD COLUMN price text;
    ALTER TABLE {t}wk_messages ADD COLUMN price_unit text;
    ALTER TABLE {t}wk_messages ADD COLUMN ref text;
    ALTER TABLE {t}wk_messages ADD COLUMN reply_to text;
    CREATE INDEX wk_messages_created
        ON {t}wk_messages ((coalesce(created, 0)) DESC, (sid COLLATE "C") DESC);
    CREATE INDEX wk_messages_ref ON {t}wk_messages (ref) WHERE ref IS NOT NULL;
    """,
    """
    CREATE TABLE IF NOT EXISTS {t}wk_jobs (
        key text PRIMARY KEY,
        kind text NOT NULL,
        handler text NOT NULL,
        payload text NOT NULL,
        created {real} NOT NULL,
        state text NOT NULL,
        attempts integer NOT NULL,
        run_at {real} NOT NULL,
        owner text NOT NULL,
        expires {real} NOT NULL,
        error text
    ){rowid};
    CREATE INDEX wk_jobs_created ON {t}wk_jobs (created, key);
    """,
)

SQLITE_TYPES = {"real": "REAL", "blob": "BLOB", "bool": "INTEGER", "false": "0",
                "rowid": " WITHOUT ROWID"}  # fmt: skip
POSTGRES_TYPES = {"real": "double precision", "blob": "bytea", "bool": "boolean",
                  "false": "false", "rowid": ""}  # fmt: skip


def migrations(tables: str, types: dict[str, str], *, indexes: bool) -> tuple[list[str], ...]:
    """:data:`MIGRATIONS` in one engine's words: each step as its list of statements."""
    steps = []
    for step in MIGRATIONS:
        text = step.replace("{t}", tables)
        for name, spelling in types.items():
            text = text.replace("{" + name + "}", spelling)
        statements = [" ".join(part.split()) for part in text.split(";")]
        steps.append([s for s in statements if s and (indexes or not s.startswith("CREATE INDEX"))])
    return tuple(steps)
