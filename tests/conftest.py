from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

pytest_plugins = ["pytester"]

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REQUIRE_SERVICES = os.environ.get("WEBHOOK_KIT_REQUIRE_SERVICES") == "1"


def redis_reachable() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def require_redis() -> None:
    """Skip with a reason when Redis is down, unless CI demands the real service."""
    if redis_reachable():
        return
    message = (
        f"no Redis server on {REDIS_HOST}:{REDIS_PORT} (start one with: redis-server "
        '--daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no)'
    )
    if REQUIRE_SERVICES:
        pytest.fail(f"WEBHOOK_KIT_REQUIRE_SERVICES=1 but {message}")
    pytest.skip(message)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis store URL with a prefix of its own; its keys are deleted afterwards."""
    require_redis()
    import redis

    prefix = f"wktest-{uuid.uuid4().hex[:12]}"
    yield f"redis://{REDIS_HOST}:{REDIS_PORT}/0?prefix={prefix}"
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
