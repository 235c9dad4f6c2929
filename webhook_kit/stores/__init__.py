"""Where claims and the delivery ledger live, chosen by URL.

``memory://`` keeps everything in the process (tests), ``sqlite:///path`` is the embedded
default (one file, WAL, shared by every worker process on a host), and ``redis://host/db``
lets many hosts behave as one. All three pass one behavioural test suite.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit

from ..errors import ConfigurationError, StoreError
from ..ledger import Applied, MessageFacts, MessageRecord, Query, StatusEntry


class _Owners:
    """Claim owner tokens, unique across processes and hosts, without a syscall per claim."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """A new random prefix: called again in every forked process (gunicorn workers)."""
        self._prefix = os.urandom(6).hex() + "-"
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter)}"


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
    #: The owner token to complete or release a CLAIMED key.
    owner: str = ""
    #: The stored answer of a DONE key.
    answer: bytes = b""


class Store(Protocol):
    """The operations the request path needs; each one is atomic across processes."""

    def claim(self, key: str, lease: float, message: MessageFacts | None = None) -> Claim:
        """Take ``key`` for ``lease`` seconds, unless a live or finished claim holds it.

        When the claim is won, ``message`` (an inbound message) is saved in the same step,
        as :meth:`save_message` would.
        """

    def complete(self, key: str, owner: str, answer: bytes) -> None:
        """Mark an owned claim finished and keep its answer for the retention period."""

    def release(self, key: str, owner: str) -> None:
        """Give up an owned claim so that a retry can run."""

    def record_status(self, entry: StatusEntry, lease: float | None = None) -> Applied:
        """Claim ``entry.key`` and, if won, record the callback: one atomic, durable step.

        With ``lease`` the claim stays pending for that long, for handlers to run before
        :meth:`complete` or :meth:`release`; without, nothing runs after the record, so the
        claim is finished in the same step. A lost claim records nothing.
        """

    def get_message(self, message_sid: str) -> MessageRecord | None:
        """A message's ledger record, or None."""

    def save_message(self, facts: MessageFacts, alias: str | None = None) -> None:
        """Merge ``facts`` into the record of ``facts.message_sid`` (created if missing).

        With ``alias``, the record kept under that key (a send written before its SID was
        known) is first merged into it and removed, in the same atomic step.
        ``record_status`` does the same with ``entry.correlation``.
        """

    def find_messages(self, query: Query) -> list[MessageRecord]:
        """Up to ``query.limit`` records matching ``query``, newest ``created_at`` first
        (ties by SID, descending), without their history."""

    def close(self) -> None:
        """Release connections; the store reopens them if used again."""


DEFAULT_RETENTION = 24 * 3600.0
DEFAULT_LEDGER_RETENTION = 7 * 24 * 3600.0


def open_store(
    url: str,
    *,
    retention: float = DEFAULT_RETENTION,
    ledger_retention: float = DEFAULT_LEDGER_RETENTION,
) -> Store:
    """Open the store a URL names.

    ``retention`` bounds how long finished idempotency keys are remembered and
    ``ledger_retention`` how long a message's record outlives its last callback, so memory
    and disk stay bounded.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore(retention=retention, ledger_retention=ledger_retention)
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        path, _, query = url[len("sqlite://") :].partition("?")
        options = dict(parse_qsl(query))
        return SQLiteStore(
            _sqlite_path(path, url),
            synchronous=options.get("synchronous", "normal"),
            retention=retention,
            ledger_retention=ledger_retention,
        )
    if scheme in {"redis", "rediss", "unix"}:
        from .redis import RedisStore

        return RedisStore(url, retention=retention, ledger_retention=ledger_retention)
    raise ConfigurationError(
        f"unknown store URL {url!r}: use memory://, sqlite:///path/to/file.db or "
        "redis://host:port/db"
    )


class StoreErrors:
    """A reusable ``with`` guard: a backend's errors become :class:`StoreError` (answered 503)."""

    __slots__ = ("_kind", "_store")

    def __init__(self, kind: type[Exception], store: str) -> None:
        self._kind = kind
        self._store = store

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, self._kind):
            raise StoreError(f"{self._store} failed: {error}") from error


def _sqlite_path(path: str, url: str) -> str:
    # sqlite:///relative.db and sqlite:////absolute/path.db, as SQLAlchemy spells them.
    if not path.startswith("/") or path == "/":
        raise ConfigurationError(f"SQLite store URL {url!r} needs a file: sqlite:///webhook_kit.db")
    return path[1:]
