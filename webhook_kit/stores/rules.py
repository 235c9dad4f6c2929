"""The store's rules, each declared once: every backend runs them from here.

A message's ledger record is a row of :data:`COLUMNS`; each column says how a stored value
and a new one combine (:class:`Merge`). From that one declaration come the Python merge the
memory store runs (:func:`merge`), the ``ON CONFLICT DO UPDATE SET`` clause both SQL stores
run (:func:`merge_sql`, neutral SQL that SQLite and PostgreSQL read alike) and the Lua the
Redis store's scripts run (:data:`LUA_MERGE`). Time boundaries (:func:`lapsed`), who may
take or complete a claim (:func:`claimable`, :func:`holds`), the retention horizon, the job
queue's due order and the history order are here too, so that a rule changed here changes
on every backend (``tests/test_store_differential.py`` checks that they agree).
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from ..records import MessageFacts, StatusEntry


class Merge(Enum):
    """How a column combines the stored value (old) with a new one."""

    #: The row's key.
    KEY = "key"
    #: Moves with the status: the new value only if its status is further on (status, error
    #: code): a higher rank; for an equal rank, a status that sorts after; for the same
    #: status, a higher error code (none is lowest). Whatever the order, the same one wins.
    RANKED = "ranked"
    #: The highest value (rank, last update).
    HIGHEST = "highest"
    #: The earliest time given (created, sent, final): converges whatever the order.
    EARLIEST = "earliest"
    #: Once true, true for good (redacted).
    STICKY = "sticky"
    #: Dropped for good once the record is redacted; otherwise as :attr:`GIVEN`.
    REDACTABLE = "redactable"
    #: A value given (not NULL, an empty string included) replaces the other side's.
    GIVEN = "given"


#: The columns of a ledger record, in row order: (SQL column, Redis hash field, merge rule).
COLUMNS: Final[tuple[tuple[str, str, Merge], ...]] = (
    ("sid", "sid", Merge.KEY),
    ("status", "status", Merge.RANKED),
    ("rank", "rank", Merge.HIGHEST),
    ("error_code", "error_code", Merge.RANKED),
    ("updated", "updated", Merge.HIGHEST),
    ("final_at", "final_at", Merge.EARLIEST),
    ("created", "created", Merge.EARLIEST),
    ("sent_at", "sent_at", Merge.EARLIEST),
    ("direction", "direction", Merge.GIVEN),
    ("from_addr", "from", Merge.GIVEN),
    ("to_addr", "to", Merge.GIVEN),
    ("body", "body", Merge.REDACTABLE),
    ("redacted", "redacted", Merge.STICKY),
    ("segments", "segments", Merge.GIVEN),
    ("media", "media", Merge.GIVEN),
    ("price", "price", Merge.GIVEN),
    ("price_unit", "price_unit", Merge.GIVEN),
    ("ref", "ref", Merge.GIVEN),
    ("reply_to", "reply_to", Merge.GIVEN),
)
NAMES: Final = tuple(name for name, _, _ in COLUMNS)
_RANK = NAMES.index("rank")
_STATUS = NAMES.index("status")
_ERROR = NAMES.index("error_code")


def _progress(row: Row) -> tuple[object, ...]:
    """How far on a row's status is: :attr:`Merge.RANKED` keeps the higher."""
    code = row[_ERROR]
    return (row[_RANK], row[_STATUS] or "", -1 if code is None else code)


_REDACTED = NAMES.index("redacted")

Row = tuple[object, ...]


def facts_row(facts: MessageFacts) -> Row:
    """The row ``facts`` offer: a final status marks the final time, ``sent`` the sent time,
    and the creation time is the one given, else when the facts were learnt."""
    at = facts.at
    redacted = facts.redact
    return (
        facts.message_sid,
        facts.status,
        facts.rank,
        facts.error_code,
        at,
        at if facts.final else None,
        facts.created_at if facts.created_at is not None else at,
        at if facts.status == "sent" else None,
        facts.direction,
        facts.from_,
        facts.to,
        None if redacted else facts.body,
        redacted,
        facts.num_segments,
        facts.num_media,
        facts.price,
        facts.price_unit,
        facts.ref,
        facts.in_reply_to,
    )


def entry_row(entry: StatusEntry) -> Row:
    """The row a status callback offers: its status, and its arrival as every time."""
    at = entry.received_at
    final = at if entry.final else None
    sent = at if entry.status == "sent" else None
    return (entry.message_sid, entry.status, entry.rank, entry.error_code, at, final, at, sent,
            None, None, None, None, False, None, None, None, None, None, None)  # fmt: skip


