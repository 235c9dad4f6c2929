"""Where claims and the delivery ledger live, chosen by URL.

``memory://`` keeps everything in the process (tests), ``sqlite:///path`` is the embedded
default (one file, WAL, shared by every worker process on a host), and ``redis://host/db``
or ``postgresql://user@host/db`` let many hosts behave as one. All of them pass one
behavioural test suite.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import parse_qsl

from ..errors import ConfigurationError, StoreError
from ..jobs import Job, JobStore
from ..process import PerProcess
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

log = logging.getLogger("webhook_kit")


def _host_id() -> str:
    """Who can check a process id: one boot of one machine, in one pid namespace.

    Without ``/proc`` (not Linux) every process gets a random id, so owners are never
    judged dead by pid and a stranded claim frees itself when its lease ends.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as boot:
            seed = boot.read().strip() + str(os.stat("/proc/self/ns/pid").st_ino).encode()
    except OSError:
        seed = os.urandom(16)
    return hashlib.blake2b(seed, digest_size=6).hexdigest()


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot); None: no such process, "": unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
    except FileNotFoundError:
        return None
    except OSError:  # hidden or unreadable (hidepid): alive, as far as anyone can tell
        return ""
    return fields[19].decode() if len(fields) > 19 else ""


class _Owners:
    """Claim owner tokens ``host.pid.started.n``: unique, and telling whether the owner lives.

    The host id, pid and start time let any process on the same host see that the process
    holding a claim is gone (killed by gunicorn's timeout, ``kill -9``, OOM), so the next
    delivery takes the claim over at once instead of waiting out the lease.
    """

    def __init__(self) -> None:
        self.host = _host_id()
        self.reset()

    def reset(self) -> None:
        """A new prefix: called again in every forked process (gunicorn workers)."""
        pid = os.getpid()
        self._prefix = f"{self.host}.{pid}.{_start_time(pid) or '?'}."
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter)}"

    def is_dead(self, owner: str) -> bool:
        """True only if ``owner``'s process is known to be gone; False when in doubt."""
        host, _, rest = owner.partition(".")
        pid, _, rest = rest.partition(".")
        started = rest.rpartition(".")[0]
        if host != self.host or not pid.isdigit():
            return False  # another host or namespace: only the lease can tell
        current = _start_time(int(pid))
        if current is None:
            return True  # no such process
        # A different start time: the owner died and a new process got its pid.
        return started != "?" and current not in ("", started)


new_owner = _Owners()
os.register_at_fork(after_in_child=new_owner.reset)


class Outcome(Enum):
    """How a claim on an idempotency key ended."""

    #: This request owns the key and must complete or release it.
    CLAIMED = "claimed"
    #: An earlier request finished; its answer is replayed.
    DONE = "done"
    #: An earlier request still holds the key.
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: Outcome
    #: The owner token to complete or release a CLAIMED key; the holder of a BUSY one.
    owner: str = ""
    #: The stored answer of a DONE key.
    answer: bytes = b""
    #: For a CLAIMED key taken with ``message`` and ``senders``: whether the message's sender
    #: had opted out of any of them, read in the claim's own step.
    opted_out: bool = False


@dataclass(frozen=True, slots=True)
class ConversationWrite:
    """A conversation saved by :meth:`Store.complete` together with an inbound claim.

    ``id`` starts with the person's address and ``|`` (see :meth:`Store.purge_address`).
    """

    id: str
    #: The owner token of the conversation's lock (a :meth:`Store.claim` on ``"lock:" + id``),
    #: released in the same step.
    lock_owner: str
    #: The serialised conversation; None deletes it (the conversation ended).
    data: bytes | None
    #: Seconds of inactivity after which the conversation expires.
    ttl: float
    #: Epoch seconds when its timeout is due (see :meth:`Store.due_conversations`); None: none.
    due: float | None = None


@dataclass(frozen=True, slots=True)
class OptOut:
    """Whether ``address`` may receive messages from ``sender`` (a number or Messaging Service)."""

    sender: str
    address: str
    opted_out: bool
    #: Epoch seconds of the last change.
    updated_at: float
    #: What changed it: ``keyword`` (recognised by the kit), ``advanced`` (Twilio's Advanced
    #: Opt-Out), ``import`` or ``api``.
    source: str


