"""Where the emulator keeps messages, media and numbers: SQLite, in memory or in a file.

One implementation serves both: ``memory://`` is an in-memory SQLite database, and
``sqlite:///emulator.db`` a file that survives restarts. Lists are queries (filters, newest
first, keyset paging by ``PageToken``), so they cost the same on both.

Messages still in their life cycle are also held in memory, newest version first: a step
reads no row, and a step that changes no column a list filters on (``sent``) writes none.
In memory, message rows are written in batches, before anything else reads or writes the
database (a file state writes each at once, so nothing acknowledged is lost).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ConfigurationError
from .model import EmulatedMessage, MediaRecord

_UPSERT = (
    "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sid) DO "
    "UPDATE SET date_sent = excluded.date_sent, final = excluded.final, data = excluded.data"
)
#: Message rows an in-memory state keeps back before writing them together.
BATCH = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    sid TEXT PRIMARY KEY, account_sid TEXT NOT NULL, seq INTEGER NOT NULL,
    to_ TEXT NOT NULL, from_ TEXT NOT NULL, date_created REAL NOT NULL, date_sent REAL,
    final INTEGER NOT NULL, data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_order ON messages (account_sid, date_created, seq);
CREATE TABLE IF NOT EXISTS media (
    sid TEXT PRIMARY KEY, message_sid TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS media_message ON media (message_sid, seq);
CREATE TABLE IF NOT EXISTS media_content (
    sid TEXT PRIMARY KEY, content_type TEXT NOT NULL, content BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS numbers (number TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS opt_outs (number TEXT, handset TEXT, PRIMARY KEY (number, handset));
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL, sid TEXT NOT NULL, parent TEXT, seq INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (kind, sid)
);
CREATE INDEX IF NOT EXISTS resources_parent ON resources (kind, parent, seq);
"""


@dataclass(frozen=True, slots=True)
class Number:
    """A phone number (or channel address) of the account, with its webhook settings.

    The IncomingPhoneNumber resource (``PN...``) of an E.164 number; a channel address
    (``whatsapp:+1...``) has the same settings but is not listed there.
    """

    number: str
    sms_url: str | None = None
    fallback_url: str | None = None
    status_callback: str | None = None
    sid: str = ""
    friendly_name: str = ""
    sms_method: str = "POST"
    sms_fallback_method: str = "POST"
    status_callback_method: str = "POST"
    date_created: float = 0.0
    date_updated: float = 0.0


@dataclass(frozen=True, slots=True)
class Filters:
    """The list filters of ``GET Messages.json``; dates are epoch-second bounds (inclusive)."""

    to: str | None = None
    from_: str | None = None
    sent_from: float | None = None
    sent_until: float | None = None


