"""A bot for the multi-host and fault tests: counts handler runs per MessageSid in Redis.

The first run of a message sleeps ``COUNTER_DELAY`` seconds (to widen a race window, or to
be killed in), a status handler ``COUNTER_STATUS_DELAY``; retries run at full speed.
"""

from __future__ import annotations

import os
import time

import redis

from webhook_kit import InboundMessage, MessageRecord, StatusCallback, WebhookKit

kit = WebhookKit()
_counter = redis.Redis.from_url(os.environ.get("COUNTER_REDIS_URL", "redis://127.0.0.1:6379/0"))
_prefix = os.environ.get("COUNTER_PREFIX", "counting-bot")


@kit.on_message()
def count(message: InboundMessage) -> str:
    if _counter.hincrby(f"{_prefix}:runs", message.message_sid, 1) == 1:
        time.sleep(float(os.environ.get("COUNTER_DELAY", "0")))
    return f"counted {message.message_sid}"


@kit.on_status()
def count_status(update: StatusCallback) -> None:
    _counter.hincrby(f"{_prefix}:status-runs", f"{update.message_sid}:{update.status}", 1)
    time.sleep(float(os.environ.get("COUNTER_STATUS_DELAY", "0")))


@kit.on_final
def count_final(record: MessageRecord) -> None:
    _counter.hincrby(f"{_prefix}:final-runs", record.message_sid, 1)
