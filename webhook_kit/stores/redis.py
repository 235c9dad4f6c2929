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
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ConfigurationError
from ..ledger import LedgerEvent, MessageRecord, StatusEntry, timestamp
from ..status import MessageStatus
from . import (
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
    names_address,
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
# KEYS: claim, conversation, conversation lock, due-conversations sorted set.
# ARGV: owner, answer, retention ms, data ('' with ARGV[6] = '0': delete), ttl ms, save (0/1),
#       lock owner, conversation id, due ('' for none).
_COMPLETE_CONVERSATION = """
if redis.call('GET', KEYS[1]) ~= 'P' .. ARGV[1] then
    return 0
end
redis.call('SET', KEYS[1], 'D' .. ARGV[2], 'PX', ARGV[3])
if ARGV[6] == '1' then
    redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
else
    redis.call('DEL', KEYS[2])
end
if redis.call('GET', KEYS[3]) == 'P' .. ARGV[7] then
    redis.call('DEL', KEYS[3])
end
if ARGV[6] == '1' and ARGV[9] ~= '' then
    redis.call('ZADD', KEYS[4], ARGV[9], ARGV[8])
else
    redis.call('ZREM', KEYS[4], ARGV[8])
end
return 1
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
        self._complete_conversation = self._redis.register_script(_COMPLETE_CONVERSATION)
        self._release = self._redis.register_script(_RELEASE)
        self._record = self._redis.register_script(_RECORD)

    def claim(self, key: str, lease: float, replace: str = "") -> Claim:
        owner = new_owner()
        name = self._prefix + "claim:" + key
        with self._abandoned.guarding(key, owner), self._guard:
            value = self._claim(
                keys=[name], args=[_PENDING + owner.encode(), int(lease * 1000), replace]
            )
        return Claim(Outcome.CLAIMED, owner) if value is None else _lost(value)

    def complete(
        self, key: str, owner: str, answer: bytes, conversation: ConversationWrite | None = None
    ) -> None:
        claim = self._prefix + "claim:" + key
        with self._guard:
            if conversation is None:
                self._complete(keys=[claim], args=[owner, answer, self._retention_ms])
                return
            self._complete_conversation(
                keys=[
                    claim,
                    self._prefix + "conv:" + conversation.id,
                    self._prefix + "claim:lock:" + conversation.id,
                    self._prefix + "conv-due",
                ],
                args=[
                    owner,
                    answer,
                    self._retention_ms,
                    conversation.data or b"",
                    max(1, int(conversation.ttl * 1000)),
                    0 if conversation.data is None else 1,
                    conversation.lock_owner,
                    conversation.id,
                    "" if conversation.due is None else repr(conversation.due),
                ],
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

    def get_conversation(self, id: str) -> bytes | None:
        with self._guard:
            data = self._redis.get(self._prefix + "conv:" + id)
        return None if data is None else _bytes(data)

    def due_conversations(self, now: float, limit: int) -> list[str]:
        with self._guard:
            ids = self._redis.zrangebyscore(self._prefix + "conv-due", "-inf", now, 0, limit)
        return [_bytes(id).decode() for id in cast("list[bytes]", ids)]

    def set_opt_out(self, record: OptOut) -> None:
        value = f"{int(record.opted_out)}|{record.updated_at!r}|{record.source}"
        with self._guard:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(self._prefix + "optout:" + record.sender, record.address, value)
            pipe.sadd(self._prefix + "optout-senders", record.sender)
            pipe.execute()

    def get_opt_out(self, sender: str, address: str) -> OptOut | None:
        with self._guard:
            value = self._redis.hget(self._prefix + "optout:" + sender, address)
        return _opt_out(sender, address, _bytes(value)) if value is not None else None

    def list_opt_outs(self, sender: str | None = None) -> list[OptOut]:
        with self._guard:
            if sender is None:
                members = self._redis.smembers(self._prefix + "optout-senders")
                senders = sorted(_bytes(member).decode() for member in members)
            else:
                senders = [sender]
            records = []
            for name in senders:
                found = self._redis.hgetall(self._prefix + "optout:" + name)
                records += [
                    _opt_out(name, _bytes(address).decode(), _bytes(value))
                    for address, value in found.items()
                ]
        return sorted(records, key=lambda record: (record.sender, record.address))

    def purge_address(self, address: str) -> int:
        """SCANs the keyspace (no index by address): for rare data-subject requests."""
        prefix = _glob_escape(self._prefix)
        removed = 0
        with self._guard:
            for name in self._redis.scan_iter(match=f"{prefix}conv:{_glob_escape(address)}|*"):
                removed += self._redis.delete(name)
                id = _bytes(name)[len(self._prefix + "conv:") :].decode()
                self._redis.zrem(self._prefix + "conv-due", id)
            for history in self._redis.scan_iter(match=prefix + "{*}:history", count=1000):
                items = self._redis.lrange(history, 0, -1)
                forms = (_event(_bytes(raw)).form for raw in items)
                if not any(names_address(form, address) for form in forms):
                    continue
                tag = history[: -len(b":history")]
                events = list(self._redis.scan_iter(match=_glob_escape(tag.decode()) + ":event:*"))
                self._redis.delete(history, tag + b":message", *events)
                removed += 1
        return removed

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


def _opt_out(sender: str, address: str, value: bytes) -> OptOut:
    opted_out, updated, source = value.decode().split("|", 2)
    return OptOut(sender, address, opted_out == "1", float(updated), source)


def _bytes(value: bytes | str) -> bytes:
    """redis-py's replies are bytes (no ``decode_responses``); its stubs allow str."""
    return value.encode() if isinstance(value, str) else value


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


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