@dataclass(frozen=True, slots=True)
class Applied:
    """What claiming and recording one callback did."""

    #: CLAIMED: won, and handlers may run (complete or release it); DONE: won and finished
    #: in the same step, or lost to a finished claim; BUSY: lost to a claim still running.
    claim: Claim
    #: True when this call added the callback to the history.
    recorded: bool
    #: The message's current status after this call; None when the claim was lost.
    status: MessageStatus | None

    @property
    def outcome(self) -> Outcome:
        return self.claim.outcome

    @property
    def final(self) -> bool:
        return self.status is not None and self.status.is_final


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


DEFAULT_RETENTION = 24 * 3600.0
DEFAULT_LEDGER_RETENTION = 7 * 24 * 3600.0
DEFAULT_TIMEOUT = 2.0


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


class StoreErrors:
    """A reusable ``with`` guard: a backend's errors become :class:`StoreError` (answered 503).

    ``on_error`` runs first, e.g. to drop a connection that may be stuck in a bad state, so
    the next operation opens a fresh one and a store that recovers serves again at once.
    """

    __slots__ = ("_kind", "_on_error", "_store")

    def __init__(
        self,
        kind: type[Exception] | tuple[type[Exception], ...],
        store: str,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self._kind = kind
        self._store = store
        self._on_error = on_error

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, self._kind):
            if self._on_error is not None:
                self._on_error()
            raise StoreError(f"{self._store} failed: {error}") from error


class Abandoned:
    """Claims whose request gave up on a failing store, released once the store answers.

    A claim sent to a store that then times out may still be applied later (a paused Redis
    runs the queued command when it resumes): without this, its owner has answered 503 and
    moved on, and every retry would find the key held until the lease ends.
    """

    __slots__ = ("_items", "_lock")

    def __init__(self) -> None:
        self._items: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def guarding(self, key: str, owner: str) -> _Guarding:
        """Remember ``(key, owner)`` if the operation inside fails with :class:`StoreError`."""
        return _Guarding(self, key, owner)

    def remember(self, key: str, owner: str) -> None:
        """Keep ``(key, owner)`` for the next :meth:`release`."""
        if owner:  # a claim finished in the same step ("") has nothing to release
            with self._lock:
                self._items.append((key, owner))

    def release(self, release: Callable[[str, str], None]) -> None:
        """Release every abandoned claim; those the store still refuses stay for next time."""
        with self._lock:
            items, self._items = self._items, []
        for index, (key, owner) in enumerate(items):
            try:
                release(key, owner)
            except StoreError:
                with self._lock:
                    self._items.extend(items[index:])
                return


class _Guarding:
    """:meth:`Abandoned.guarding`: a class, as it wraps every claim (cheaper than a generator)."""

    __slots__ = ("_abandoned", "_key", "_owner")

    def __init__(self, abandoned: Abandoned, key: str, owner: str) -> None:
        self._abandoned = abandoned
        self._key = key
        self._owner = owner

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, StoreError):
            self._abandoned.remember(self._key, self._owner)


class Housekeeping:
    """One daemon thread per process calling :meth:`Store.maintain` on every watched store.

    Started lazily by the first request a process serves, so each gunicorn worker (forked
    after the app is loaded, or not) runs its own, and a fork never inherits a dead thread.
    Stores are held weakly: a store nobody uses any more is dropped.
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._stores: weakref.WeakSet[Store] = weakref.WeakSet()
        self._started = PerProcess(self._start)

    def watch(self, store: Store) -> None:
        """Maintain ``store`` from now on, starting this process's thread if needed."""
        self._stores.add(store)
        self._started()

    def _start(self) -> None:
        threading.Thread(target=self._run, name="webhook_kit-housekeeping", daemon=True).start()

    def _run(self) -> None:
        failing: set[int] = set()
        while True:
            time.sleep(self.interval)
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


def names_address(form: str, address: str) -> bool:
    """Whether a callback kept in the ledger (its form fields) was sent to or from ``address``."""
    fields = dict(parse_qsl(form, keep_blank_values=True))
    return address in (fields.get("To"), fields.get("From"))


