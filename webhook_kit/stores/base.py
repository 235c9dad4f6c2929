"""What every store engine shares: the records they keep, their defaults, and helpers.

The engines (``memory``, ``sqlite``, ``redis``, ``postgres``) import this module, never the
package: ``webhook_kit.stores`` opens them by URL (:func:`~webhook_kit.stores.open_store`),
so importing the package from an engine would make an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..errors import StoreError
from ..once import Abandoned, Claim, ConversationWrite, Outcome, new_owner
from ..records import (
    Direction,
    LedgerEvent,
    MessageRecord,
    Query,
    optional_timestamp,
    timestamp,
)
from ..status import MessageStatus

__all__ = [
    "DEFAULT_LEDGER_RETENTION",
    "DEFAULT_RETENTION",
    "DEFAULT_TIMEOUT",
    "RECORD_COLUMNS",
    "Abandoned",
    "Applied",
    "Claim",
    "ConversationWrite",
    "OptOut",
    "Outcome",
    "StoreErrors",
    "lost_claim",
    "masked_url",
    "names_address",
    "new_owner",
    "query_equalities",
    "record_from_row",
]

DEFAULT_RETENTION = 24 * 3600.0
DEFAULT_LEDGER_RETENTION = 7 * 24 * 3600.0
DEFAULT_TIMEOUT = 2.0


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


def masked_url(url: str) -> str:
    """``url`` with any password shown as ``***``: store URLs end up in logs, error messages
    and the start-up banner."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # unparseable: hide everything before the host
        scheme, slashes, rest = url.partition("//")
        return scheme + slashes + ("***@" + rest.rpartition("@")[2] if "@" in rest else rest)
    if password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


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


def query_equalities(query: Query) -> list[tuple[str, object]]:
    """The ``wk_messages`` column and value of each equality filter ``query`` sets (SQL stores)."""
    filters = (
        ("ref", query.ref),
        ("to_addr", query.to),
        ("from_addr", query.from_),
        ("direction", query.direction),
    )
    return [(column, value) for column, value in filters if value is not None]


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
