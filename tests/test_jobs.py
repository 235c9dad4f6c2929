"""background=True handlers: enqueued with the claim, run by a runner, retried, dead letters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from server import ROOT, Gunicorn
from test_kit import TOKEN, make_app

from webhook_kit import (
    ConfigurationError,
    InboundMessage,
    MessageRecord,
    StatusCallback,
    WebhookKit,
)
from webhook_kit.cli import main
from webhook_kit.conversation import Conversation, conversation_id
from webhook_kit.emulator import Emulator
from webhook_kit.errors import SendInDoubtError, UnsubscribedRecipientError
from webhook_kit.events import Fields, parse_inbound
from webhook_kit.jobs import Job, JobKind, JobState
from webhook_kit.optout import OptOuts
from webhook_kit.sending import Sender
from webhook_kit.stores import Outcome, Store, open_store
from webhook_kit.testing import TWILIO_NUMBER, TwilioTestClient, inbound_sms

SID = "SM" + "7" * 32


def manual(kit: WebhookKit, **config: Any) -> tuple[Flask, TwilioTestClient, Store]:
    """An app whose jobs run only when the test says so (no runner threads)."""
    app = make_app(kit, **{"WEBHOOK_KIT_RUNNER": "off", "WEBHOOK_KIT_JOB_BACKOFF": 0, **config})
    client = app.test_client()
    assert isinstance(client, TwilioTestClient)
    return app, client, kit.pipeline(app).store


def run_all(kit: WebhookKit, app: Flask) -> int:
    executor = kit.executor(app)
    count = 0
    while executor.run_next():
        count += 1
    return count


def test_a_background_status_handler_runs_once_per_callback_off_the_request() -> None:
    kit = WebhookKit()
    seen: list[tuple[str, str]] = []

    @kit.on_status("undelivered", background=True)
    def slow_alert(update: StatusCallback) -> None:
        seen.append((update.message_sid, update.status.value))

    app, client, store = manual(kit)
    for _ in range(3):  # Twilio's retries and duplicates
        assert client.send_status(SID, "undelivered", error_code=30003).status_code == 200
    assert client.send_status(SID, "sent").status_code == 200  # no handler for it
    assert seen == []  # nothing ran inside the requests
    [job] = store.list_jobs()
    assert job.kind is JobKind.STATUS and job.state is JobState.PENDING
    assert job.key == f"status:{SID}:undelivered::30003#test_jobs.{slow_alert.__qualname__}"
    assert run_all(kit, app) == 1
    assert seen == [(SID, "undelivered")] and store.list_jobs() == []


def test_a_background_message_handler_is_acknowledged_at_once() -> None:
    kit = WebhookKit()

    @kit.on_message(keyword="REPORT", background=True, ack="One moment…")
    def report(message: InboundMessage) -> None:
        pass  # replies are covered with the emulator in test_jobs_e2e

    app, client, store = manual(kit)
    payload = inbound_sms("report please")
    assert client.send("messages", payload).texts == ["One moment…"]
    again = client.send("messages", payload)
    assert again.texts == ["One moment…"]  # the same answer, and no second job
    [job] = store.list_jobs()
    assert job.key.startswith("message:SM") and job.kind is JobKind.MESSAGE
    assert "Body=report+please" in job.payload
    assert run_all(kit, app) == 1


def test_a_background_step_saves_the_conversation_with_the_job() -> None:
    kit = WebhookKit()

    @kit.on_message(keyword="QUOTE")
    def ask(message: InboundMessage, conversation: Conversation) -> str:
        conversation.goto("quoting")
        return "Which item?"

    @kit.on_message(step="quoting", background=True, ack="Pricing it…")
    def price(message: InboundMessage) -> str:
        return f"{message.body}: 4 EUR"

    _, client, store = manual(kit)
    first = inbound_sms("QUOTE", from_="+14155550100")
    assert client.send("messages", first).texts == ["Which item?"]
    second = inbound_sms("lamp", from_="+14155550100")
    assert client.send("messages", second).texts == ["Pricing it…"]
    [job] = store.list_jobs()
    assert job.key == "message:" + second["MessageSid"]
    id = conversation_id(parse_inbound(Fields(second.items())))
    saved = store.get_conversation(id)
    assert saved is not None and b"Pricing it" in saved and b"lamp" in saved  # with the job
    assert store.claim("lock:" + id, 30).outcome is Outcome.CLAIMED  # released in that step


def test_a_background_reply_to_an_opted_out_person_is_dropped_not_retried(
    twilio_emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    twilio_emulator.add_number(TWILIO_NUMBER)
    kit = WebhookKit()

    @kit.on_message(keyword="REPORT", background=True)
    def report(message: InboundMessage) -> list[str]:
        return ["Your report", "Anything else?"]

    @kit.on_message(keyword="PING", background=True)
    def ping(message: InboundMessage) -> None:
        kit.send(in_reply_to=message, body="pong")  # the handler's own send, not caught

    app, client, store = manual(
        kit,
        WEBHOOK_KIT_JOB_ATTEMPTS=5,
        WEBHOOK_KIT_AUTH_TOKEN=twilio_emulator.auth_token,
        WEBHOOK_KIT_ACCOUNT_SID=twilio_emulator.account_sid,
        WEBHOOK_KIT_TWILIO_BASE_URL=twilio_emulator.url,
        WEBHOOK_KIT_PUBLIC_URL="http://bot.test",
    )
    person = "+14155550100"
    client.send("messages", inbound_sms("REPORT", from_=person))
    client.send("messages", inbound_sms("PING", from_=person))
    OptOuts(store).opt_out(person, TWILIO_NUMBER)  # e.g. STOP while the jobs waited
    assert run_all(kit, app) == 2  # each ran once: no retry of a 21610 refusal
    assert twilio_emulator.messages(to=person) == []  # nothing reached the API
    assert "reply 0 dropped" in caplog.text and "reply 1 dropped" in caplog.text
    [dead] = store.list_jobs()
    assert dead.state is JobState.DEAD and dead.attempts == 1
    assert dead.error is not None and dead.error.startswith(UnsubscribedRecipientError.__name__)


def test_a_failing_job_is_retried_then_dead_and_reported() -> None:
    kit = WebhookKit()
    attempts: list[int] = []
    reported: list[tuple[Exception, Any]] = []

    @kit.on_status(background=True)
    def flaky(update: StatusCallback) -> None:
        attempts.append(1)
        raise RuntimeError("CRM down")

    @kit.on_error
    def report(error: Exception, event: Any) -> None:
        reported.append((error, event))

    app, client, store = manual(kit, WEBHOOK_KIT_JOB_ATTEMPTS=3)
    client.send_status(SID, "delivered")
    assert run_all(kit, app) == 3  # backoff 0: each retry is due at once
    assert len(attempts) == 3
    [dead] = store.list_jobs(JobState.DEAD)
    assert dead.attempts == 3 and dead.error == "RuntimeError: CRM down"
    [(error, event)] = reported
    assert str(error) == "CRM down" and isinstance(event, StatusCallback)
    assert event.message_sid == SID
    assert store.retry_job(dead.key)
    assert run_all(kit, app) == 3 and len(attempts) == 6


def test_retries_back_off_exponentially() -> None:
    kit = WebhookKit()

    @kit.on_status(background=True)
    def flaky(update: StatusCallback) -> None:
        raise RuntimeError("no")

    app, client, store = manual(kit, WEBHOOK_KIT_JOB_BACKOFF=0.2)
    client.send_status(SID, "delivered")
    executor = kit.executor(app)
    for attempt in (1, 2, 3):
        before = time.time()
        [job] = store.list_jobs()
        while not executor.run_next():  # wait out the previous backoff
            time.sleep(0.02)
        [job] = store.list_jobs()
        assert job.state is JobState.PENDING and job.attempts == attempt
        delay = 0.2 * 2 ** (attempt - 1)
        assert job.run_at - before >= delay
        assert not executor.run_next()  # not due yet
        assert executor.run_key(job.key) == job.run_at  # a task queue learns when


def test_background_final_hook_runs_once_as_a_job() -> None:
    kit = WebhookKit()
    finals: list[MessageRecord] = []

    @kit.on_final(background=True)
    def archive(record: MessageRecord) -> None:
        finals.append(record)

    app, client, _ = manual(kit)
    client.send_status(SID, "sent")
    client.send_status(SID, "delivered")
    client.send_status(SID, "delivered")
    assert run_all(kit, app) == 1
    [record] = finals
    assert record.message_sid == SID and record.status is not None
    assert record.status.value == "delivered"


def test_a_job_whose_handler_is_gone_is_dead_with_a_clear_error() -> None:
    kit = WebhookKit()

    @kit.on_status(background=True)
    def track(update: StatusCallback) -> None:
        pass

    app, client, store = manual(kit, WEBHOOK_KIT_JOB_ATTEMPTS=1)
    client.send_status(SID, "sent")
    kit.registry.background.clear()  # as if a deploy renamed the handler
    assert run_all(kit, app) == 1
    [dead] = store.list_jobs(JobState.DEAD)
    assert dead.error is not None and "no background handler named" in dead.error


def test_the_embedded_runner_runs_jobs_in_the_serving_process() -> None:
    kit = WebhookKit()
    done = threading.Event()

    @kit.on_status(background=True)
    def track(update: StatusCallback) -> None:
        done.set()

    app = make_app(kit, WEBHOOK_KIT_JOB_POLL=0.05)
    app.test_client().send_status(SID, "sent")  # type: ignore[attr-defined]
    assert done.wait(10)
    deadline = time.monotonic() + 10
    while kit.pipeline(app).store.list_jobs() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert kit.pipeline(app).store.list_jobs() == []


def test_the_embedded_runner_outlives_an_unexpected_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from webhook_kit.jobs.embedded import EmbeddedRunner

    class Flaky:
        """An executor whose first rounds raise what no store should (a bug, say)."""

        calls = 0

        def run_next(self) -> bool:
            Flaky.calls += 1
            if Flaky.calls <= 3:
                raise OSError(9, "Bad file descriptor")
            return False

    runner = EmbeddedRunner(Flaky(), threads=1, poll=0.01)  # type: ignore[arg-type]
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while Flaky.calls < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        runner.stop()
    assert Flaky.calls >= 6  # polling went on after the errors
    failures = [r for r in caplog.records if "taking or running a job failed" in r.message]
    assert len(failures) == 1 and failures[0].exc_info is not None  # once per streak


class Blocking:
    """An executor whose one job runs until ``release`` is set."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.settled: list[bool] = []

    def run_next(self) -> bool:
        if self.started.is_set():
            return False
        self.started.set()
        self.settled.append(self.release.wait(5))
        return True


