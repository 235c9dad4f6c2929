"""Where claims and the delivery ledger live, chosen by URL.

``memory://`` keeps everything in the process (tests), ``sqlite:///path`` is the embedded
default (one file, WAL, shared by every worker process on a host), and ``redis://host/db``
or ``postgresql://user@host/db`` let many hosts behave as one. All of them pass one
behavioural test suite. This package holds the :class:`Store` protocol, :func:`open_store`
and the housekeeping thread; what the engines share is in :mod:`webhook_kit.stores.base`,
which they import instead of this package (no import cycle).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import parse_qsl

from ..errors import ConfigurationError, StoreError
from ..jobs import Job, JobStore
from ..once import Claim as Claim
from ..once import ConversationWrite as ConversationWrite
from ..once import Outcome as Outcome
from ..once import new_owner as new_owner
from ..process import process
from ..records import EventApplied, EventWrite, MessageFacts, MessageRecord, Query, StatusEntry
from .base import DEFAULT_LEDGER_RETENTION as DEFAULT_LEDGER_RETENTION
from .base import DEFAULT_RETENTION as DEFAULT_RETENTION
from .base import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from .base import Applied as Applied
from .base import OptOut as OptOut
from .base import StoreErrors as StoreErrors
from .base import masked_url as masked_url

log = logging.getLogger("webhook_kit")


class Store(JobStore, Protocol):
    """The operations the request path needs; each one is atomic across processes.

    The background jobs' operations are :class:`~webhook_kit.jobs.JobStore`'s.
    """

    def claim(
        self,
        key: str,
        lease: float,
        *,
        replace: str = "",
        message: MessageFacts | None = None,
        senders: Sequence[str] = (),
    ) -> Claim:
        """Take ``key`` for ``lease`` seconds, unless a live or finished claim holds it.

        ``replace`` names the owner of an unfinished claim known to be dead: the key is
        taken over from exactly that owner (and from no other). A claim that fails with
        :class:`StoreError` may still reach the store later; the store releases it once it
        answers again (see :meth:`maintain`). When the claim is won, ``message`` (an
        inbound message) is saved in the same step, as :meth:`save_message` would, and
        ``senders`` asks whether its sender opted out of any of them (:attr:`Claim.opted_out`,
        as :meth:`opted_out` would answer): the reply's opt-out screen costs no extra trip.
        """

    def complete(
        self,
        key: str,
        owner: str,
        answer: bytes,
        *,
        conversation: ConversationWrite | None = None,
        jobs: Sequence[Job] = (),
    ) -> bool:
        """Finish the claim ``key`` that ``owner`` holds, keeping ``answer`` for the retention.

        In the same atomic step: save (or delete) ``conversation`` with its TTL and due time
        and release its lock, and add ``jobs`` (a job whose key exists already is left as it
        is). A retried webhook therefore neither loses nor applies twice what its handler
        changed, and a background handler's job exists exactly when the claim is finished.
        Returns False, writing nothing, if ``owner`` no longer holds ``key`` unfinished (its
        lease ended and another delivery took it over: that one writes instead).
        """

    def release(self, key: str, owner: str) -> None:
        """Give up an owned claim so that a retry can run."""

    def record_status(
        self, entry: StatusEntry, lease: float | None = None, replace: str = ""
    ) -> Applied:
        """Claim ``entry.key`` and, if won, record the callback: one atomic, durable step.

        With ``lease`` the claim stays pending for that long, for handlers to run before
        :meth:`complete` or :meth:`release`; without, nothing runs after the record, so the
        claim is finished in the same step (the store then writes no claim at all: the
        recorded event is the key, and a duplicate is DONE with ``status`` None). A lost
        claim records nothing. ``replace`` is as for :meth:`claim` (a callback already
        recorded is not recorded twice).
        """

    def apply_events(self, writes: Sequence[EventWrite]) -> list[EventApplied]:
        """Apply the ledger effects of a whole Event Streams batch: all of them, or (when the
        store fails, :class:`StoreError`) none.

        In order, each write whose dedupe record (``write.key``) is absent or past its
        retention is new: its record is written as a finished claim (kept for the
        retention), its status recorded as :meth:`record_status` without a lease records it
        (once per ``status.key``, whichever channel first), and its message merged as
        :meth:`save_message` merges it. A write not new changes nothing. One answer per
        write, in order; handlers run after, under their own claims.
        """

    def get_message(self, message_sid: str) -> MessageRecord | None:
        """A message's ledger record, or None."""

    def get_conversation(self, id: str) -> bytes | None:
        """The saved conversation ``id``, or None if there is none or it expired."""

    def due_conversations(self, now: float, limit: int) -> list[str]:
        """Up to ``limit`` ids of saved conversations whose ``due`` is at or before ``now``.

        Saving a conversation replaces its due time (None removes it); so does deleting it.
        An id may name a conversation that expired meanwhile (:meth:`get_conversation` then
        says None, and saving it with ``data=None`` forgets the due time).
        """

    def set_opt_out(self, record: OptOut) -> None:
        """Insert or replace the opt-out record of ``(record.sender, record.address)``."""

    def get_opt_out(self, sender: str, address: str) -> OptOut | None:
        """The opt-out record of ``address`` for ``sender``, or None if it never changed."""

    def opted_out(self, address: str, senders: Sequence[str]) -> bool:
        """True if ``address`` is opted out of any of ``senders``: one round trip, as the
        request path asks it before every reply."""

    def list_opt_outs(self, sender: str | None = None) -> list[OptOut]:
        """Every opt-out record (of one ``sender``), ordered by sender then address."""

    def purge_address(self, address: str) -> int:
        """Remove every conversation of ``address`` and every ledger record of a message to
        or from it (its facts, or a callback's ``To``/``From``); the number of items removed.
        Opt-out records stay: they are what keeps the person from being texted again.
        """

    def save_message(self, facts: MessageFacts, alias: str | None = None) -> None:
        """Merge ``facts`` into the record of ``facts.message_sid`` (created if missing).

        With ``alias``, the record kept under that key (a send written before its SID was
        known) is first merged into it and removed, in the same atomic step.
        ``record_status`` does the same with ``entry.correlation``.
        """

    def find_messages(self, query: Query) -> list[MessageRecord]:
        """Up to ``query.limit`` records matching ``query``, newest ``created_at`` first
        (ties by SID, descending), without their history."""

    def maintain(self, *, full: bool = False) -> None:
        """Housekeeping, never run inside a request: release abandoned claims, then expire.

        Called about twice a second by each process's housekeeping thread, which expires a
        batch of old keys and records when one is due; ``full=True`` (``webhook-kit
        maintenance``) expires everything due and compacts at once.
        """

    def close(self) -> None:
        """Release connections; the store reopens them if used again."""


