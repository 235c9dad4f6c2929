"""A store in Redis, so that many hosts behave as one.

Claims are ``SET NX PX`` (the lease expires by itself if a worker dies); completing,
releasing, taking over a dead owner's claim, and claiming-and-recording a callback are Lua
scripts, atomic on the server and one round trip each. Every wait is bounded by the store's
``timeout`` (connect and reply), and a timed-out command is not retried: a silent Redis costs
a request one timeout, then 503. Keys and ledger records expire by Redis's own TTLs, so
:meth:`RedisStore.maintain` only releases abandoned claims. Durability is Redis's own:
with ``appendonly yes`` and ``appendfsync always`` an acknowledged callback survives power
loss, with ``everysec`` at most a second of them can be lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ConfigurationError
from ..jobs import JOB_COLUMNS, Job, JobState, job_from_row, job_row
from ..ledger import LedgerEvent, MessageRecord, StatusEntry, timestamp
from ..status import MessageStatus
from . import (
    DEFAULT_LEDGER_RETENTION,
    DEFAULT_RETENTION,
    DEFAULT_TIMEOUT,
    Abandoned,
    Applied,
    Claim,
    Outcome,
    StoreErrors,
    new_owner,
)

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as error:  # pragma: no cover - exercised without the extra installed
    raise ConfigurationError(
        "the Redis store needs redis-py: pip install 'webhook_kit[redis]'"
    ) from error

_PENDING, _DONE = b"P", b"D"

# KEYS: claim. ARGV: owner, answer, retention ms.
_COMPLETE = """
if redis.call('GET', KEYS[1]) == 'P' .. ARGV[1] then
    redis.call('SET', KEYS[1], 'D' .. ARGV[2], 'PX', ARGV[3])
end
"""
# KEYS: claim. ARGV: owner.
_RELEASE = """
if redis.call('GET', KEYS[1]) == 'P' .. ARGV[1] then
    redis.call('DEL', KEYS[1])
end
"""
# KEYS: claim. ARGV: claim value, claim ttl ms, dead owner ('' for none).
# Takes the claim if free, or unfinished and held by the dead owner (nil); else its value.
_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return false
end
local current = redis.call('GET', KEYS[1])
if ARGV[3] ~= '' and current == 'P' .. ARGV[3] then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return false
end
return current
"""
# KEYS: claim, event marker, message hash, history list.
# ARGV: claim value, claim ttl ms, status, rank, final (0/1), error code ('' for none),
#       received, history entry, ledger ttl ms, dead owner ('' for none).
# Returns {0, current claim value} when the claim is lost, else {1, recorded, status}.
_RECORD = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    local current = redis.call('GET', KEYS[1])
    if ARGV[10] == '' or current ~= 'P' .. ARGV[10] then
        return {0, current or ''}
    end
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
local recorded = redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[9])
if recorded then
    redis.call('RPUSH', KEYS[4], ARGV[8])
    local rank = tonumber(redis.call('HGET', KEYS[3], 'rank') or '-2')
    if tonumber(ARGV[4]) > rank then
        redis.call('HSET', KEYS[3], 'status', ARGV[3], 'rank', ARGV[4], 'error_code', ARGV[6])
    end
    local updated = tonumber(redis.call('HGET', KEYS[3], 'updated') or '0')
    if tonumber(ARGV[7]) > updated then
        redis.call('HSET', KEYS[3], 'updated', ARGV[7])
    end
    if ARGV[5] == '1' then
        redis.call('HSETNX', KEYS[3], 'final_at', ARGV[7])
    end
    redis.call('PEXPIRE', KEYS[3], ARGV[9])
    redis.call('PEXPIRE', KEYS[4], ARGV[9])
end
return {1, recorded and 1 or 0, redis.call('HGET', KEYS[3], 'status') or ''}
"""

# Jobs: a hash per job (JOB_COLUMNS), the keys of pending and running ones in the "due"
# sorted set scored by when they are due (run_at; the lease end while running), the dead
# ones in the "dead" set scored by creation. ARGV[1] is always the key prefix of the hashes.
# KEYS: claim, due. ARGV: prefix, owner, answer, retention ms, column count n, n column
# names, then n values per job.
_ENQUEUE = """
if redis.call('GET', KEYS[1]) ~= 'P' .. ARGV[2] then
    return 0
end
redis.call('SET', KEYS[1], 'D' .. ARGV[3], 'PX', ARGV[4])
local n = tonumber(ARGV[5])
local run_at
for c = 1, n do
    if ARGV[5 + c] == 'run_at' then run_at = c end
