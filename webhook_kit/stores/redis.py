"""A store in Redis, so that many hosts behave as one.

Claims are ``SET NX PX`` (the lease expires by itself if a worker dies); completing,
releasing and recording a callback are Lua scripts, atomic on the server. A message's
keys share a hash tag, so the scripts also run on Redis Cluster. Durability is Redis's own:
with ``appendonly yes`` and ``appendfsync always`` an acknowledged callback survives power
loss, with ``everysec`` at most a second of them can be lost.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ConfigurationError
from ..ledger import Applied, LedgerEvent, MessageRecord, StatusEntry, timestamp
from ..status import MessageStatus
from . import DEFAULT_LEDGER_RETENTION, DEFAULT_RETENTION, Claim, Outcome, store_errors

try:
    import redis
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
# KEYS: event marker, message hash, history list.
# ARGV: status, rank, final (0/1), error code ('' for none), received, history entry, ttl ms.
_RECORD = """
local recorded = redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[7])
if recorded then
    redis.call('RPUSH', KEYS[3], ARGV[6])
    local rank = tonumber(redis.call('HGET', KEYS[2], 'rank') or '-2')
    if tonumber(ARGV[2]) > rank then
        redis.call('HSET', KEYS[2], 'status', ARGV[1], 'rank', ARGV[2], 'error_code', ARGV[4])
    end
    local updated = tonumber(redis.call('HGET', KEYS[2], 'updated') or '0')
    if tonumber(ARGV[5]) > updated then
        redis.call('HSET', KEYS[2], 'updated', ARGV[5])
    end
    if ARGV[3] == '1' then
        redis.call('HSETNX', KEYS[2], 'final_at', ARGV[5])
    end
    redis.call('PEXPIRE', KEYS[2], ARGV[7])
    redis.call('PEXPIRE', KEYS[3], ARGV[7])
end
return {recorded and 1 or 0, redis.call('HGET', KEYS[2], 'status')}
"""


class RedisStore:
    """Every operation is one round trip; connections are pooled and fork-safe."""

    def __init__(
        self,
        url: str,
        *,
        retention: float = DEFAULT_RETENTION,
        ledger_retention: float = DEFAULT_LEDGER_RETENTION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        url, prefix = _split_prefix(url)
        self.url = url
        self._prefix = prefix
        self._retention_ms = int(retention * 1000)
        self._ledger_ms = int(ledger_retention * 1000)
        self._clock = clock
        self._redis = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=2.0)
        self._complete = self._redis.register_script(_COMPLETE)
        self._release = self._redis.register_script(_RELEASE)
        self._record = self._redis.register_script(_RECORD)

    def claim(self, key: str, lease: float) -> Claim:
        owner = os.urandom(9).hex()
        name = self._prefix + "claim:" + key
        with self._errors():
            for _ in range(2):  # a key can expire between SET and GET: look once more
                if self._redis.set(name, _PENDING + owner.encode(), nx=True, px=int(lease * 1000)):
                    return Claim(Outcome.CLAIMED, owner)
                value = cast(bytes | None, self._redis.get(name))
                if value is not None:
                    if value[:1] == _DONE:
                        return Claim(Outcome.DONE, answer=value[1:])
                    return Claim(Outcome.BUSY)
        return Claim(Outcome.BUSY)

    def complete(self, key: str, owner: str, answer: bytes) -> None:
        with self._errors():
            self._complete(
                keys=[self._prefix + "claim:" + key], args=[owner, answer, self._retention_ms]
            )

    def release(self, key: str, owner: str) -> None:
        with self._errors():
            self._release(keys=[self._prefix + "claim:" + key], args=[owner])

    def record_status(self, entry: StatusEntry) -> Applied:
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
        with self._errors():
            recorded, status = self._record(
                keys=[tag + ":event:" + entry.key, tag + ":message", tag + ":history"],
                args=[
                    entry.status,
                    entry.rank,
                    1 if entry.final else 0,
                    "" if entry.error_code is None else entry.error_code,
                    repr(entry.received_at),
                    history_entry,
                    self._ledger_ms,
                ],
            )
        return Applied(bool(recorded), MessageStatus(status.decode()) if status else None)

    def get_message(self, message_sid: str) -> MessageRecord | None:
        tag = self._prefix + "{" + message_sid + "}"
        with self._errors():
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

    def close(self) -> None:
        self._redis.close()

    def _errors(self) -> AbstractContextManager[None]:
        return store_errors(redis.RedisError, f"Redis store {self.url!r}")


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


def _split_prefix(url: str) -> tuple[str, str]:
    """``?prefix=name`` namespaces the keys (default ``webhook_kit:``); redis-py never sees it."""
    parts = urlsplit(url)
    query: list[tuple[str, Any]] = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((value for name, value in query if name == "prefix"), "webhook_kit")
    rest = urlencode([(name, value) for name, value in query if name != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix.rstrip(":") + ":"
