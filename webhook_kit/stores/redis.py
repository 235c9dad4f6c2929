"""A store in Redis, so that many hosts behave as one.

Claims are ``SET NX PX`` (the lease expires by itself if a worker dies); completing,
releasing, taking over a dead owner's claim, and claiming-and-recording a callback are Lua
scripts, atomic on the server and one round trip each. Every wait is bounded by the store's
``timeout`` (connect and reply), and a timed-out command is not retried: a silent Redis costs
a request one timeout, then 503. Keys and ledger records expire by Redis's own TTLs, so
:meth:`RedisStore.maintain` only releases abandoned claims and drops the entries of expired
records from the creation-time index that :meth:`RedisStore.find_messages` walks.
Durability is Redis's own: with ``appendonly yes`` and ``appendfsync always`` an
acknowledged callback survives power loss, with ``everysec`` at most a second of them can be
lost.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

from ..errors import ConfigurationError
from ..jobs import JOB_COLUMNS, Job, JobState, job_from_row, job_row
from ..process import process
from ..records import (
    Direction,
    EventApplied,
    EventWrite,
    LedgerEvent,
    MessageFacts,
    MessageRecord,
    Query,
    StatusEntry,
    optional_timestamp,
    timestamp,
)
from ..status import MessageStatus
from .base import (
    DEFAULT_LEDGER_RETENTION,
    DEFAULT_RETENTION,
    DEFAULT_TIMEOUT,
    Abandoned,
    Applied,
    Claim,
    ConversationWrite,
    OptOut,
    Outcome,
    StoreErrors,
    masked_url,
    names_address,
    new_owner,
)
from .rules import (
    LUA_CLAIM_RULES,
    LUA_MERGE,
    Row,
    entry_row,
    facts_row,
    history_order,
    job_order,
    lapsed,
    ledger_horizon,
    redis_pairs,
)

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.connection import ConnectionPool
    from redis.exceptions import NoScriptError
    from redis.retry import Retry
except ImportError as error:  # pragma: no cover - exercised without the extra installed
    raise ConfigurationError(
        "the Redis store needs redis-py: pip install 'webhook_kit[redis]'"
    ) from error

_PENDING, _DONE = b"P", b"D"

# Claims and conversations carry their own end (the store's clock, as in the SQL stores):
# a claim is "<P|D><expires>|<owner|answer>", a conversation "<expires>|<data>". A script
# compares the end with the caller's ``now`` (see rules.lapsed), so expiry follows the one
# rule whatever the server's clock; Redis drops the key itself at that time (PXAT).
_LUA_CLAIMS = (
    LUA_CLAIM_RULES
    + """
local function ends(value)
    local bar = string.find(value, '|', 1, true)
    local expires = bar and tonumber(string.sub(value, 2, bar - 1))
    if not expires then  -- written before ends were kept: it ends with its own TTL
        return math.huge, string.sub(value, 2)
    end
    return expires, string.sub(value, bar + 1)
end
local function held(key, owner, now)
    local current = redis.call('GET', key)
    if not current then return false end
    local expires, holder = ends(current)
    return holds(expires, string.sub(current, 1, 1) ~= 'P', holder, now, owner)
end
local function pxat(seconds)
    return string.format('%.0f', math.ceil(tonumber(seconds) * 1000))
end
"""
)
# take: set the claim key if free, lapsed, or unfinished and held by the dead owner ``dead``;
# returns false when taken, else the current value.
_LUA_TAKE = """
local function take(key, state, expires, holder, now, dead)
    local current = redis.call('GET', key)
    if current then
        local ends_at, owner = ends(current)
        if not claimable(ends_at, string.sub(current, 1, 1) ~= 'P', owner, now, dead) then
            return current
        end
    end
    redis.call('SET', key, state .. expires .. '|' .. holder, 'PXAT', pxat(expires))
    return false
end
"""
# Finish a claim (KEYS[1]) owned by ARGV[1] and not lapsed at ARGV[10]; then, if ARGV[4]
# names a conversation, save it (KEYS[2], ARGV[5] == '1', until ARGV[7]) or delete it,
# release its lock (KEYS[3]) and set its due time (KEYS[4]); then add the jobs: ARGV[11] is
# the hash prefix, ARGV[12] the number n of columns (0 when there are no jobs), the next n
# their names, and the rest the jobs' values, n per job, each job waiting for its run_at in
# KEYS[5]. ARGV[2] is the answer, ARGV[3] when the finished key expires.
_COMPLETE = (
    _LUA_CLAIMS
    + """
local now = ARGV[10]
if not held(KEYS[1], ARGV[1], now) then
    return 0
end
redis.call('SET', KEYS[1], 'D' .. ARGV[3] .. '|' .. ARGV[2], 'PXAT', pxat(ARGV[3]))
if ARGV[4] ~= '' then
    if ARGV[5] == '1' then
        redis.call('SET', KEYS[2], ARGV[7] .. '|' .. ARGV[6], 'PXAT', pxat(ARGV[7]))
    else
        redis.call('DEL', KEYS[2])
    end
    if held(KEYS[3], ARGV[8], now) then
        redis.call('DEL', KEYS[3])
    end
    if ARGV[5] == '1' and ARGV[9] ~= '' then
        redis.call('ZADD', KEYS[4], ARGV[9], ARGV[4])
    else
        redis.call('ZREM', KEYS[4], ARGV[4])
    end
end
local n = tonumber(ARGV[12])
local run_at
for c = 1, n do
    if ARGV[12 + c] == 'run_at' then run_at = c end
end
local i = 13 + n
while i <= #ARGV do
    local name = ARGV[11] .. ARGV[i]
    if redis.call('EXISTS', name) == 0 then
        for c = 1, n do
            redis.call('HSET', name, ARGV[12 + c], ARGV[i + c - 1])
        end
        redis.call('ZADD', KEYS[5], ARGV[i + run_at - 1], ARGV[i])
    end
    i = i + n