def merge(old: Row | None, new: Row, *, given_wins: bool = True) -> Row:
    """``new`` merged into ``old`` (None: no record yet). ``given_wins=False`` keeps the
    stored descriptive values where both have one (a send's pending record absorbed into its
    SID's record: what the SID's record says is newer)."""
    if old is None:
        return new
    ranked = _progress(new) > _progress(old)
    redacted = bool(old[_REDACTED] or new[_REDACTED])
    out: list[object] = []
    for index, (_, _, rule) in enumerate(COLUMNS):
        a, b = old[index], new[index]
        if rule is Merge.KEY:
            out.append(a)
        elif rule is Merge.RANKED:
            out.append(b if ranked else a)
        elif rule is Merge.HIGHEST:
            out.append(b if a is None or (b is not None and b > a) else a)  # type: ignore[operator]
        elif rule is Merge.EARLIEST:
            out.append(b if a is None or (b is not None and b < a) else a)  # type: ignore[operator]
        elif rule is Merge.STICKY:
            out.append(redacted)
        elif rule is Merge.REDACTABLE and redacted:
            out.append(None)
        else:  # GIVEN, REDACTABLE
            first, second = (b, a) if given_wins else (a, b)
            out.append(first if first is not None else second)
    return tuple(out)


def merge_sql(
    old: str = "m", new: str = "excluded", *, given_wins: bool = True, binary: str = ""
) -> str:
    """The ``SET`` list of an upsert merging row ``new`` into ``old``: plain SQL (CASE and
    coalesce, no ``max``/``greatest``, whose NULL handling differs) that SQLite and
    PostgreSQL read alike; ``binary`` is the dialect's code-point collation clause (SQLite
    compares so already). Every expression reads the old row."""
    sets = []
    redacted = f"({old}.redacted OR {new}.redacted)"
    new_status, old_status = (
        f"coalesce({new}.status, ''){binary}",
        f"coalesce({old}.status, ''){binary}",
    )
    further = (
        f"{new}.rank > {old}.rank OR ({new}.rank = {old}.rank AND ({new_status} > {old_status}"
        f" OR ({new_status} = {old_status}"
        f" AND coalesce({new}.error_code, -1) > coalesce({old}.error_code, -1))))"
    )
    for name, _, rule in COLUMNS:
        a, b = f"{old}.{name}", f"{new}.{name}"
        first, second = (b, a) if given_wins else (a, b)
        expression = {
            Merge.KEY: None,
            Merge.RANKED: f"CASE WHEN {further} THEN {b} ELSE {a} END",
            Merge.HIGHEST: f"CASE WHEN {a} IS NULL OR {b} > {a} THEN {b} ELSE {a} END",
            Merge.EARLIEST: f"CASE WHEN {a} IS NULL OR {b} < {a} THEN {b} ELSE {a} END",
            Merge.STICKY: redacted,
            Merge.REDACTABLE: (
                f"CASE WHEN {redacted} THEN NULL ELSE coalesce({first}, {second}) END"
            ),
            Merge.GIVEN: f"coalesce({first}, {second})",
        }[rule]
        if expression is not None:
            sets.append(f"{name} = {expression}")
    return ",\n    ".join(sets)


def _lua_merge() -> str:
    """Lua ``merge(key, new, given_wins)``: ``new`` (hash field -> string, absent = NULL)
    merged into the hash ``key`` by the same rules; returns the merged table and whether the
    hash existed. Numbers are compared as numbers; values are kept as given (exact).
    ``read(key)`` and ``merged(old, exists, new, given_wins)`` are its two halves, for a
    script that merges several rows before it writes any."""
    fields = ", ".join(f"'{field}'" for _, field, _ in COLUMNS[1:])
    kinds = ", ".join(f"['{field}'] = '{rule.value}'" for _, field, rule in COLUMNS[1:])
    return f"""
local FIELDS = {{{fields}}}
local KINDS = {{{kinds}}}
local function read(key)
    local stored = redis.call('HMGET', key, unpack(FIELDS))
    local old, exists = {{}}, false
    for i, field in ipairs(FIELDS) do
        if stored[i] then
            old[field] = stored[i]
            exists = true
        end
    end
    return old, exists
end
local function merged(old, exists, new, given_wins)
    if not exists then
        return new
    end
    local new_rank, old_rank = tonumber(new['rank']), tonumber(old['rank'])
    local new_status, old_status = new['status'] or '', old['status'] or ''
    local ranked = new_rank > old_rank or (new_rank == old_rank and (new_status > old_status
        or (new_status == old_status
            and (tonumber(new['error_code'] or '') or -1)
                > (tonumber(old['error_code'] or '') or -1))))
    local redacted = old['redacted'] == '1' or new['redacted'] == '1'
    local out = {{}}
    for _, field in ipairs(FIELDS) do
        local kind, a, b = KINDS[field], old[field], new[field]
        if kind == 'ranked' then
            if ranked then out[field] = b else out[field] = a end
        elseif kind == 'highest' then
            if a == nil or (b ~= nil and tonumber(b) > tonumber(a)) then
                out[field] = b else out[field] = a end
        elseif kind == 'earliest' then
            if a == nil or (b ~= nil and tonumber(b) < tonumber(a)) then
                out[field] = b else out[field] = a end
        elseif kind == 'sticky' then
            if redacted then out[field] = '1' else out[field] = '0' end
        elseif kind == 'redactable' and redacted then
            out[field] = nil
        else
            local first, second = b, a
            if not given_wins then first, second = a, b end
            if first ~= nil then out[field] = first else out[field] = second end
        end
    end
    return out
end
local function merge(key, new, given_wins)
    local old, exists = read(key)
    return merged(old, exists, new, given_wins), exists
end
"""


