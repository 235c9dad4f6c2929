from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pgcluster
import pytest
from pgcluster import PrivateCluster

if TYPE_CHECKING:
    from emulator_support import Receiver
    from twilio.rest import Client

    from webhook_kit.emulator import Emulator

pytest_plugins = ["pytester"]

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", 5432
POSTGRES_URL = f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/test"
REQUIRE_SERVICES = os.environ.get("WEBHOOK_KIT_REQUIRE_SERVICES") == "1"


def require_service(reachable: bool, message: str) -> None:
    """Skip with a reason when a service is down, unless CI demands the real service."""
    if reachable:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"WEBHOOK_KIT_REQUIRE_SERVICES=1 but {message}")
    pytest.skip(message)


def redis_reachable() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def require_redis() -> None:
    require_service(
        redis_reachable(),
        f"no Redis server on {REDIS_HOST}:{REDIS_PORT} (start one with: redis-server "
        '--daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no)',
    )


def require_postgres() -> None:
    import psycopg  # a dev dependency: its absence is an error, not a reason to skip

    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=2).close()
        reachable = True
    except psycopg.Error:
        reachable = False
    require_service(
        reachable,
        f"no PostgreSQL database 'test' on {POSTGRES_HOST}:{POSTGRES_PORT} for user postgres "
        "with trust auth (start one with: pg_ctlcluster --skip-systemctl-redirect "
        "$(ls /etc/postgresql) main start; createdb -U postgres test)",
    )


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


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL store URL with a schema of its own; the schema is dropped afterwards."""
    require_postgres()
    import psycopg

    schema = f"wktest_{uuid.uuid4().hex[:12]}"
    yield f"{POSTGRES_URL}?schema={schema}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as db:
        db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def private_postgres() -> Iterator[PrivateCluster]:
    """A PostgreSQL cluster of this test's own, which it may stop: never the shared server."""
    reason = pgcluster.unavailable()
    require_service(reason is None, reason or "")
    with PrivateCluster() as cluster:
        yield cluster


# -- the emulator's tests: one emulator per module, reset for each test ------------------


@pytest.fixture(scope="module")
def running() -> Iterator[Emulator]:
    """The module's emulator: a manual clock, no sender queues (override for other options)."""
    from emulator_support import UNTHROTTLED

    from webhook_kit.emulator import Emulator

    with Emulator(clock="manual", throughput=UNTHROTTLED) as emulator:
        yield emulator


@pytest.fixture
def emulator(running: Emulator) -> Emulator:
    """The module's emulator, as new: starting one per test costs a server each."""
    running.reset()
    return running


@pytest.fixture
def client(emulator: Emulator) -> Client:
    """Twilio's own Python client, talking to the emulator."""
    return emulator.client()


@pytest.fixture
def app() -> Iterator[Receiver]:
    """A loopback app that records what the emulator's webhooks deliver."""
    from emulator_support import Receiver

    receiver = Receiver()
    yield receiver
    receiver.close()