end
return 1
"""
)
# KEYS: claim. ARGV: owner. An unfinished claim only: a finished one keeps its answer.
_RELEASE = (
    _LUA_CLAIMS
    + """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, 1) == 'P' and select(2, ends(current)) == ARGV[1] then
    redis.call('DEL', KEYS[1])
end
"""
)
# KEYS: claim. ARGV: owner, expires, now, dead owner ('' for none).
# Returns 0 when the claim was won, else the current claim value.
_CLAIM = (
    _LUA_CLAIMS + _LUA_TAKE + "return take(KEYS[1], 'P', ARGV[2], ARGV[1], ARGV[3], ARGV[4]) or 0"
)
# The ledger, by the declared rules (rules.LUA_MERGE). write: merge the row ``new`` (hash
# field -> value) into the hash ``key`` and index its creation time; the hash and its
# ``extra`` keys (history, event markers) are kept until ``keep`` (the store's clock plus the
# ledger retention: at least as long as rules.ledger_horizon keeps them; maintain(full=True)
# removes what that rule says has expired).
# absorb: merge the hash of a send kept under its correlation id into the SID's, and drop it.
_LUA_LEDGER = (
    _LUA_CLAIMS
    + LUA_MERGE
    + """
local function store(key, index, sid, out, existed, keep, extra)
    local fields, gone = {}, {}
    for _, field in ipairs(FIELDS) do
        if out[field] ~= nil then
            fields[#fields + 1] = field
            fields[#fields + 1] = out[field]
        elseif existed then
            gone[#gone + 1] = field
        end
    end
    redis.call('HSET', key, unpack(fields))
    if #gone > 0 then
        redis.call('HDEL', key, unpack(gone))
    end
    redis.call('ZADD', index, out['created'], sid)
    local until_ms = pxat(keep)
    redis.call('PEXPIREAT', key, until_ms)
    for _, name in ipairs(extra) do
        redis.call('PEXPIREAT', name, until_ms)
    end
    return out['status'] or ''
end
local function write(key, index, sid, new, given_wins, keep, extra)
    local out, existed = merge(key, new, given_wins)
    return store(key, index, sid, out, existed, keep, extra)
end
local function pairs_of(args, first, count)
    local new = {}
    for i = first, count and first + 2 * count - 1 or #args, 2 do
        new[args[i]] = args[i + 1]
    end
    return new
end
local function absorb(key, index, sid, alias_key, alias, keep)
    if alias == '' or alias == sid then return end
    local flat = redis.call('HGETALL', alias_key)
    if #flat == 0 then return end
    write(key, index, sid, pairs_of(flat, 1), false, keep, {})
    redis.call('DEL', alias_key)
    redis.call('ZREM', index, alias)
end
"""
)
# KEYS: claim, event marker, message hash, history list, index, alias message hash.
# ARGV: claim state ('' for no claim: the marker alone dedupes), claim expires, now, owner,
#       dead owner ('' for none), history entry, kept until, sid, alias ('' for
#       none), then the callback's row as field/value pairs.
# Returns {0, current claim value} when the claim is lost, else {1, recorded, status}.
_RECORD = (
    _LUA_LEDGER
    + _LUA_TAKE
    + """
if ARGV[1] ~= '' then
    local current = take(KEYS[1], ARGV[1], ARGV[2], ARGV[4], ARGV[3], ARGV[5])
    if current then
        return {0, current}
    end
end
absorb(KEYS[3], KEYS[5], ARGV[8], KEYS[6], ARGV[9], ARGV[7])
if redis.call('EXISTS', KEYS[2]) == 1 then
    return {1, 0, ARGV[1] ~= '' and redis.call('HGET', KEYS[3], 'status') or ''}
end
redis.call('SET', KEYS[2], '1')
redis.call('RPUSH', KEYS[4], ARGV[6])
local status = write(KEYS[3], KEYS[5], ARGV[8], pairs_of(ARGV, 10), true, ARGV[7],
                     {KEYS[2], KEYS[4]})
return {1, 1, status}
"""
)
# save(K, A): K = message hash, index, alias message hash; A = sid, alias, kept until, then
# the facts' row as field/value pairs.
_LUA_SAVE = """
local function save(K, A)
    absorb(K[1], K[2], A[1], K[3], A[2], A[3])
    write(K[1], K[2], A[1], pairs_of(A, 4), true, A[3], {})
end
"""
_SAVE = _LUA_LEDGER + _LUA_SAVE + "save(KEYS, ARGV)"
# KEYS: claim, then save's, then the opt-out hashes of the senders to screen. ARGV: owner,
# claim expires, now, dead owner, the message's sender, then save's.
# Returns the current claim value when the claim was lost, else 1 if the sender opted out
# of any of those senders (an opt-out record starts with "1|"), else 0.
_CLAIM_SAVE = (
    _LUA_LEDGER
    + _LUA_TAKE
    + _LUA_SAVE
    + """
local current = take(KEYS[1], 'P', ARGV[2], ARGV[1], ARGV[3], ARGV[4])
if current then
    return current
end
save({KEYS[2], KEYS[3], KEYS[4]}, {unpack(ARGV, 6)})
for i = 5, #KEYS do
    local record = redis.call('HGET', KEYS[i], ARGV[5])
    if record and string.sub(record, 1, 2) == '1|' then
        return 1
    end
end
return 0
"""
)
# An Event Streams batch's ledger effects (Store.apply_events), all or nothing: Redis runs a
# script whole, but keeps what it wrote before an error, so every read, merge and check
# (each key's type included) comes first, and only then the writes, which cannot fail.
# KEYS: index, then five per write: its dedupe claim, its status's event marker, message
# hash and history list, and the message hash of its inbound message ('' where none).
# ARGV: now, when a dedupe record ends, kept until (the ledger's); then per write: the
# history entry ('' for no status), its SID, the number of its row's pairs and the pairs,
# then the inbound message's SID ('' for none), the number of its row's pairs and the pairs.
# Returns two numbers a write: new, recorded.
_APPLY_EVENTS = (
    _LUA_LEDGER
    + """
local now, finished, keep = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local function expect(key, kind)
    local found = redis.call('TYPE', key)['ok']
    if found ~= 'none' and found ~= kind then
        error('WRONGTYPE ' .. key .. ' holds a ' .. found .. ', not a ' .. kind)
    end
end
local rows, touched, claims, markers, lists, entries = {}, {}, {}, {}, {}, {}
local function stage(hash, sid, new, extra)
    local row = rows[hash]
    if row == nil then
        expect(hash, 'hash')
        local old, existed = read(hash)
        row = {sid = sid, out = old, existed = existed, extra = {}}
        rows[hash] = row
        touched[#touched + 1] = hash
    end
    row.out = merged(row.out, row.existed or row.merged, new, true)
    row.merged = true
    for _, name in ipairs(extra) do
        row.extra[#row.extra + 1] = name
    end
end
expect(KEYS[1], 'zset')
local answers, taken, marked = {}, {}, {}
local a = 4
for k = 2, #KEYS, 5 do
    local claim, marker, hash, history, facts_hash = unpack(KEYS, k, k + 4)
    local entry, sid, count = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
    local status_row = pairs_of(ARGV, a + 3, count)
    a = a + 3 + 2 * count
    local facts_sid, facts_count = ARGV[a], tonumber(ARGV[a + 1])
    local facts_row = pairs_of(ARGV, a + 2, facts_count)
    a = a + 2 + 2 * facts_count
    local new = false
    if not taken[claim] then  -- a duplicate within the batch is not new
        local current = redis.call('GET', claim)
        new = not current
        if current then
            local ends_at, owner = ends(current)
            new = claimable(ends_at, string.sub(current, 1, 1) ~= 'P', owner, now, '')
        end
    end
    local recorded = false
    if new then
        taken[claim] = true
        claims[#claims + 1] = claim
        if entry ~= '' and not marked[marker] and redis.call('EXISTS', marker) == 0 then
            expect(history, 'list')
            marked[marker] = true
            markers[#markers + 1] = marker
            if not entries[history] then
                entries[history] = {}
                lists[#lists + 1] = history
            end
            table.insert(entries[history], entry)
            stage(hash, sid, status_row, {marker, history})
            recorded = true
        end
        if facts_sid ~= '' then
            stage(facts_hash, facts_sid, facts_row, {})
        end
    end
    answers[#answers + 1] = new and 1 or 0
    answers[#answers + 1] = recorded and 1 or 0
end
for _, claim in ipairs(claims) do
    redis.call('SET', claim, 'D' .. finished .. '|', 'PXAT', pxat(finished))
end
for _, marker in ipairs(markers) do
    redis.call('SET', marker, '1')
end
for _, history in ipairs(lists) do
    redis.call('RPUSH', history, unpack(entries[history]))
end
for _, hash in ipairs(touched) do
    local row = rows[hash]
    store(hash, KEYS[1], row.sid, row.out, row.existed, keep, row.extra)
end
return answers
"""
)
# KEYS: index, then the message hashes of ARGV's SIDs. Drops from the index each SID whose
# hash has expired (checked here, so a record written again meanwhile keeps its entry).
_DROP = """
local dropped = 0
for i = 2, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 0 then
        dropped = dropped + redis.call('ZREM', KEYS[1], ARGV[i - 1])
    end
end
return dropped
"""
# KEYS: conv-due. ARGV: conversation key prefix, due bound, now, limit. The due ids, in
# (due, id) order, of conversations that have not expired; the others leave the set.
_DUE_CONVERSATIONS = """
local found = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])) do
    local value = redis.call('GET', ARGV[1] .. id)
    local bar = value and string.find(value, '|', 1, true)
    local expires = bar and tonumber(string.sub(value, 1, bar - 1)) or math.huge
    if not value or expires <= tonumber(ARGV[3]) then
        redis.call('ZREM', KEYS[1], id)
    elseif #found < tonumber(ARGV[4]) then
        found[#found + 1] = id
    end
end
return found
"""
# KEYS: index. ARGV: key prefix, horizon, SIDs. Removes each record whose last update is at
# or before the horizon (rules.lapsed), with its history and event markers.
_OUTLIVE = """
for i = 3, #ARGV do
    local tag = ARGV[1] .. '{' .. ARGV[i] .. '}'
    local updated = redis.call('HGET', tag .. ':message', 'updated')
    if not updated or tonumber(updated) <= tonumber(ARGV[2]) then
        for _, raw in ipairs(redis.call('LRANGE', tag .. ':history', 0, -1)) do
            if string.sub(raw, 1, 1) == '[' then
                redis.call('DEL', tag .. ':event:' .. cjson.decode(raw)[1])
            end
        end
        redis.call('DEL', tag .. ':message', tag .. ':history')
        redis.call('ZREM', KEYS[1], ARGV[i])
    end
end
"""
_FIND_BATCH = 500
_PRUNE_EVERY = 10.0

# Jobs: a hash per job (JOB_COLUMNS). Pending and running jobs wait in the "due" sorted set
# scored by when they are due (run_at; the lease end while running); a take first moves
# every job due by then into the "ready" set, scored by creation, and leases the first there:
# the oldest due job (rules.JOB_ORDER_SQL: created, then key, as a sorted set orders ties).
# Dead jobs are in the "dead" set scored by creation. ARGV[1] is always the hashes' prefix.
# KEYS: due, dead, ready. ARGV: prefix, now, owner, lease end, job key ('' for the oldest
# due), columns.
_TAKE = """
for _, due in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])) do
    redis.call('ZADD', KEYS[3], redis.call('HGET', ARGV[1] .. due, 'created'), due)
    redis.call('ZREM', KEYS[1], due)
end
local key = ARGV[5]
if key == '' then
    local first = redis.call('ZRANGE', KEYS[3], 0, 0)
    if #first == 0 then return false end
    key = first[1]
elseif not redis.call('ZSCORE', KEYS[3], key) then
    return false
end
local name = ARGV[1] .. key
redis.call('HSET', name, 'state', 'running', 'owner', ARGV[3], 'expires', ARGV[4])
redis.call('HINCRBY', name, 'attempts', 1)
redis.call('ZREM', KEYS[3], key)
redis.call('ZADD', KEYS[1], ARGV[4], key)
return redis.call('HMGET', name, unpack(ARGV, 6))
"""
# KEYS: due, dead, ready. ARGV: prefix, key, owner, new state ('' deletes; 'renew' extends
# the lease to ARGV[5]), run_at or lease end, error.
_FINISH = """
local name = ARGV[1] .. ARGV[2]
local mine = redis.call('HMGET', name, 'owner', 'state')
if mine[1] ~= ARGV[3] or mine[2] ~= 'running' then return 0 end
redis.call('ZREM', KEYS[3], ARGV[2])
if ARGV[4] == 'renew' then
    redis.call('HSET', name, 'expires', ARGV[5])
    redis.call('ZADD', KEYS[1], ARGV[5], ARGV[2])
elseif ARGV[4] == '' then
    redis.call('DEL', name)
    redis.call('ZREM', KEYS[1], ARGV[2])
else
    redis.call('HSET', name, 'state', ARGV[4], 'run_at', ARGV[5], 'error', ARGV[6], 'owner', '')
    if ARGV[4] == 'dead' then
        redis.call('ZREM', KEYS[1], ARGV[2])
        redis.call('ZADD', KEYS[2], redis.call('HGET', name, 'created'), ARGV[2])
    else
        redis.call('ZADD', KEYS[1], ARGV[5], ARGV[2])
    end
end
return 1
"""
# KEYS: due, dead, ready. ARGV: prefix, key, now.
_RETRY = """
local name = ARGV[1] .. ARGV[2]
if redis.call('HGET', name, 'state') ~= 'dead' then return 0 end
redis.call('HSET', name, 'state', 'pending', 'attempts', 0, 'run_at', ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
return 1
"""
# KEYS: the sets that may hold jobs in that state. ARGV: prefix, state.
_PURGE = """
local n = 0
for _, set in ipairs(KEYS) do
    for _, key in ipairs(redis.call('ZRANGE', set, 0, -1)) do
        if redis.call('HGET', ARGV[1] .. key, 'state') == ARGV[2] then
            redis.call('DEL', ARGV[1] .. key)
            redis.call('ZREM', set, key)
            n = n + 1
        end
    end
end
return n
"""


class _Connections:
    """Connections taken from redis-py's pool once and kept, for the scripts' own path.

    The pool polls a connection's socket on every checkout (one more system call per
    command), in case a reply was left unread; here a connection goes back after a whole
    exchange, or disconnected (it reconnects when used again), so none holds a reply.
    """

    __slots__ = ("_forks", "_idle", "_pool")

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._idle: list[redis.Connection] = []
        self._forks = process.forks

    def exchange(self, command: bytes) -> Any:
        """Send ``command`` and read its reply (raised if it is an error)."""
        if self._forks != process.forks:  # forked: the parent's sockets are not ours
            self._idle, self._forks = [], process.forks
        try:
            return self._exchange(command)
        except redis.ConnectionError:  # closed meanwhile (a Redis restart): once more, as
            return self._exchange(command)  # the client's Retry does; never after a timeout

    def _exchange(self, command: bytes) -> Any:
        try:
            connection = self._idle.pop()
        except IndexError:
            connection = self._pool.get_connection()
        try:
            connection.send_packed_command((command,), check_health=False)  # type: ignore[no-untyped-call]
            return connection.read_response()
        except redis.ResponseError:
            raise  # an error reply, read whole
        except BaseException:
            connection.disconnect()  # type: ignore[no-untyped-call]  # no reply left behind
            raise
        finally:
            self._idle.append(connection)


class _Script:
    """A Lua script run with EVALSHA in one exchange, packed here (NOSCRIPT: run by EVAL).

    redis-py's generic command path (pool checkout, retry, metrics and encoder wrappers)
    costs about as much as the round trip itself, on every claim and callback.
    """

    __slots__ = ("_connections", "_sha", "_source")

    def __init__(self, connections: _Connections, source: str) -> None:
        self._connections = connections
        self._source = source.encode()
        self._sha = hashlib.sha1(self._source).hexdigest().encode()

    def __call__(self, *, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return self._connections.exchange(_pack(b"EVALSHA", self._sha, len(keys), *keys, *args))
        except NoScriptError:  # a new or flushed server: EVAL runs it and keeps it
            return self._connections.exchange(_pack(b"EVAL", self._source, len(keys), *keys, *args))


def _pack(*parts: Any) -> bytes:
    """A command in RESP, as redis-py would encode it (str as UTF-8, numbers as their repr)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        out += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(out)


class RedisStore:
    """Every operation is one round trip; connections are pooled and fork-safe."""

    def __init__(
        self,
        url: str,
        *,
        retention: float = DEFAULT_RETENTION,
        ledger_retention: float = DEFAULT_LEDGER_RETENTION,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        url, prefix = _split_prefix(url)
        self.url = url
        self._prefix = prefix
        self._retention = retention
        self._ledger_retention = ledger_retention
        self._clock = clock
        try:
            self._redis = redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                # Reconnect once at once if a pooled connection was closed (a Redis restart);
                # never resend after a timeout, which would double the wait.
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            )
        except ValueError as error:  # an option redis-py cannot read
            raise ConfigurationError(f"Redis store {masked_url(url)!r}: {error}") from None
        self._abandoned = Abandoned()
        # OSError too: redis-py lets one through when a socket is closed under it (close()).
        self._guard = StoreErrors((redis.RedisError, OSError), f"Redis store {masked_url(url)!r}")
        scripts = _Connections(self._redis.connection_pool)
        self._claim = _Script(scripts, _CLAIM)
        self._complete = _Script(scripts, _COMPLETE)
        self._release = _Script(scripts, _RELEASE)
        self._record = _Script(scripts, _RECORD)
        self._apply_events = _Script(scripts, _APPLY_EVENTS)
        self._take = _Script(scripts, _TAKE)
        self._finish = _Script(scripts, _FINISH)
        self._retry = _Script(scripts, _RETRY)
        self._purge = _Script(scripts, _PURGE)
        self._jobs = self._prefix + "job:"
        self._job_sets = [
            self._prefix + "jobs:due",
            self._prefix + "jobs:dead",
            self._prefix + "jobs:ready",
        ]
        self._due_conversations = _Script(scripts, _DUE_CONVERSATIONS)
        self._save = _Script(scripts, _SAVE)
        self._claim_save = _Script(scripts, _CLAIM_SAVE)
        self._drop = _Script(scripts, _DROP)
        self._outlive = _Script(scripts, _OUTLIVE)
        self._index = prefix + "messages"
        self._next_prune = 0.0
        self._pruned = 0  # index entries old enough to have expired, found still alive

    def claim(
        self,
        key: str,
        lease: float,
        *,
        replace: str = "",
        message: MessageFacts | None = None,
        senders: Sequence[str] = (),
    ) -> Claim:
        owner = new_owner()
        now = self._clock()
        taking: list[Any] = [owner, repr(now + lease), repr(now), replace]
        with self._abandoned.guarding(key, owner), self._guard:
            if message is None:
                value = self._claim(keys=[self._prefix + "claim:" + key], args=taking)
            else:
                keys, args = self._save_call(facts_row(message), None)
                screens = [self._opt_outs(sender) for sender in senders]
                value = self._claim_save(
                    keys=[self._prefix + "claim:" + key, *keys, *screens],
                    args=[*taking, message.from_ or "", *args],
                )
        if not isinstance(value, bytes):
            return Claim(Outcome.CLAIMED, owner, opted_out=value == 1)
        lost = _lost(value)
        if lost.owner != owner:
            return lost
        # Held by this very call: its first attempt won, and its reply was lost with the
        # connection (the exchange then sent it again). The screen's answer went with it.
        opted_out = (
            bool(senders) and message is not None and self.opted_out(message.from_ or "", senders)
        )
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
        id = conversation.id if conversation is not None else ""
        now = self._clock()
        saved: list[Any] = ["", "0", b"", "0", "", ""]
        if conversation is not None:
            due = "" if conversation.due is None else repr(conversation.due)
            save = "0" if conversation.data is None else "1"
            until = repr(now + conversation.ttl)
            saved = [id, save, conversation.data or b"", until, conversation.lock_owner, due]
        columns = [self._jobs, len(JOB_COLUMNS), *JOB_COLUMNS] if jobs else [self._jobs, 0]
        values = [_text(value) for job in jobs for value in job_row(job)]
        keys = [
            self._prefix + "claim:" + key,
            self._prefix + "conv:" + id,
            self._prefix + "claim:lock:" + id,
            self._prefix + "conv-due",
            self._job_sets[0],
        ]
        finished = repr(now + self._retention)
        args = [owner, answer, finished, *saved, repr(now), *columns, *values]
        with self._guard:
            return bool(self._complete(keys=keys, args=args))

    def release(self, key: str, owner: str) -> None:
        with self._guard:
            self._release(keys=[self._prefix + "claim:" + key], args=[owner])

    def record_status(
        self, entry: StatusEntry, lease: float | None = None, replace: str = ""
    ) -> Applied:
        """Without ``lease`` no claim is written: the event's marker alone says whether the
        callback was recorded before, so a duplicate is lost (DONE) without one.
        """
        owner = "" if lease is None else new_owner()
        now = self._clock()
        tag = self._prefix + "{" + entry.message_sid + "}"
        history_entry = _history_entry(entry)
        with self._abandoned.guarding(entry.key, owner), self._guard:
            result = self._record(
                keys=[
                    self._prefix + "claim:" + entry.key,
                    tag + ":event:" + entry.key,
                    tag + ":message",
                    tag + ":history",
                    self._index,
                    self._hash(entry.correlation or ""),
                ],
                args=[
                    "" if lease is None else "P",
                    repr(now + (lease or 0.0)),
                    repr(now),
                    owner,
                    replace,
                    history_entry,
                    repr(now + self._ledger_retention),
                    entry.message_sid,
                    entry.correlation or "",
                    *redis_pairs(entry_row(entry)),
                ],
            )
        if not result[0]:
            lost = _lost(result[1])
            if not owner or lost.owner != owner:
                return Applied(lost, False, None)
            # Held by this very call: its first attempt won and recorded the callback, and
            # its reply was lost with the connection (the exchange then sent it again).
            with self._guard:
                current = cast(bytes | None, self._redis.hget(tag + ":message", "status"))
            status = MessageStatus(current.decode()) if current else None
            return Applied(Claim(Outcome.CLAIMED, owner), True, status)
        claim = Claim(Outcome.DONE) if lease is None else Claim(Outcome.CLAIMED, owner)
        status = result[2].decode()
        return Applied(claim, bool(result[1]), MessageStatus(status) if status else None)

    def apply_events(self, writes: Sequence[EventWrite]) -> list[EventApplied]:
        """One script (see ``_APPLY_EVENTS``): it checks everything before it writes.

        If the reply is lost and the exchange sends the script again, the second run finds
        every event applied and answers them not new: nothing is applied twice.
        """
        if not writes:
            return []
        now = self._clock()
        keys = [self._index]
        args: list[Any] = [
            repr(now),
            repr(now + self._retention),
            repr(now + self._ledger_retention),
        ]
        for write in writes:
            entry, facts = write.status, write.message
            keys.append(self._prefix + "claim:" + write.key)
            if entry is None:
                keys += ["", "", ""]
                args += ["", "", 0]
            else:
                tag = self._prefix + "{" + entry.message_sid + "}"
                keys += [tag + ":event:" + entry.key, tag + ":message", tag + ":history"]
                pairs = redis_pairs(entry_row(entry))
                args += [_history_entry(entry), entry.message_sid, len(pairs) // 2, *pairs]
            if facts is None:
                keys.append("")
                args += ["", 0]
            else:
                pairs = redis_pairs(facts_row(facts))
                keys.append(self._hash(facts.message_sid))
                args += [facts.message_sid, len(pairs) // 2, *pairs]
        with self._guard:
            flat = self._apply_events(keys=keys, args=args)
        return [EventApplied(bool(flat[i]), bool(flat[i + 1])) for i in range(0, len(flat), 2)]

    def get_message(self, message_sid: str) -> MessageRecord | None:
        tag = self._prefix + "{" + message_sid + "}"
        with self._guard:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hgetall(tag + ":message")
            pipe.lrange(tag + ":history", 0, -1)
            fields, history = pipe.execute()
        if not fields:
            return None
        return _record(message_sid, fields, _history([_bytes(raw) for raw in history]))

    def save_message(self, facts: MessageFacts, alias: str | None = None) -> None:
        keys, args = self._save_call(facts_row(facts), alias)
        with self._guard:
            self._save(keys=keys, args=args)

    def find_messages(self, query: Query) -> list[MessageRecord]:
        """Walks the creation-time index newest first, filtering each batch of hashes."""
        high = "+inf" if query.until is None else f"({query.until!r}"
        if query.after is not None and (query.until is None or query.after[0] < query.until):
            high = repr(query.after[0])  # ties on the cursor's time are filtered by SID below
        low = "-inf" if query.since is None else repr(query.since)
        found: list[MessageRecord] = []
        offset = 0
        with self._guard:
            while len(found) < query.limit:
                batch = cast(
                    list[bytes],
                    self._redis.zrevrangebyscore(
                        self._index, high, low, start=offset, num=_FIND_BATCH
                    ),
                )
                sids = [sid.decode() for sid in batch]
                if not sids:
                    break
                offset += len(sids)
                pipe = self._redis.pipeline(transaction=False)
                for sid in sids:
                    pipe.hgetall(self._hash(sid))
                gone = []
                for sid, fields in zip(sids, pipe.execute(), strict=True):
                    if not fields:
                        gone.append(sid)  # expired with its retention: drop it from the index
                        continue
                    record = _record(sid, fields, ())
                    if query.matches(record):
                        found.append(record)
                offset -= self._drop_expired(gone)
        return found[: query.limit]

    def _opt_outs(self, sender: str) -> str:
        """The hash of ``sender``'s opt-out records, by address."""
        return self._prefix + "optout:" + sender

    def _hash(self, sid: str) -> str:
        return self._prefix + "{" + sid + "}:message" if sid else ""

    def _save_call(self, row: Row, alias: str | None) -> tuple[list[str], list[Any]]:
        """The keys and arguments of the save script for a ledger ``row``."""
        sid = str(row[0])
        keys = [self._hash(sid), self._index, self._hash(alias or "")]
        until = repr(self._clock() + self._ledger_retention)
        return keys, [sid, alias or "", until, *redis_pairs(row)]

    def get_conversation(self, id: str) -> bytes | None:
        with self._guard:
            value = self._redis.get(self._prefix + "conv:" + id)
        return _conversation(value, self._clock())

    def due_conversations(self, now: float, limit: int) -> list[str]:
        args = [self._prefix + "conv:", repr(now), repr(self._clock()), limit]
        with self._guard:
            ids = self._due_conversations(keys=[self._prefix + "conv-due"], args=args)
        return [_bytes(id).decode() for id in cast("list[bytes]", ids)]

    def set_opt_out(self, record: OptOut) -> None:
        value = f"{int(record.opted_out)}|{record.updated_at!r}|{record.source}"
        with self._guard:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(self._opt_outs(record.sender), record.address, value)
            pipe.sadd(self._prefix + "optout-senders", record.sender)
            pipe.execute()

    def get_opt_out(self, sender: str, address: str) -> OptOut | None:
        with self._guard:
            value = self._redis.hget(self._opt_outs(sender), address)
        return _opt_out(sender, address, _bytes(value)) if value is not None else None

    def opted_out(self, address: str, senders: Sequence[str]) -> bool:
        if not senders:
            return False
        with self._guard:
            pipe = self._redis.pipeline(transaction=False)
            for sender in senders:
                pipe.hget(self._opt_outs(sender), address)
            values = pipe.execute()
        return any(
            value is not None and _opt_out(sender, address, _bytes(value)).opted_out
            for sender, value in zip(senders, values, strict=True)
        )

    def list_opt_outs(self, sender: str | None = None) -> list[OptOut]:
        with self._guard:
            if sender is None:
                members = self._redis.smembers(self._prefix + "optout-senders")
                senders = sorted(_bytes(member).decode() for member in members)
            else:
                senders = [sender]
            records = []
            for name in senders:
                found = self._redis.hgetall(self._opt_outs(name))
                records += [
                    _opt_out(name, _bytes(address).decode(), _bytes(value))
                    for address, value in found.items()
                ]
        return sorted(records, key=lambda record: (record.sender, record.address))

    def purge_address(self, address: str) -> int:
        """For rare data-subject requests: conversations by one SCAN of the keyspace (they
        have no index by address), ledger records by a walk over this store's SID index.

        A ledger record goes if it was sent to or from ``address``, or a callback names it.
        """
        prefix = _glob_escape(self._prefix)
        removed = 0
        with self._guard:
            now = self._clock()
            for name in self._redis.scan_iter(match=f"{prefix}conv:{_glob_escape(address)}|*"):
                value = self._redis.getdel(name)
                removed += _conversation(value, now) is not None  # expired: gone already
                id = _bytes(name)[len(self._prefix + "conv:") :].decode()
                self._redis.zrem(self._prefix + "conv-due", id)
            sids = [_bytes(sid).decode() for sid, _ in self._redis.zscan_iter(self._index)]
            for start in range(0, len(sids), _FIND_BATCH):
                removed += self._purge_records(sids[start : start + _FIND_BATCH], address)
        return removed

    def _purge_records(self, sids: list[str], address: str) -> int:
        """Delete those of ``sids``' records that name ``address``; how many went."""
        read = self._redis.pipeline(transaction=False)
        for sid in sids:
            tag = self._prefix + "{" + sid + "}"
            read.hmget(tag + ":message", "from", "to")
            read.lrange(tag + ":history", 0, -1)
        replies = read.execute()
        doomed: list[str] = []
        drop = self._redis.pipeline(transaction=False)
        for sid, ends, items in zip(sids, replies[::2], replies[1::2], strict=True):
            events = [_event(_bytes(raw)) for raw in items]
            if address.encode() in ends or any(names_address(e.form, address) for e in events):
                tag = self._prefix + "{" + sid + "}"
                markers = [f"{tag}:event:{event.key}" for event in events]
                drop.delete(tag + ":message", tag + ":history", *markers)
                doomed.append(sid)
        if doomed:
            drop.zrem(self._index, *doomed)
            drop.execute()
        return len(doomed)

    # -- jobs (see webhook_kit.jobs.JobStore) ---------------------------------------------

    def take_job(self, lease: float, key: str | None = None) -> Job | None:
        now = self._clock()
        args = [self._jobs, repr(now), new_owner(), repr(now + lease), key or "", *JOB_COLUMNS]
        with self._guard:
            row = self._take(keys=self._job_sets, args=args)
        return job_from_row(row) if row else None

    def get_job(self, key: str) -> Job | None:
        with self._guard:
            row = self._redis.hmget(self._jobs + key, JOB_COLUMNS)
        return job_from_row(row) if row[0] is not None else None

    def renew_job(self, key: str, owner: str, lease: float) -> bool:
        return self._finish_job(key, owner, "renew", self._clock() + lease, "")

    def finish_job(
        self, key: str, owner: str, state: JobState | None, run_at: float = 0.0, error: str = ""
    ) -> bool:
        return self._finish_job(key, owner, state.value if state else "", run_at, error)

    def _finish_job(self, key: str, owner: str, state: str, at: float, error: str) -> bool:
        with self._guard:
            args = [self._jobs, key, owner, state, repr(at), error]
            return bool(self._finish(keys=self._job_sets, args=args))

    def list_jobs(self, state: JobState | None = None, limit: int = 100) -> list[Job]:
        with self._guard:
            keys: list[bytes] = []
            for name in self._job_sets:
                keys += cast(list[bytes], self._redis.zrange(name, 0, -1))
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(self._jobs + key.decode(), JOB_COLUMNS)
            rows = pipe.execute()
        jobs = [job_from_row(row) for row in rows if row[0] is not None]
        jobs.sort(key=lambda job: job_order(job.created, job.key))
        return [job for job in jobs if state is None or job.state is state][:limit]

    def retry_job(self, key: str) -> bool:
        with self._guard:
            args = [self._jobs, key, repr(self._clock())]
            return bool(self._retry(keys=self._job_sets, args=args))

    def purge_jobs(self, state: JobState = JobState.DEAD) -> int:
        due, dead, ready = self._job_sets
        holders = [dead] if state is JobState.DEAD else [due, ready]
        with self._guard:
            return int(self._purge(keys=holders, args=[self._jobs, state.value]))

    def maintain(self, *, full: bool = False) -> None:
        """Release abandoned claims, then prune the index; Redis expires everything else.

        The index is pruned a batch every ten seconds. ``full`` (``webhook-kit
        maintenance``) walks all of it and also removes every record past its retention by
        the store's clock (the rule the SQL stores' sweep follows), whatever Redis's own.
        """
        self._abandoned.release(self.release)
        now = self._clock()
        if not full and now < self._next_prune:
            return
        self._next_prune = now + _PRUNE_EVERY
        horizon = repr(ledger_horizon(now, self._ledger_retention))
        with self._guard:
            if full:
                every = [_bytes(sid).decode() for sid, _ in self._redis.zscan_iter(self._index)]
                for start in range(0, len(every), _FIND_BATCH):
                    chunk = every[start : start + _FIND_BATCH]
                    self._outlive(keys=[self._index], args=[self._prefix, horizon, *chunk])
            while True:
                batch = cast(
                    list[bytes],
                    self._redis.zrangebyscore(
                        self._index, "-inf", horizon, start=self._pruned, num=_FIND_BATCH
                    ),
                )
                sids = [sid.decode() for sid in batch]
                # Only an entry created before the horizon can have expired; those found
                # alive are skipped next time, so long-lived records never hold up the rest.
                self._pruned += len(sids) - self._drop_expired(sids)
                if len(sids) < _FIND_BATCH:
                    self._pruned = 0
                    return
                if not full:
                    return

    def _drop_expired(self, sids: list[str]) -> int:
        """Drop the index entries of those ``sids`` whose record expired; how many went."""
        if not sids:
            return 0
        return int(self._drop(keys=[self._index, *map(self._hash, sids)], args=sids))

    def close(self) -> None:
        self._redis.close()


def _history_entry(entry: StatusEntry) -> str:
    """A status entry as a history list holds it (see :func:`_timed_event`)."""
    fields = [entry.key, entry.status, entry.received_at, entry.error_code, entry.event_type]
    return json.dumps([*fields, entry.form])


def _lost(value: bytes) -> Claim:
    """Why a claim was not won: a finished claim (with its answer), or one still running."""
    head, _, held = value[1:].partition(b"|")
    if not _is_number(head):  # written before ends were kept
        held = value[1:]
    if value[:1] == _DONE:
        return Claim(Outcome.DONE, answer=held)
    return Claim(Outcome.BUSY, held.decode())


def _conversation(value: bytes | str | None, now: float) -> bytes | None:
    """A saved conversation's data, or None when there is none or it has expired."""
    if value is None:
        return None
    until, _, data = _bytes(value).partition(b"|")
    if not _is_number(until):  # written before ends were kept: it ends with its own TTL
        return _bytes(value)
    return None if lapsed(float(until), now) else data


def _is_number(text: bytes) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _record(
    sid: str, fields: dict[bytes, bytes], history: tuple[LedgerEvent, ...]
) -> MessageRecord:
    def text(name: str) -> str | None:
        value = fields.get(name.encode())
        return value.decode() if value is not None else None  # "" stays "": rules.GIVEN

    def number(name: str) -> float | None:
        value = fields.get(name.encode())
        return float(value) if value else None

    status, direction = text("status"), text("direction")
    error_code, segments, media = text("error_code"), text("segments"), text("media")
    return MessageRecord(
        sid,
        MessageStatus(status) if status else None,
        int(error_code) if error_code else None,
        timestamp(number("updated") or 0.0),
        optional_timestamp(number("final_at")),
        history,
        direction=Direction(direction) if direction else None,
        from_=text("from"),
        to=text("to"),
        body=fields[b"body"].decode() if b"body" in fields else None,
        redacted=text("redacted") == "1",
        num_segments=int(segments) if segments else None,
        num_media=int(media) if media else None,
        created_at=optional_timestamp(number("created")),
        sent_at=optional_timestamp(number("sent_at")),
        price=text("price"),
        price_unit=text("price_unit"),
        ref=text("ref"),
        in_reply_to=text("reply_to"),
    )


def _event(raw: bytes) -> LedgerEvent:
    return _timed_event(raw)[1]


def _history(items: list[bytes]) -> tuple[LedgerEvent, ...]:
    """A history list's entries in the history order (rules.history_order), not as pushed."""
    timed = sorted(map(_timed_event, items), key=lambda t: history_order(t[0], t[1].key))
    return tuple(event for _, event in timed)


def _timed_event(raw: bytes) -> tuple[float, LedgerEvent]:
    """A history entry and its exact arrival time."""
    if raw[:1] == b"[":
        key, status, received, error_code, event_type, form = json.loads(raw)
        event = LedgerEvent(
            MessageStatus(status), timestamp(received), error_code, event_type, key, form
        )
        return received, event
    # Written by webhook_kit 0.1 (form-encoded), kept for the ledger retention after upgrading.
    item = dict(parse_qsl(raw.decode(), keep_blank_values=True))
    received = float(item["received"])
    return received, LedgerEvent(
        MessageStatus(item["status"]),
        timestamp(received),
        int(item["error_code"]) if item["error_code"] else None,
        item["event_type"] or None,
        item["key"],
        item["form"],
    )


def _text(value: object) -> str:
    """A job column for a Redis hash: floats exactly, None as empty."""
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _opt_out(sender: str, address: str, value: bytes) -> OptOut:
    opted_out, updated, source = value.decode().split("|", 2)
    return OptOut(sender, address, opted_out == "1", float(updated), source)


def _bytes(value: bytes | str) -> bytes:
    """redis-py's replies are bytes (no ``decode_responses``); its stubs allow str."""
    return value.encode() if isinstance(value, str) else value


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _split_prefix(url: str) -> tuple[str, str]:
    """``?prefix=name`` namespaces the keys (default ``webhook_kit:``); redis-py never sees it.

    A URL redis-py would misread (a port or database that is no number: it would quietly use
    database 0) is a ConfigurationError here, before any connection.
    """
    base, _, query = url.partition("?")  # not urlunsplit: it turns unix:///path into unix:/path
    pairs: list[tuple[str, Any]] = parse_qsl(query, keep_blank_values=True)
    prefix = next((value for name, value in pairs if name == "prefix"), "webhook_kit")
    rest = urlencode([(name, value) for name, value in pairs if name != "prefix"])
    example = "e.g. redis://127.0.0.1:6379/0?prefix=myapp"
    try:
        parts = urlsplit(base)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number or too large
    except ValueError as error:
        raise ConfigurationError(f"the Redis store URL is not valid ({error}): {example}") from None
    database = parts.path.strip("/")
    if parts.scheme != "unix" and database and not database.isdigit():
        raise ConfigurationError(
            f"Redis store URL {masked_url(base)!r}: the database after the host must be a "
            f"number, {example}"
        )
    if not prefix.rstrip(":"):
        raise ConfigurationError(f"?prefix= in the Redis store URL is empty: {example}")
    return (f"{base}?{rest}" if rest else base), prefix.rstrip(":") + ":"
