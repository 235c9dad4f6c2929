"""Slow handlers end to end: gunicorn hosts, the emulator, the embedded runner and Celery.

Counts and states only (how fast the webhook is answered is measured in ``bench/``). Each
message is delivered twice, once to each of two hosts sharing a store, and a worker is
killed with SIGKILL mid-way: every message still gets exactly one reply, through the
emulator, recorded in the ledger as a reply to it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import require_redis, require_service
from server import ROOT, TOKEN, Gunicorn

from webhook_kit import Direction
from webhook_kit.emulator import Emulator
from webhook_kit.stores import Store, open_store
from webhook_kit.testing import TWILIO_NUMBER, inbound_sms

pytestmark = pytest.mark.timeout(240)

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
MESSAGES = 200


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(auth_token=TOKEN, speed=50) as running:
        yield running


def app_env(emulator: Emulator, store: str, **extra: str) -> dict[str, str]:
    return {
        "WEBHOOK_KIT_HANDLERS": "apps.slow_bot",
        "WEBHOOK_KIT_STORE": store,
        "WEBHOOK_KIT_TWILIO_BASE_URL": emulator.url,
        "WEBHOOK_KIT_ACCOUNT_SID": emulator.account_sid,
        "WEBHOOK_KIT_JOB_POLL": "0.1",
        **extra,
    }


def hosts(env: dict[str, str], count: int, workers: int) -> list[Gunicorn]:
    """Gunicorn hosts sharing ``env``; status callbacks go to the first one."""
    made = [Gunicorn(env, workers=workers) for _ in range(count)]
    env["WEBHOOK_KIT_PUBLIC_URL"] = made[0].base  # for the Celery workers too
    for host in made:
        host.env["WEBHOOK_KIT_PUBLIC_URL"] = made[0].base
    return made


def post_twice(hosts: list[Gunicorn], forms: list[list[tuple[str, str]]]) -> list[int]:
    """Deliver every form to every host, concurrently; retry what a killed worker dropped."""

    def deliver(job: tuple[Gunicorn, list[tuple[str, str]]]) -> int:
        host, form = job
        for _ in range(20):
            try:
                # Behind one public URL (a load balancer), as Twilio signs it.
                public = host.env["WEBHOOK_KIT_PUBLIC_URL"] + "/twilio/messages"
                status = host.post_signed("/twilio/messages", form, signed_url=public).status
            except OSError:  # the worker serving it was killed: Twilio would retry
                status = 0
            if status == 200:
                return status
            time.sleep(0.2)
        return status

    work = [(host, form) for form in forms for host in hosts]
    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(deliver, work))


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def replies(emulator: Emulator) -> list[str]:
    return [m.body for m in emulator.messages(from_=TWILIO_NUMBER) if m.direction != "inbound"]


def forms(count: int) -> list[list[tuple[str, str]]]:
    return [
        list(inbound_sms(f"msg-{index}", from_=f"+1415555{index:04d}").items())
        for index in range(count)
    ]


def assert_exactly_one_reply_each(emulator: Emulator, store: Store, count: int) -> None:
    assert wait_for(lambda: len(replies(emulator)) >= count and not store.list_jobs(), 120), (
        f"{len(replies(emulator))} replies, jobs left: {store.list_jobs()[:3]}"
    )
    time.sleep(1)  # anything late (a duplicate) would show up now
    got = replies(emulator)
    assert len(got) == count
    assert sorted(got) == sorted(f"Done: msg-{index}" for index in range(count))


def test_a_20_second_handler_is_answered_at_once_and_its_reply_reaches_the_person(
    emulator: Emulator, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path}/kit.db"
    env = app_env(emulator, store_url, SLOW_BOT_SLEEP="20", SLOW_BOT_ACK="One moment…")
    [host] = hosts(env, 1, workers=1)
    with host:
        emulator.add_number(TWILIO_NUMBER, sms_url=host.base + "/twilio/messages")
        person = emulator.handset("+14155550123")
        exchange = person.send(TWILIO_NUMBER, "summarise my week")
        assert [reply.body for reply in exchange.replies] == ["One moment…"]
        store = open_store(store_url)
        [job] = store.list_jobs()
        assert job.key == f"message:{exchange.inbound.sid}"
        assert wait_for(lambda: len(person.received()) == 2, 60)
        assert [m.body for m in person.received()] == ["One moment…", "Done: summarise my week"]
        assert store.list_jobs() == []
        reply = person.received()[1]
        record = store.get_message(reply.sid)
        assert record is not None and record.in_reply_to == exchange.inbound.sid
        assert record.direction is Direction.OUTBOUND_API and record.to == person.address


def test_embedded_runner_200_messages_twice_on_two_hosts_and_a_killed_worker(
    emulator: Emulator, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path}/kit.db"
    emulator.add_number(TWILIO_NUMBER)
    env = app_env(emulator, store_url, SLOW_BOT_SLEEP="1", WEBHOOK_KIT_JOB_LEASE="3")
    first, second = hosts(env, 2, workers=2)
    with first, second:
        batch = forms(MESSAGES)
        with ThreadPoolExecutor(1) as background:
            posting = background.submit(post_twice, [first, second], batch)
            store = open_store(store_url)
            assert wait_for(lambda: len(replies(emulator)) >= 20, 60)
            running = [job for job in store.list_jobs() if job.owner]
            victim = first.worker_pids()[0]
            os.kill(victim, signal.SIGKILL)  # mid-task: its threads held jobs
            statuses = posting.result()
            assert set(statuses) == {200}, statuses
        assert running  # jobs were in flight when the worker died
        assert_exactly_one_reply_each(emulator, store, MESSAGES)


def broker_reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class CeleryWorker:
    """``celery -A webhook_kit.standalone:celery worker`` as a subprocess, killed by pid."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {
            **os.environ,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> CeleryWorker:
        args = [sys.executable, "-m", "celery", "-A", "webhook_kit.standalone:celery", "worker"]
        args += ["--pool", "threads", "--concurrency", "16", "--loglevel", "warning"]
        self.process = subprocess.Popen(
            args, env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_celery_200_messages_twice_on_two_hosts_and_a_killed_worker(
    broker: str, emulator: Emulator, redis_url: str
) -> None:
    if broker == "rabbitmq":
        require_service(
            broker_reachable(5672),
            "no RabbitMQ on 127.0.0.1:5672 (start one with: rabbitmq-server -detached)",
        )
    require_redis()
    queue = f"wk-test-{uuid.uuid4().hex[:10]}"
    broker_url = RABBITMQ if broker == "rabbitmq" else "redis://127.0.0.1:6379/0"
    emulator.add_number(TWILIO_NUMBER)
    env = app_env(
        emulator,
        redis_url,
        SLOW_BOT_SLEEP="1",
        SLOW_BOT_BROKER=broker_url,
        SLOW_BOT_QUEUE=queue,
        WEBHOOK_KIT_JOB_LEASE="3",
    )
    store = open_store(redis_url)
    with ExitStack() as stack:
        first, second = (stack.enter_context(host) for host in hosts(env, 2, workers=2))
        worker = CeleryWorker(env).start()
        stack.callback(worker.kill)
        with ThreadPoolExecutor(1) as background:
            posting = background.submit(post_twice, [first, second], forms(MESSAGES))
            assert wait_for(lambda: len(replies(emulator)) >= 20, 90)
            worker.kill()  # SIGKILL mid-task: 16 tasks were running
            replacement = CeleryWorker(env).start()
            stack.callback(replacement.kill)
            statuses = posting.result()
            assert set(statuses) == {200}, statuses
        assert_exactly_one_reply_each(emulator, store, MESSAGES)
        stack.callback(_delete_queue, broker_url, queue)


def _delete_queue(broker_url: str, queue: str) -> None:
    from kombu import Connection

    with Connection(broker_url) as connection:
        connection.default_channel.queue_delete(queue)
