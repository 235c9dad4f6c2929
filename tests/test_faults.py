"""Faults against real Redis, SQLite and PostgreSQL behind gunicorn: nothing stranded.

Each test starts what it breaks: its own redis-server on a free port (paused or killed, never
the shared one), its own SQLite file, its own gunicorn. Handler runs are counted in the
shared Redis by ``tests/apps/counting_bot.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import REDIS_HOST, REDIS_PORT, require_redis, require_service
from pgcluster import PrivateCluster
from server import Gunicorn, RedisServer, Reply

from webhook_kit.testing import inbound_sms, status_callback

pytestmark = pytest.mark.timeout(120)


class Counter:
    """Reads what counting_bot counted under a prefix of its own."""

    def __init__(self) -> None:
        import redis

        self.prefix = f"wkfault-{uuid.uuid4().hex[:12]}"
        self.client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)

    def runs(self, name: str, field: str) -> int:
        return int(self.client.hget(f"{self.prefix}:{name}", field) or 0)

    def wait_for(self, name: str, field: str, count: int = 1) -> None:
        deadline = time.monotonic() + 15
        while self.runs(name, field) < count:
            assert time.monotonic() < deadline, f"{name} {field} never reached {count}"
            time.sleep(0.02)


@pytest.fixture
def counter() -> Iterator[Counter]:
    require_redis()
    installed = shutil.which("redis-server") is not None
    require_service(installed, "redis-server is not installed: the fault tests start their own")
    counting = Counter()
    yield counting
    keys = list(counting.client.scan_iter(match=f"{counting.prefix}:*"))
    if keys:
        counting.client.delete(*keys)
    counting.client.close()


def bot(counter: Counter, store: str, **env: str) -> dict[str, str]:
    """The environment of a counting_bot server on ``store``."""
    return {
        "WEBHOOK_KIT_STORE": store,
        "WEBHOOK_KIT_HANDLERS": "apps.counting_bot",
        "COUNTER_PREFIX": counter.prefix,
        **env,
    }


def in_background(send: Callable[[], Reply]) -> tuple[threading.Thread, list[Reply | Exception]]:
    result: list[Reply | Exception] = []

    def run() -> None:
        try:
            result.append(send())
        except Exception as error:  # the worker died mid-request
            result.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def timed(send: Callable[[], Reply]) -> tuple[Reply, float]:
    started = time.monotonic()
    reply = send()
    return reply, time.monotonic() - started


# -- a claim that outlives its owner -------------------------------------------------------------


def test_a_claim_left_by_a_request_that_gave_up_runs_once(counter: Counter) -> None:
    """Redis paused past the store timeout: 503; the claim it runs later is released."""
    with RedisServer() as redis_server:
        env = bot(counter, redis_server.url, WEBHOOK_KIT_STORE_TIMEOUT="0.5")
        with Gunicorn(env, workers=1) as server:
            assert server.post_signed("/twilio/messages", inbound_sms("warm")).status == 200
            fields = inbound_sms("paused")
            redis_server.pause()  # the claim goes out on a live connection and waits there
            try:
                gave_up, waited = timed(lambda: server.post_signed("/twilio/messages", fields))
            finally:
                redis_server.resume()  # Redis now runs the claim of a request that answered
            assert gave_up.status == 503 and waited < 3
            time.sleep(1.0)  # the worker's housekeeping releases what it abandoned
            retry = server.post_signed("/twilio/messages", fields)
            again = server.post_signed("/twilio/messages", fields)
    sid = fields["MessageSid"]
    assert retry.status == 200 and retry.text.endswith(f"counted {sid}</Message></Response>")
    assert again.body == retry.body
    assert counter.runs("runs", sid) == 1


@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])
def test_a_worker_killed_holding_a_claim_strands_nothing(
    kind: str, counter: Counter, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """kill -9 mid-handler: the next delivery sees the owner is gone and runs it at once."""
    store = (
        f"sqlite:///{tmp_path}/kit.db"
        if kind == "sqlite"
        else request.getfixturevalue(f"{kind}_url")
    )
    fields = inbound_sms("doomed")
    sid = fields["MessageSid"]
    with Gunicorn(bot(counter, store, COUNTER_DELAY="60"), workers=1) as server:
        thread, result = in_background(lambda: server.post_signed("/twilio/messages", fields))
        counter.wait_for("runs", sid)  # the handler is running in the worker
        victim = server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        thread.join(20)
        assert result and not isinstance(result[0], Reply)  # never answered
        deadline = time.monotonic() + 20
        while set(server.worker_pids()) in (set(), {victim}):
            assert time.monotonic() < deadline, "gunicorn did not replace the worker"
            time.sleep(0.05)
        retry = server.post_signed("/twilio/messages", fields)
        again = server.post_signed("/twilio/messages", fields)
    # Without the takeover the retry would wait WEBHOOK_KIT_CLAIM_WAIT, then get 409.
    assert retry.status == 200 and f"counted {sid}" in retry.text
    assert again.body == retry.body
    assert counter.runs("runs", sid) == 2  # the killed run, then exactly one that finished


# -- every store failure is a 503 ---------------------------------------------------------------


def test_redis_killed_during_a_final_status_handler_is_503(counter: Counter) -> None:
    with RedisServer() as redis_server:
        env = bot(
            counter, redis_server.url, WEBHOOK_KIT_STORE_TIMEOUT="0.5", COUNTER_STATUS_DELAY="1"
        )
        with Gunicorn(env, workers=1) as server:
            callback = status_callback(status="undelivered", error_code=30003)
            sid = callback["MessageSid"]
            thread, result = in_background(lambda: server.post_signed("/twilio/status", callback))
            counter.wait_for("status-runs", f"{sid}:undelivered")
            redis_server.kill()
            thread.join(20)
            assert isinstance(result[0], Reply) and result[0].status == 503
            assert result[0].text == "store unavailable: try again later\n"
            redis_server.start()  # an empty Redis on the same port: Twilio's retry is recorded
            retry = server.post_signed("/twilio/status", callback)
            log = server.stderr()
    assert retry.status == 200
    assert counter.runs("final-runs", sid) == 1
    assert "Traceback" not in log and "Redis store" in log


def test_a_silent_redis_costs_one_short_timeout(counter: Counter) -> None:
    """A Redis that accepts and never answers: the kit's own timeout, then 503.

    (The server checks its store before serving: the Redis falls silent after the start.)
    """
    with RedisServer() as redis_server:
        env = bot(counter, redis_server.url, WEBHOOK_KIT_STORE_TIMEOUT="0.5")
        with Gunicorn(env, workers=1) as server:
            redis_server.pause()  # the kernel completes connections; nobody answers
            reply, waited = timed(lambda: server.post_signed("/twilio/messages", inbound_sms()))
    assert reply.status == 503
    assert waited < 3  # one 0.5 s timeout, not redis-py's 5 s times its retries


def test_a_paused_postgres_is_a_503_within_two_timeouts_not_a_killed_worker(
    counter: Counter, private_postgres: PrivateCluster
) -> None:
    """Every PostgreSQL process SIGSTOPped: sockets open, no answer, no libpq timeout fires.
    The store's watchdog cuts the connection; the same worker serves once it is resumed."""
    env = bot(counter, private_postgres.url, WEBHOOK_KIT_STORE_TIMEOUT="0.5")
    with Gunicorn(env, workers=1) as server:
        workers = server.worker_pids()
        assert server.post_signed("/twilio/status", status_callback()).status == 200
        private_postgres.pause()
        try:
            reply, waited = timed(lambda: server.post_signed("/twilio/messages", inbound_sms()))
        finally:
            private_postgres.resume()
        assert reply.status == 503 and "Traceback" not in reply.text
        assert waited < 5  # two 0.5 s timeouts and a watchdog round, not gunicorn's 14 s
        deadline = time.monotonic() + 15
        while (status := server.post_signed("/twilio/status", status_callback()).status) != 200:
            assert status == 503 and time.monotonic() < deadline
            time.sleep(0.2)
        assert server.worker_pids() == workers
        log = server.stderr()
    assert "no answer in 1.0 s; cutting the connection" in log