def open_store(
    url: str,
    *,
    retention: float = DEFAULT_RETENTION,
    ledger_retention: float = DEFAULT_LEDGER_RETENTION,
    timeout: float = DEFAULT_TIMEOUT,
) -> Store:
    """Open the store a URL names.

    ``retention`` bounds how long finished idempotency keys are remembered and
    ``ledger_retention`` how long a message's record outlives its last callback, so memory
    and disk stay bounded. ``timeout`` bounds every wait on the store (SQLite's write lock,
    Redis's connect and reply), after which the request is answered ``503``.
    """
    scheme = url.partition(":")[0].lower()  # urlsplit would raise on a malformed host
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore(retention=retention, ledger_retention=ledger_retention)
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        options = dict(parse_qsl(url.partition("?")[2]))
        return SQLiteStore(
            sqlite_path(url),
            synchronous=options.get("synchronous", "normal"),
            retention=retention,
            ledger_retention=ledger_retention,
            timeout=timeout,
        )
    if scheme in {"redis", "rediss", "unix"}:
        from .redis import RedisStore

        return RedisStore(
            url, retention=retention, ledger_retention=ledger_retention, timeout=timeout
        )
    if scheme in {"postgresql", "postgres"}:
        from .postgres import PostgresStore

        return PostgresStore(
            url, retention=retention, ledger_retention=ledger_retention, timeout=timeout
        )
    raise ConfigurationError(
        f"unknown store URL {url!r}: use memory://, sqlite:///path/to/file.db, "
        "redis://host:port/db or postgresql://user@host/db"
    )


class Housekeeping:
    """One daemon thread per process calling :meth:`Store.maintain` on every watched store.

    Started lazily by the first request a process serves, so each gunicorn worker (forked
    after the app is loaded, or not) runs its own, and a fork never inherits a dead thread.
    Stores are held weakly: a store nobody uses any more is dropped.
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._stores: weakref.WeakSet[Store] = weakref.WeakSet()
        self._stopping = threading.Event()
        self._started = process.service(self._start, self._stop)

    def watch(self, store: Store) -> None:
        """Maintain ``store`` from now on, starting this process's thread if needed."""
        self._stores.add(store)
        self._started()

    def _start(self) -> None:
        self._stopping = stopping = threading.Event()
        name = "webhook_kit-housekeeping"
        threading.Thread(target=self._run, args=(stopping,), name=name, daemon=True).start()

    def _stop(self) -> None:
        self._stopping.set()

    def _run(self, stopping: threading.Event) -> None:
        failing: set[int] = set()
        while not stopping.wait(self.interval):
            for store in list(self._stores):
                try:
                    store.maintain()
                except StoreError as error:  # the store is down: requests answer 503 meanwhile
                    if id(store) not in failing:
                        log.warning("housekeeping: %s", error)
                    failing.add(id(store))
                except Exception:  # a bug, in a store of the user's maybe: the thread lives on
                    if id(store) not in failing:
                        log.exception("housekeeping: %r.maintain() failed", store)
                    failing.add(id(store))
                else:
                    failing.discard(id(store))


housekeeping = Housekeeping()


def sqlite_path(url: str) -> str:
    """The file a SQLite store URL names: sqlite:///relative.db (to the working directory)
    and sqlite:////absolute/path.db, as SQLAlchemy spells them."""
    path = url[len("sqlite://") :].partition("?")[0]
    if not path.startswith("/") or path == "/":
        raise ConfigurationError(f"SQLite store URL {url!r} needs a file: sqlite:///webhook_kit.db")
    return path[1:]