def test_stopping_the_embedded_runner_lets_the_running_job_settle() -> None:
    from webhook_kit.jobs.embedded import EmbeddedRunner

    executor = Blocking()
    runner = EmbeddedRunner(executor, threads=1, poll=0.01, grace=5)  # type: ignore[arg-type]
    runner.start()
    assert executor.started.wait(5)
    threading.Timer(0.2, executor.release.set).start()
    runner.stop()  # a SIGTERM'd worker: the job finishes and is settled before the exit
    assert executor.settled == [True]


def test_stopping_the_embedded_runner_waits_no_longer_than_its_grace() -> None:
    from webhook_kit.jobs.embedded import EmbeddedRunner

    executor = Blocking()
    runner = EmbeddedRunner(executor, threads=1, poll=0.01, grace=0.2)  # type: ignore[arg-type]
    runner.start()
    assert executor.started.wait(5)
    runner.stop()  # the job still runs: it is left to its lease
    assert executor.settled == []
    executor.release.set()


class TestRegistration:
    def test_ack_needs_background(self) -> None:
        with pytest.raises(ConfigurationError, match="ack="):
            WebhookKit().on_message(ack="hi")

    def test_background_handlers_come_before_init_app(self) -> None:
        kit = WebhookKit()
        app = make_app(kit)
        with pytest.raises(ConfigurationError, match=r"before kit\.init_app"):
            kit.on_status(background=True)(lambda update: None)
        assert kit.pipeline(app).runner is None

    def test_names_are_unique(self) -> None:
        kit = WebhookKit()

        def make() -> Any:
            def same(update: StatusCallback) -> None:
                pass

            return same

        kit.on_status(background=True)(make())
        with pytest.raises(ConfigurationError, match="two background handlers"):
            kit.on_status(background=True)(make())

    def test_celery_runner_needs_a_celery_app(self) -> None:
        kit = WebhookKit()
        kit.on_status(background=True)(lambda update: None)
        app = Flask(__name__)
        app.config.update(WEBHOOK_KIT_AUTH_TOKEN=TOKEN, WEBHOOK_KIT_STORE="memory://")
        app.config["WEBHOOK_KIT_RUNNER"] = "celery"
        with pytest.raises(ConfigurationError, match="needs a Celery app"):
            kit.init_app(app)

    def test_a_celery_app_in_the_extensions_runs_the_jobs_unless_told_otherwise(self) -> None:
        from celery import Celery

        from webhook_kit.jobs.celery import CeleryRunner
        from webhook_kit.jobs.embedded import EmbeddedRunner

        kit = WebhookKit()
        kit.on_status(background=True)(lambda update: None)
        runners = []
        for runner in ("", "embedded"):
            app = Flask(__name__)
            app.config.update(WEBHOOK_KIT_AUTH_TOKEN=TOKEN, WEBHOOK_KIT_STORE="memory://")
            if runner:
                app.config["WEBHOOK_KIT_RUNNER"] = runner
            app.extensions["celery"] = Celery("extension_test", broker="memory://")
            kit.init_app(app)
            runners.append(kit.pipeline(app).runner)
        assert [type(runner) for runner in runners] == [CeleryRunner, EmbeddedRunner]

    def test_a_background_handler_cannot_take_the_conversation(self) -> None:
        def slow(message: InboundMessage, conversation: Conversation) -> None:
            pass

        with pytest.raises(ConfigurationError, match="takes a conversation"):
            WebhookKit().on_message(background=True)(slow)

    def test_unknown_runner(self) -> None:
        with pytest.raises(ConfigurationError, match="WEBHOOK_KIT_RUNNER"):
            make_app(WebhookKit(), WEBHOOK_KIT_RUNNER="rq")

    def test_no_background_handlers_no_executor(self) -> None:
        kit = WebhookKit()
        app = make_app(kit)
        with pytest.raises(ConfigurationError, match="no background=True handlers"):
            kit.executor(app)