# -- SQLite: a held write lock, and a file made unwritable --------------------------------------


def test_a_held_sqlite_write_lock_is_a_bounded_wait_then_503(
    counter: Counter, tmp_path: Path
) -> None:
    db = tmp_path / "kit.db"
    env = bot(counter, f"sqlite:///{db}", WEBHOOK_KIT_STORE_TIMEOUT="1")
    with Gunicorn(env, workers=2) as server:
        assert server.post_signed("/twilio/status", status_callback()).status == 200
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # an outside connection takes the write lock
        try:
            blocked, waited = timed(
                lambda: server.post_signed("/twilio/messages", inbound_sms("locked"))
            )
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        after = server.post_signed("/twilio/messages", inbound_sms("free"))
    assert blocked.status == 503
    assert 0.9 < waited < 4  # WEBHOOK_KIT_STORE_TIMEOUT=1, then the answer
    assert after.status == 200


def unprivileged() -> list[str]:
    """A command prefix under which file permissions apply (as root they would not)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot make a file unwritable")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def test_sqlite_unwritable_then_restored_serves_again_within_a_second(
    counter: Counter, tmp_path: Path
) -> None:
    path = tmp_path / "store"
    path.mkdir()
    db = path / "kit.db"
    env = bot(counter, f"sqlite:///{db}")
    with Gunicorn(env, workers=2, wrapper=unprivileged()) as server:

        def burst(count: int) -> list[int]:
            return [
                server.post_signed("/twilio/messages", inbound_sms("x")).status
                for _ in range(count)
            ]

        assert set(burst(10)) == {200}
        files = [db, *path.glob("kit.db-*")]
        for file in files:
            os.chmod(file, 0o444)
        os.chmod(path, 0o555)
        # A worker that starts now opens the file read-only: replace one.
        victim = server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while len(set(server.worker_pids()) - {victim}) < 2:
            assert time.monotonic() < deadline, "gunicorn did not replace the worker"
            time.sleep(0.05)
        while_unwritable: list[int] = []
        deadline = time.monotonic() + 10  # until the new worker has booted and answers
        while while_unwritable.count(503) < 3 and time.monotonic() < deadline:
            while_unwritable += burst(1)
        os.chmod(path, 0o755)
        for file in files:
            os.chmod(file, 0o644)
        time.sleep(1.0)
        after = burst(20)
    os.chmod(path, 0o755)  # for the clean-up, also when an assertion failed midway
    assert set(while_unwritable) <= {200, 503} and 503 in while_unwritable
    assert set(after) == {200}