LUA_MERGE: Final = _lua_merge()


def redis_pairs(row: Row) -> list[object]:
    """A row as the Redis scripts take it: field and value of each column after the key that
    is not NULL (so an empty string stays one), times as exact reprs, flags as "1"/"0"."""
    pairs: list[object] = []
    for value, (_, field, rule) in zip(row[1:], COLUMNS[1:], strict=True):
        if value is None:
            continue
        if rule is Merge.STICKY:
            pairs += [field, "1" if value else "0"]
        else:
            pairs += [field, repr(value) if isinstance(value, float) else value]
    return pairs


# -- time ------------------------------------------------------------------------------------


def lapsed(ends: float, now: float) -> bool:
    """A lease, a retention or a TTL that ends at ``ends`` is over once ``now`` reaches it
    (claims, job leases, conversations, finished keys): the one boundary every store uses."""
    return ends <= now


#: :func:`lapsed` as SQL (``{ends}`` and ``{now}`` are expressions).
LAPSED_SQL: Final = "{ends} <= {now}"


def ledger_horizon(now: float, retention: float) -> float:
    """A record whose last update is at or before this time has outlived its retention."""
    return now - retention


# -- claims ----------------------------------------------------------------------------------


def claimable(ends: float, done: bool, owner: str, now: float, dead: str) -> bool:
    """Whether a new request takes a stored claim: it lapsed (a dead worker's lease, a
    finished key past its retention), or it is the unfinished claim of ``dead``, an owner
    known dead (never ``""``)."""
    return lapsed(ends, now) or (not done and dead != "" and owner == dead)


def claimable_sql(*, ends: str, done: str, owner: str, now: str, dead: str) -> str:
    """:func:`claimable` as SQL (each argument an expression)."""
    lapsed_ = LAPSED_SQL.format(ends=ends, now=now)
    return f"({lapsed_} OR (NOT {done} AND {dead} <> '' AND {owner} = {dead}))"


def holds(ends: float, done: bool, owner: str, now: float, me: str) -> bool:
    """Whether ``me`` still holds a claim: its own, unfinished, lease not over. Only the
    holder completes a claim."""
    return not done and owner == me and not lapsed(ends, now)


def holds_sql(*, ends: str, done: str, owner: str, now: str, me: str) -> str:
    """:func:`holds` as SQL (each argument an expression)."""
    return f"(NOT {done} AND {owner} = {me} AND NOT {LAPSED_SQL.format(ends=ends, now=now)})"


#: :func:`lapsed`, :func:`claimable` and :func:`holds` in Lua, for the Redis scripts (``now``
#: is a string argument; ``ends`` a number).
LUA_CLAIM_RULES: Final = """
local function lapsed(ends, now)
    return ends <= tonumber(now)
end
local function claimable(ends, done, owner, now, dead)
    return lapsed(ends, now) or (not done and dead ~= '' and owner == dead)
end
local function holds(ends, done, owner, now, me)
    return not done and owner == me and not lapsed(ends, now)
end
"""


# -- the job queue ---------------------------------------------------------------------------

#: Whether a job is due at ``{now}``: pending with its ``run_at`` reached, or running with its
#: lease over (its runner died, see :func:`lapsed`). Dead jobs never are.
JOB_DUE_SQL: Final = (
    "((state = 'pending' AND run_at <= {now}) OR (state = 'running' AND expires <= {now}))"
)
#: Due jobs are taken oldest first (ties by key), and listed in the same order.
JOB_ORDER_SQL: Final = "created, key"


def job_due(state: str, run_at: float, expires: float, now: float) -> bool:
    """:data:`JOB_DUE_SQL` in Python."""
    if state == "pending":
        return run_at <= now
    return state == "running" and lapsed(expires, now)


def job_order(created: float, key: str) -> tuple[float, str]:
    """:data:`JOB_ORDER_SQL` in Python."""
    return (created, key)


# -- ordering --------------------------------------------------------------------------------

#: A message's history: by arrival, ties by callback key (code points).
HISTORY_ORDER_SQL: Final = "received, key"


def history_order(received: float, key: str) -> tuple[float, str]:
    """:data:`HISTORY_ORDER_SQL` in Python."""
    return (received, key)


#: Due conversations: earliest due first, ties by id.
CONVERSATION_ORDER_SQL: Final = "due, id"
