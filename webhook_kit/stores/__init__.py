"""Where claims and the delivery ledger live, chosen by URL.

``memory://`` keeps everything in the process (tests), ``sqlite:///path`` is the embedded
default (one file, WAL, shared by every worker process on a host), and ``redis://host/db``
lets many hosts behave as one. All three pass one behavioural test suite.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit

from ..errors import ConfigurationError, StoreError
from ..ledger import Applied, MessageRecord, StatusEntry


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

    def claim(self, key: str, lease: float) -> Claim:
        """Take ``key`` for ``lease`` seconds, unless a live or finished claim holds it."""

    def complete(self, key: str, owner: str, answer: bytes) -> None:
        """Mark an owned claim finished and keep its answer for the retention period."""

    def release(self, key: str, owner: str) -> None:
        """Give up an owned claim so that a retry can run."""

    def record_status(self, entry: StatusEntry) -> Applied:
        """Add a callback to its message's history and move the status forward, durably."""

    def get_message(self, message_sid: str) -> MessageRecord | None:
        """A message's ledger record, or None."""

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


@contextmanager
def store_errors(kind: type[Exception], store: str) -> Iterator[None]:
    """Turn a backend's errors into :class:`StoreError`, which the request path answers 503."""
    try:
        yield
    except kind as error:
        raise StoreError(f"{store} failed: {error}") from error


def _sqlite_path(path: str, url: str) -> str:
    # sqlite:///relative.db and sqlite:////absolute/path.db, as SQLAlchemy spells them.
    if not path.startswith("/") or path == "/":
        raise ConfigurationError(f"SQLite store URL {url!r} needs a file: sqlite:///webhook_kit.db")
    return path[1:]