class TestKeyedSends:
    """kit.send(key=...): what makes a retried job's reply go out once."""

    @pytest.fixture
    def sender(self, twilio_emulator: Emulator) -> Sender:
        twilio_emulator.add_number(TWILIO_NUMBER)
        client = twilio_emulator.client()
        return Sender(open_store("memory://"), client, status_url="http://b.test/s", secret_key="k")

    def test_a_key_sends_once(self, sender: Sender, twilio_emulator: Emulator) -> None:
        first = sender.send("+14155550100", "hi", from_=TWILIO_NUMBER, key="job-1#reply0")
        again = sender.send("+14155550100", "hi", from_=TWILIO_NUMBER, key="job-1#reply0")
        assert again.sid == first.sid and again.to == "+14155550100"
        other = sender.send("+14155550100", "hi", from_=TWILIO_NUMBER, key="job-2#reply0")
        assert other.sid != first.sid
        assert len(twilio_emulator.messages(to="+14155550100")) == 2

    def test_an_interrupted_send_is_found_on_twilio_not_sent_again(
        self, twilio_emulator: Emulator, tmp_path: Path
    ) -> None:
        twilio_emulator.add_number(TWILIO_NUMBER)
        url = f"sqlite:///{tmp_path}/kit.db"
        sender = Sender(
            open_store(url), twilio_emulator.client(), status_url="http://b.test/s", secret_key="k"
        )
        created = twilio_emulator.client().messages.create(
            to="+14155550100", from_=TWILIO_NUMBER, body="hi"
        )  # the process that sent it died before it could record the SID...
        _claim_in_a_dead_process(url, "send:job-3#reply0")  # ...holding the key
        found = sender.send("+14155550100", "hi", from_=TWILIO_NUMBER, key="job-3#reply0")
        assert found.sid == created.sid
        assert len(twilio_emulator.messages(to="+14155550100")) == 1
        record = sender.store.get_message(created.sid)
        assert record is not None  # the ledger knows it now

        _claim_in_a_dead_process(url, "send:job-4#reply0")  # died before reaching Twilio
        sent = sender.send("+14155550100", "other", from_=TWILIO_NUMBER, key="job-4#reply0")
        assert len(twilio_emulator.messages(to="+14155550100")) == 2 and sent.body == "other"

        sender.store.claim("send:job-5#reply0", 120)  # a live process is sending it
        with pytest.raises(SendInDoubtError, match="under way"):
            sender.send("+14155550100", "hi", from_=TWILIO_NUMBER, key="job-5#reply0")