class State:
    """Thread-safe access to the emulator's tables."""

    def __init__(self, url: str = "memory://") -> None:
        if url in {"memory://", "memory"}:
            path = ":memory:"
        elif url.startswith("sqlite:///"):
            path = url[len("sqlite:///") :]
        else:
            raise ConfigurationError(
                f"unknown emulator state {url!r}: use memory:// or sqlite:///path/to/emulator.db"
            )
        self.url = url
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            if path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as error:
            raise ConfigurationError(f"cannot open emulator state {url!r}: {error}") from error
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM messages").fetchone()
        self._seq = int(row[0])
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM resources").fetchone()
        self._resource_seq = int(row[0])
        #: Unfinished messages by SID, and what their row was written with.
        self._live: dict[str, tuple[EmulatedMessage, tuple[object, ...]]] = {}
        #: Message rows not written yet, in order; written when ``_batch`` are waiting.
        self._rows: list[tuple[object, ...]] = []
        self._batch = BATCH if path == ":memory:" else 1
        self._opt_outs = set(self._db.execute("SELECT number, handset FROM opt_outs"))

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    @contextmanager
    def _messages(self) -> Iterator[sqlite3.Connection]:
        """The database, with every message row written: each reader sees them all."""
        with self._lock:
            if self._rows:
                self._write_rows()
            yield self._db

    def _write_rows(self) -> None:
        self._db.executemany(_UPSERT, self._rows)
        self._rows.clear()

    # -- messages -------------------------------------------------------------------------

    def save(self, record: EmulatedMessage, *, handed_over: bool = False) -> None:
        """Insert a message, or update it in place (keeping its place in the order).

        ``handed_over``: the caller never touches ``record`` again, so an unfinished one is
        kept as it is instead of copied (the life cycle's steps, many per message).
        """
        final = record.is_final
        columns = (record.to, record.from_, record.date_sent, final)
        data = record.to_dict()
        with self._lock:
            live = self._live.get(record.sid)
            if final:
                self._live.pop(record.sid, None)
            else:
                kept = record if handed_over else EmulatedMessage.from_dict(data, copy=True)
                self._live[record.sid] = (kept, columns)
                if live is not None and live[1] == columns:
                    return  # the row's columns are unchanged: memory has the rest
            self._seq += 1
            self._rows.append(
                (
                    record.sid,
                    record.account_sid,
                    self._seq,
                    record.to,
                    record.from_,
                    record.date_created,
                    record.date_sent,
                    int(final),
                    json.dumps(data),
                )
            )
            if len(self._rows) >= self._batch:
                self._write_rows()

    def get(self, sid: str) -> EmulatedMessage | None:
        with self._lock:  # an unfinished message is read from memory, with no row written
            live = self._live.get(sid)
            if live is not None:
                return live[0].copy()
        with self._messages() as db:
            row = db.execute("SELECT data FROM messages WHERE sid = ?", (sid,)).fetchone()
        return EmulatedMessage.from_dict(json.loads(row[0])) if row else None

    def _records(self, rows: list[tuple[str]]) -> list[EmulatedMessage]:
        """Rows as records, each in its newest version (held in memory while unfinished)."""
        records = []
        for (data,) in rows:
            record = EmulatedMessage.from_dict(json.loads(data))
            live = self._live.get(record.sid)
            records.append(live[0].copy() if live is not None else record)
        return records

    def delete(self, sid: str) -> None:
        with self._messages() as db:
            self._live.pop(sid, None)
            db.execute("DELETE FROM messages WHERE sid = ?", (sid,))
            db.execute(
                "DELETE FROM media_content WHERE sid IN "
                "(SELECT sid FROM media WHERE message_sid = ?)",
                (sid,),
            )
            db.execute("DELETE FROM media WHERE message_sid = ?", (sid,))

    def page(
        self,
        account_sid: str,
        filters: Filters,
        size: int,
        *,
        after: str | None = None,
        before: str | None = None,
    ) -> tuple[list[EmulatedMessage], bool] | None:
        """Up to ``size`` messages newest first, and whether more follow in that direction.

        ``after``: the page following that message; ``before``: the page preceding it. None
        when the named message does not exist (an invalid ``PageToken``).
        """
        where: list[str] = ["account_sid = ?"]
        args: list[object] = [account_sid]
        for column, value in (("to_", filters.to), ("from_", filters.from_)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        for bound, instant in (
            ("date_sent >= ?", filters.sent_from),
            ("date_sent <= ?", filters.sent_until),
        ):
            if instant is not None:
                where.append(bound)
                args.append(instant)
        order = "DESC"
        with self._messages() as db:
            cursor_sid = after or before
            if cursor_sid is not None:
                cursor = db.execute(
                    "SELECT date_created, seq FROM messages WHERE sid = ? AND account_sid = ?",
                    (cursor_sid, account_sid),
                ).fetchone()
                if cursor is None:
                    return None
                where.append("(date_created, seq) " + ("<" if after else ">") + " (?, ?)")
                args.extend(cursor)
                order = "DESC" if after else "ASC"
            rows = db.execute(
                f"SELECT data FROM messages WHERE {' AND '.join(where)} "
                f"ORDER BY date_created {order}, seq {order} LIMIT ?",
                (*args, size + 1),
            ).fetchall()
            records = self._records(rows[:size])
        if order == "ASC":
            records.reverse()
        return records, len(rows) > size

    def messages(self, *, pending: bool = False) -> list[EmulatedMessage]:
        """Every message, oldest first; ``pending``: only those not yet final."""
        query = "SELECT data FROM messages"
        if pending:
            query += " WHERE final = 0"
        with self._messages() as db:
            rows = db.execute(query + " ORDER BY seq").fetchall()
            return self._records(rows)

    def conversation(self, address: str) -> list[EmulatedMessage]:
        """Messages to or from ``address``, oldest first."""
        with self._messages() as db:
            rows = db.execute(
                "SELECT data FROM messages WHERE to_ = ? OR from_ = ? ORDER BY seq",
                (address, address),
            ).fetchall()
            return self._records(rows)

    def pairs(self) -> list[tuple[str, str]]:
        """Each distinct (to, from) of the messages, first seen first: who talked with whom."""
        with self._locked() as db:
            rows = db.execute(
                "SELECT to_, from_ FROM messages GROUP BY to_, from_ ORDER BY MIN(seq)"
            ).fetchall()
        return [(str(to), str(from_)) for to, from_ in rows]

    # -- media ----------------------------------------------------------------------------

    def add_media(self, media: MediaRecord) -> None:
        with self._locked() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM media").fetchone()[0]
            db.execute(
                "INSERT INTO media VALUES (?, ?, ?, ?)",
                (media.sid, media.message_sid, seq, json.dumps(asdict(media))),
            )

    def media(self, message_sid: str) -> list[MediaRecord]:
        with self._locked() as db:
            rows = db.execute(
                "SELECT data FROM media WHERE message_sid = ? ORDER BY seq", (message_sid,)
            ).fetchall()
        return [MediaRecord(**json.loads(row[0])) for row in rows]

    def media_item(self, sid: str) -> MediaRecord | None:
        with self._locked() as db:
            row = db.execute("SELECT data FROM media WHERE sid = ?", (sid,)).fetchone()
        return MediaRecord(**json.loads(row[0])) if row else None

    def delete_media(self, sid: str) -> None:
        with self._locked() as db:
            db.execute("DELETE FROM media WHERE sid = ?", (sid,))
            db.execute("DELETE FROM media_content WHERE sid = ?", (sid,))

    def put_media_content(self, sid: str, content_type: str, content: bytes) -> None:
        """The bytes of a media item (given by a handset, or fetched from its URL once)."""
        with self._locked() as db:
            db.execute(
                "INSERT OR REPLACE INTO media_content VALUES (?, ?, ?)",
                (sid, content_type, content),
            )

    def media_content(self, sid: str) -> tuple[str, bytes] | None:
        with self._locked() as db:
            row = db.execute(
                "SELECT content_type, content FROM media_content WHERE sid = ?", (sid,)
            ).fetchone()
        return (str(row[0]), bytes(row[1])) if row else None

    # -- numbers --------------------------------------------------------------------------

    def put_number(self, number: Number) -> None:
        with self._locked() as db:
            db.execute(
                "INSERT OR REPLACE INTO numbers VALUES (?, ?)",
                (number.number, json.dumps(asdict(number))),
            )

    def number(self, number: str) -> Number | None:
        with self._locked() as db:
            row = db.execute("SELECT data FROM numbers WHERE number = ?", (number,)).fetchone()
        return Number(**json.loads(row[0])) if row else None

    def numbers(self) -> list[Number]:
        with self._locked() as db:
            rows = db.execute("SELECT data FROM numbers ORDER BY number").fetchall()
        return [Number(**json.loads(row[0])) for row in rows]

    def delete_number(self, number: str) -> None:
        with self._locked() as db:
            db.execute("DELETE FROM numbers WHERE number = ?", (number,))

    # -- other resources (services, senders, content, windows) ----------------------------

    def put_resource(
        self, kind: str, sid: str, data: dict[str, Any], parent: str | None = None
    ) -> None:
        """Insert or replace one resource of ``kind`` (plain JSON data), keeping its order."""
        with self._locked() as db:
            self._resource_seq += 1
            db.execute(
                "INSERT INTO resources VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (kind, sid) DO UPDATE SET parent = excluded.parent, "
                "data = excluded.data",
                (kind, sid, parent, self._resource_seq, json.dumps(data)),
            )

    def resource(self, kind: str, sid: str) -> dict[str, Any] | None:
        with self._locked() as db:
            row = db.execute(
                "SELECT data FROM resources WHERE kind = ? AND sid = ?", (kind, sid)
            ).fetchone()
        return dict(json.loads(row[0])) if row else None

    def resources(self, kind: str, parent: str | None = None) -> list[dict[str, Any]]:
        """Every resource of ``kind`` (under ``parent`` if given), oldest first."""
        query, args = "SELECT data FROM resources WHERE kind = ?", [kind]
        if parent is not None:
            query += " AND parent = ?"
            args.append(parent)
        with self._locked() as db:
            rows = db.execute(query + " ORDER BY seq", args).fetchall()
        return [dict(json.loads(row[0])) for row in rows]

    def delete_resource(self, kind: str, sid: str) -> None:
        with self._locked() as db:
            db.execute("DELETE FROM resources WHERE kind = ? AND sid = ?", (kind, sid))

    # -- opt-outs --------------------------------------------------------------------------

    def set_opt_out(self, number: str, handset: str, opted_out: bool) -> None:
        """Record that ``handset`` texted STOP (or START) to ``number``."""
        with self._locked() as db:
            if opted_out:
                self._opt_outs.add((number, handset))
                db.execute("INSERT OR IGNORE INTO opt_outs VALUES (?, ?)", (number, handset))
            else:
                self._opt_outs.discard((number, handset))
                db.execute(
                    "DELETE FROM opt_outs WHERE number = ? AND handset = ?", (number, handset)
                )

    def opted_out(self, number: str, handset: str) -> bool:
        """Read from memory (the table is loaded at start): every send asks."""
        with self._lock:
            return (number, handset) in self._opt_outs

    def reset(self) -> None:
        """Forget every message, media item, number and opt-out."""
        with self._messages() as db:
            self._live.clear()
            self._opt_outs.clear()
            self._rows.clear()
            db.executescript(
                "DELETE FROM messages; DELETE FROM media; DELETE FROM media_content; "
                "DELETE FROM numbers; DELETE FROM opt_outs; DELETE FROM resources;"
            )

    def close(self) -> None:
        """Close the database (a file state can then be opened by another process)."""
        with self._messages() as db:
            db.close()
