"""A bot for the multi-host test: counts handler runs per MessageSid in Redis."""

from __future__ import annotations

import os
import time

import redis

from webhook_kit import InboundMessage, StatusCallback, WebhookKit

kit = WebhookKit()
_counter = redis.Redis.from_url(os.environ.get("COUNTER_REDIS_URL", "redis://127.0.0.1:6379/0"))
_prefix = os.environ.get("COUNTER_PREFIX", "counting-bot")


@kit.on_message()
def count(message: InboundMessage) -> str:
    _counter.hincrby(f"{_prefix}:runs", message.message_sid, 1)
    time.sleep(float(os.environ.get("COUNTER_DELAY", "0")))  # widen the race window
    return f"counted {message.message_sid}"


@kit.on_status()
def count_status(update: StatusCallback) -> None:
    _counter.hincrby(f"{_prefix}:status-runs", f"{update.message_sid}:{update.status}", 1)