end
local i = 6 + n
while i <= #ARGV do
    local name = ARGV[1] .. ARGV[i]
    if redis.call('EXISTS', name) == 0 then
        for c = 1, n do
            redis.call('HSET', name, ARGV[5 + c], ARGV[i + c - 1])
        end
        redis.call('ZADD', KEYS[2], ARGV[i + run_at - 1], ARGV[i])
    end
    i = i + n
end
return 1
"""
# KEYS: due. ARGV: prefix, now, owner, lease end, job key ('' for the next due), columns.
_TAKE = """
local key = ARGV[5]
if key == '' then
    local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, 1)
    if #due == 0 then return false end
    key = due[1]
else
    local score = redis.call('ZSCORE', KEYS[1], key)
    if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
end
local name = ARGV[1] .. key
redis.call('HSET', name, 'state', 'running', 'owner', ARGV[3], 'expires', ARGV[4])
redis.call('HINCRBY', name, 'attempts', 1)
redis.call('ZADD', KEYS[1], ARGV[4], key)
return redis.call('HMGET', name, unpack(ARGV, 6))
"""
# KEYS: due, dead. ARGV: prefix, key, owner, new state ('' deletes; 'renew' extends the
# lease to ARGV[5]), run_at or lease end, error.
_FINISH = """
local name = ARGV[1] .. ARGV[2]
local mine = redis.call('HMGET', name, 'owner', 'state')
if mine[1] ~= ARGV[3] or mine[2] ~= 'running' then return 0 end
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
# KEYS: due, dead. ARGV: prefix, key, now.
_RETRY = """
local name = ARGV[1] .. ARGV[2]
if redis.call('HGET', name, 'state') ~= 'dead' then return 0 end
redis.call('HSET', name, 'state', 'pending', 'attempts', 0, 'run_at', ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
return 1
"""
# KEYS: the set holding jobs in that state. ARGV: prefix, state.
_PURGE = """
local n = 0
for _, key in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if redis.call('HGET', ARGV[1] .. key, 'state') == ARGV[2] then
        redis.call('DEL', ARGV[1] .. key)
        redis.call('ZREM', KEYS[1], key)
        n = n + 1
    end
end
return n
"""


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
        self._retention_ms = int(retention * 1000)
        self._ledger_ms = int(ledger_retention * 1000)
        self._clock = clock
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # Reconnect once at once if a pooled connection was closed (a Redis restart);
            # never resend after a timeout, which would double the wait.
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        )
        self._abandoned = Abandoned()
        self._guard = StoreErrors(redis.RedisError, f"Redis store {_redacted(url)!r}")
        self._claim = self._redis.register_script(_CLAIM)
        self._complete = self._redis.register_script(_COMPLETE)
        self._release = self._redis.register_script(_RELEASE)
        self._record = self._redis.register_script(_RECORD)
        self._enqueue = self._redis.register_script(_ENQUEUE)
        self._take = self._redis.register_script(_TAKE)
        self._finish = self._redis.register_script(_FINISH)
        self._retry = self._redis.register_script(_RETRY)
        self._purge = self._redis.register_script(_PURGE)
        self._jobs = self._prefix + "job:"
        self._job_sets = [self._prefix + "jobs:due", self._prefix + "jobs:dead"]

    def claim(self, key: str, lease: float, replace: str = "") -> Claim:
        owner = new_owner()
        name = self._prefix + "claim:" + key
        with self._abandoned.guarding(key, owner), self._guard:
            value = self._claim(
                keys=[name], args=[_PENDING + owner.encode(), int(lease * 1000), replace]
            )
        return Claim(Outcome.CLAIMED, owner) if value is None else _lost(value)

    def complete(self, key: str, owner: str, answer: bytes) -> None:
        with self._guard:
            self._complete(
                keys=[self._prefix + "claim:" + key], args=[owner, answer, self._retention_ms]
            )

    def release(self, key: str, owner: str) -> None:
        with self._guard:
            self._release(keys=[self._prefix + "claim:" + key], args=[owner])

    def record_status(
        self, entry: StatusEntry, lease: float | None = None, replace: str = ""
    ) -> Applied:
        owner = "" if lease is None else new_owner()
        if lease is None:
            claim_value, claim_ms = _DONE, self._retention_ms
        else:
            claim_value, claim_ms = _PENDING + owner.encode(), int(lease * 1000)
        tag = self._prefix + "{" + entry.message_sid + "}"
        history_entry = urlencode(
            {
                "key": entry.key,
                "status": entry.status,
                "received": repr(entry.received_at),
                "error_code": "" if entry.error_code is None else str(entry.error_code),
                "event_type": entry.event_type or "",
                "form": entry.form,
            }
        )
        with self._abandoned.guarding(entry.key, owner), self._guard:
            result = self._record(
                keys=[
                    self._prefix + "claim:" + entry.key,
                    tag + ":event:" + entry.key,
                    tag + ":message",
                    tag + ":history",
                ],
                args=[
                    claim_value,
                    claim_ms,
                    entry.status,
                    entry.rank,
                    1 if entry.final else 0,
                    "" if entry.error_code is None else entry.error_code,
                    repr(entry.received_at),
                    history_entry,
                    self._ledger_ms,
                    replace,
                ],
            )
        if not result[0]:
            return Applied(_lost(result[1]), False, None)
        claim = Claim(Outcome.DONE) if lease is None else Claim(Outcome.CLAIMED, owner)
        status = result[2].decode()
        return Applied(claim, bool(result[1]), MessageStatus(status) if status else None)

    def get_message(self, message_sid: str) -> MessageRecord | None:
        tag = self._prefix + "{" + message_sid + "}"
        with self._guard:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hgetall(tag + ":message")
            pipe.lrange(tag + ":history", 0, -1)
            fields, history = pipe.execute()
        if not fields:
            return None
        status = fields.get(b"status")
        error_code = fields.get(b"error_code")
        final_at = fields.get(b"final_at")
        return MessageRecord(
            message_sid,
            MessageStatus(status.decode()) if status else None,
            int(error_code) if error_code else None,
            timestamp(float(fields[b"updated"])),
            timestamp(float(final_at)) if final_at else None,
            tuple(_event(raw) for raw in history),
        )

    # -- jobs (see webhook_kit.jobs.JobStore) ---------------------------------------------

    def enqueue(self, key: str, owner: str, answer: bytes, jobs: Sequence[Job]) -> bool:
        values = [_text(value) for job in jobs for value in job_row(job)]
        args: list[Any] = [self._jobs, owner, answer, self._retention_ms, len(JOB_COLUMNS)]
        with self._guard:
            return bool(
                self._enqueue(
                    keys=[self._prefix + "claim:" + key, self._job_sets[0]],
                    args=[*args, *JOB_COLUMNS, *values],
                )
            )

    def take_job(self, lease: float, key: str | None = None) -> Job | None:
        now = self._clock()
        args = [self._jobs, repr(now), new_owner(), repr(now + lease), key or "", *JOB_COLUMNS]
        with self._guard:
            row = self._take(keys=self._job_sets[:1], args=args)
        return job_from_row(row) if row else None

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
        jobs.sort(key=lambda job: (job.created, job.key))
        return [job for job in jobs if state is None or job.state is state][:limit]

    def retry_job(self, key: str) -> bool:
        with self._guard:
            args = [self._jobs, key, repr(self._clock())]
            return bool(self._retry(keys=self._job_sets, args=args))

    def purge_jobs(self, state: JobState = JobState.DEAD) -> int:
        holder = self._job_sets[1] if state is JobState.DEAD else self._job_sets[0]
        with self._guard:
            return int(self._purge(keys=[holder], args=[self._jobs, state.value]))

    def maintain(self, *, full: bool = False) -> None:
        """Release abandoned claims; Redis expires keys and records by itself.

        ``full`` (``webhook-kit maintenance``) also checks that the server answers.
        """
        self._abandoned.release(self.release)
        if full:
            with self._guard:
                self._redis.ping()

    def close(self) -> None:
        self._redis.close()


def _lost(value: bytes) -> Claim:
    """Why a claim was not won: a finished claim (with its answer), or one still running."""
    if value[:1] == _DONE:
        return Claim(Outcome.DONE, answer=value[1:])
    return Claim(Outcome.BUSY, value[1:].decode())


def _event(raw: bytes) -> LedgerEvent:
    item = dict(parse_qsl(raw.decode(), keep_blank_values=True))
    return LedgerEvent(
        MessageStatus(item["status"]),
        timestamp(float(item["received"])),
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


def _redacted(url: str) -> str:
    """The URL without its password, for messages that end up in logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def _split_prefix(url: str) -> tuple[str, str]:
    """``?prefix=name`` namespaces the keys (default ``webhook_kit:``); redis-py never sees it."""
    parts = urlsplit(url)
    query: list[tuple[str, Any]] = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((value for name, value in query if name == "prefix"), "webhook_kit")
    rest = urlencode([(name, value) for name, value in query if name != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix.rstrip(":") + ":"