def _claim_in_a_dead_process(store_url: str, key: str) -> None:
    pid = os.fork()
    if pid == 0:
        open_store(store_url).claim(key, 120)
        os._exit(0)
    os.waitpid(pid, 0)


class TestCommands:
    """webhook-kit jobs list|retry|purge, and webhook-kit worker."""

    def test_list_retry_purge(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        url = f"sqlite:///{tmp_path}/kit.db"
        monkeypatch.setenv("WEBHOOK_KIT_STORE", url)
        store = open_store(url)
        jobs = [
            Job(f"status:SM{i}::#bot.track", JobKind.STATUS, "bot.track", "", i) for i in (1, 2)
        ]
        store.complete("status:x", store.claim("status:x", 30).owner, b"", jobs=jobs)
        for _ in jobs:
            taken = store.take_job(30)
            assert taken is not None
            store.finish_job(taken.key, taken.owner, JobState.DEAD, error="KeyError: 'crm'")
        runner = CliRunner()
        listed = runner.invoke(main, ["jobs", "list", "--state", "dead"])
        assert listed.exit_code == 0, listed.output
        assert listed.stderr == f"store: {url}\n"  # which store it read
        lines = listed.stdout.splitlines()
        assert lines[0].split() == ["KEY", "STATE", "ATTEMPTS", "CREATED", "LAST", "ERROR"]
        assert "status:SM1::#bot.track  dead" in lines[1] and "KeyError: 'crm'" in lines[1]
        retried = runner.invoke(main, ["jobs", "retry", jobs[0].key, "status:nope"])
        assert retried.exit_code == 1
        assert "retried 1 job(s)" in retried.output and "status:nope" in retried.output
        assert [job.state for job in store.list_jobs()] == [JobState.PENDING, JobState.DEAD]
        assert runner.invoke(main, ["jobs", "retry"]).exit_code == 1  # says what to name
        as_json = runner.invoke(main, ["jobs", "list", "--json"])
        assert [json.loads(line)["state"] for line in as_json.stdout.splitlines()] == [
            "pending",
            "dead",
        ]
        purged = runner.invoke(main, ["jobs", "purge"])
        assert purged.stdout == "purged 1 job(s)\n"
        assert [job.key for job in store.list_jobs()] == [jobs[0].key]

    def test_worker_runs_what_the_web_process_only_stored(
        self, twilio_emulator: Emulator, tmp_path: Path
    ) -> None:
        twilio_emulator.add_number(TWILIO_NUMBER)
        store_url = f"sqlite:///{tmp_path}/kit.db"
        env = {
            "WEBHOOK_KIT_HANDLERS": "apps.slow_bot",
            "WEBHOOK_KIT_STORE": store_url,
            "WEBHOOK_KIT_TWILIO_BASE_URL": twilio_emulator.url,
            "WEBHOOK_KIT_ACCOUNT_SID": twilio_emulator.account_sid,
            "WEBHOOK_KIT_PUBLIC_URL": "http://bot.test",
            "WEBHOOK_KIT_AUTH_TOKEN": twilio_emulator.auth_token,
            "WEBHOOK_KIT_JOB_POLL": "0.1",
            "SLOW_BOT_SLEEP": "0",
        }
        with Gunicorn({**env, "WEBHOOK_KIT_RUNNER": "off"}) as web:
            form = inbound_sms("ping", from_="+14155550100")
            public = env["WEBHOOK_KIT_PUBLIC_URL"] + "/twilio/messages"
            reply = web.post_signed(
                "/twilio/messages", form, signed_url=public, token=twilio_emulator.auth_token
            )
            assert reply.status == 200
            time.sleep(0.5)
            assert twilio_emulator.messages(to="+14155550100") == []  # nobody runs jobs
        worker = subprocess.Popen(
            [sys.executable, "-m", "webhook_kit.cli", "worker", "--threads", "2"],
            env={**os.environ, **env, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            while not twilio_emulator.messages(to="+14155550100"):
                assert time.monotonic() < deadline, worker.stderr and worker.stderr.read()
                time.sleep(0.1)
        finally:
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=15)
        assert worker.returncode == 0
        assert b"webhook-kit worker running jobs" in output
        [sent] = twilio_emulator.messages(to="+14155550100")
        assert sent.body == "Done: ping" and open_store(store_url).list_jobs() == []

    def test_worker_needs_background_handlers(self) -> None:
        result = CliRunner().invoke(
            main, ["worker", "--handlers", "examples.echo_bot"], env={"TWILIO_AUTH_TOKEN": "t"}
        )
        assert result.exit_code == 1 and "no background=True handlers" in result.output


def test_celery_runner_publishes_jobs_and_republishes_those_the_broker_lost(
    redis_url: str,
) -> None:
    import redis
    from celery import Celery

    queue = f"wk-test-{uuid.uuid4().hex[:10]}"
    broker = redis.Redis(host="127.0.0.1", port=6379)
    celery = Celery("jobs_test", broker="redis://127.0.0.1:6379/0")
    celery.conf.task_default_queue = queue
    kit = WebhookKit()

    @kit.on_status(background=True)
    def track(update: StatusCallback) -> None:
        pass

    app = Flask(__name__)
    app.config.update(
        WEBHOOK_KIT_AUTH_TOKEN=TOKEN, WEBHOOK_KIT_STORE=redis_url, WEBHOOK_KIT_JOB_LEASE=1
    )
    app.test_client_class = TwilioTestClient
    kit.init_app(app, celery=celery)
    assert app.extensions["celery"] is celery  # where `celery -A app:...` finds it
    try:
        app.test_client().send_status(SID, "sent")  # type: ignore[attr-defined]
        assert broker.llen(queue) == 1  # published after it was stored
        [job] = kit.pipeline(app).store.list_jobs()
        broker.delete(queue)  # the broker lost it
        assert _eventually(lambda: broker.llen(queue) >= 1, 10)  # the sweep found it
        assert kit.executor(app).run_key(job.key) is None  # a worker runs it...
        assert kit.executor(app).run_key(job.key) is None  # ...once: a redelivery does nothing
        assert kit.pipeline(app).store.list_jobs() == []
    finally:
        runner = kit.pipeline(app).runner
        assert runner is not None
        runner.stop()
        broker.delete(queue)


def _eventually(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_every_message_of_a_background_reply_is_sent_as_a_reply(
    twilio_emulator: Emulator,
) -> None:
    twilio_emulator.add_number(TWILIO_NUMBER)
    kit = WebhookKit()

    @kit.on_message(pattern=r"^photo (?P<what>\w+)", background=True)
    def photo(message: InboundMessage) -> Any:
        assert message.match is not None  # the route's pattern matched again in the worker
        reply = kit.reply()
        reply.message(f"Here is your {message.match['what']}").media("https://example.com/c.png")
        reply.message("Anything else?")
        return reply

    app, client, store = manual(
        kit,
        WEBHOOK_KIT_AUTH_TOKEN=twilio_emulator.auth_token,
        WEBHOOK_KIT_ACCOUNT_SID=twilio_emulator.account_sid,
        WEBHOOK_KIT_TWILIO_BASE_URL=twilio_emulator.url,
        WEBHOOK_KIT_PUBLIC_URL="http://bot.test",
    )
    form = inbound_sms("photo cat", from_="+14155550100")
    assert client.send("messages", form).texts == []  # no ack: an empty <Response/>
    assert run_all(kit, app) == 1
    sent = twilio_emulator.messages(to="+14155550100")
    assert [(m.body, m.num_media) for m in sent] == [("Here is your cat", 1), ("Anything else?", 0)]
    records = [store.get_message(m.sid) for m in sent]
    assert all(r is not None and r.in_reply_to == form["MessageSid"] for r in records)