def lost_claim(row: Sequence[Any] | None) -> Claim:
    """Why a claim was not won, from a SQL store's ``done, answer, owner`` row of ``wk_claims``:
    a finished claim (with its answer) or a live one (or none left: busy, no owner)."""
    if row is None:
        return Claim(Outcome.BUSY)
    if row[0]:
        return Claim(Outcome.DONE, answer=bytes(row[1] or b""))
    return Claim(Outcome.BUSY, row[2])


def marked_times(status: str | None, final: bool, at: float) -> tuple[float | None, float | None]:
    """The ``final_at`` and ``sent_at`` a save or callback at ``at`` offers to the SQL stores:
    ``at`` when the status is final, resp. ``sent``, else None."""
    return (at if final else None), (at if status == "sent" else None)


#: The ``wk_messages`` columns that describe a message (not its status or times), which the
#: SQL stores merge alike.
DESCRIPTIVE_COLUMNS = ("direction", "from_addr", "to_addr", "segments", "media", "price",
                       "price_unit", "ref", "reply_to")  # fmt: skip


def query_equalities(query: Query) -> list[tuple[str, object]]:
    """The ``wk_messages`` column and value of each equality filter ``query`` sets (SQL stores)."""
    filters = (
        ("ref", query.ref),
        ("to_addr", query.to),
        ("from_addr", query.from_),
        ("direction", query.direction),
    )
    return [(column, value) for column, value in filters if value is not None]


def fact_columns(facts: MessageFacts) -> dict[str, object]:
    """The ``wk_messages`` columns of ``facts`` the SQL stores share, with its timestamp rules.

    ``final_at`` and ``sent_at`` are the save's time when it is final or sent, and ``created``
    falls back to it. Each store adds the update time, ``body`` and ``redacted`` its own way.
    """
    final_at, sent_at = marked_times(facts.status, facts.final, facts.at)
    return {
        "sid": facts.message_sid,
        "status": facts.status,
        "rank": facts.rank,
        "error_code": facts.error_code,
        "final_at": final_at,
        "created": facts.created_at if facts.created_at is not None else facts.at,
        "sent_at": sent_at,
        "direction": facts.direction,
        "from_addr": facts.from_,
        "to_addr": facts.to,
        "segments": facts.num_segments,
        "media": facts.num_media,
        "price": facts.price,
        "price_unit": facts.price_unit,
        "ref": facts.ref,
        "reply_to": facts.in_reply_to,
    }


#: The ``wk_messages`` columns :func:`record_from_row` reads, in its order.
RECORD_COLUMNS = (
    "sid", "status", "error_code", "updated", "final_at", "direction", "from_addr", "to_addr",
    "body", "redacted", "segments", "media", "created", "sent_at", "price", "price_unit", "ref",
    "reply_to",
)  # fmt: skip


def record_from_row(row: Sequence[Any], history: tuple[LedgerEvent, ...]) -> MessageRecord:
    """The record of a SQL store's ``wk_messages`` row, its columns in :data:`RECORD_COLUMNS`."""
    (sid, status, error_code, updated, final_at, direction, from_addr, to_addr, body, redacted,
     segments, media, created, sent_at, price, price_unit, ref, reply_to) = row  # fmt: skip
    return MessageRecord(
        sid,
        MessageStatus(status) if status else None,
        error_code,
        timestamp(updated),
        optional_timestamp(final_at),
        history,
        direction=Direction(direction) if direction else None,
        from_=from_addr,
        to=to_addr,
        body=body,
        redacted=bool(redacted),
        num_segments=segments,
        num_media=media,
        created_at=optional_timestamp(created),
        sent_at=optional_timestamp(sent_at),
        price=price,
        price_unit=price_unit,
        ref=ref,
        in_reply_to=reply_to,
    )


def sqlite_path(url: str) -> str:
    """The file a SQLite store URL names: sqlite:///relative.db (to the working directory)
    and sqlite:////absolute/path.db, as SQLAlchemy spells them."""
    path = url[len("sqlite://") :].partition("?")[0]
    if not path.startswith("/") or path == "/":
        raise ConfigurationError(f"SQLite store URL {url!r} needs a file: sqlite:///webhook_kit.db")
    return path[1:]
