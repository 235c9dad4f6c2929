"""Conversations on every store: the survey example, duplicates, races, isolation, expiry."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from server import Gunicorn

from webhook_kit import ConfigurationError, WebhookKit
from webhook_kit.cli import main
from webhook_kit.conversation import (
    HISTORY_LIMIT,
    Conversation,
    Flow,
    Question,
    conversation_id,
    loads,
)
from webhook_kit.events import Fields, parse_inbound
from webhook_kit.standalone import create_app
from webhook_kit.stores import ConversationWrite, Outcome, Store, open_store
from webhook_kit.testing import CUSTOMER, MESSAGING_SERVICE_SID, TwilioTestClient, inbound_sms
from webhook_kit.twiml import parse

TOKEN = "conversation-test-token"
SURVEY = ["hi", "Ada", "36", "Paris", "5", "yes"]
FINAL_STATE = {
    "name": "Ada",
    "age": 36,
    "city": "Paris",
    "rating": 5,
    "contact": True,
    "completed": True,
}
SURVEY_REPLIES = [
    "Welcome to our five-question survey.",
    "What is your name?",
    "How old are you?",
    "Which city do you live in?",
    "From 1 to 5, how much do you like our service?",
    "May we contact you about your answers? (yes/no)",
    "Thank you, Ada! Your answers are saved.",
]


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param in ("redis", "postgres"):
        return str(request.getfixturevalue(f"{request.param}_url"))
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/kit.db"


def make_app(handlers: str, url: str, **config: Any) -> Flask:
    app = create_app(
        {"WEBHOOK_KIT_HANDLERS": handlers},
        config={"WEBHOOK_KIT_AUTH_TOKEN": TOKEN, "WEBHOOK_KIT_STORE": url, **config},
    )
    app.test_client_class = TwilioTestClient
    return app


def client_of(app: Flask) -> TwilioTestClient:
    client = app.test_client()
    assert isinstance(client, TwilioTestClient)
    return client


def saved(app: Flask, from_: str = CUSTOMER) -> Conversation | None:
    """The conversation of ``from_`` with the test number as the store holds it."""
    id = conversation_id(parse_inbound(Fields(inbound_sms(from_=from_).items())))
    data = app.extensions["webhook_kit"].pipeline(app).store.get_conversation(id)
    return None if data is None else loads(id, data, time.time())


def outcome(conversation: Conversation | None) -> tuple[Any, ...]:
    """What must not depend on duplicates or races: state, step and the words exchanged."""
    assert conversation is not None
    words = [(turn.direction, turn.body) for turn in conversation.history]
    return conversation.state, conversation.step, words


def run_survey(app: Flask, from_: str = CUSTOMER) -> list[str]:
    return client_of(app).conversation(from_=from_).send_all(SURVEY)


class TestSurveyOnEveryStore:
    def test_five_steps_complete(self, store_url: str) -> None:
        app = make_app("examples.survey_bot", store_url)
        assert run_survey(app) == SURVEY_REPLIES
        conversation = saved(app)
        assert conversation is not None
        assert conversation.state == FINAL_STATE and conversation.step is None
        assert [turn.direction for turn in conversation.history[:3]] == ["in", "out", "out"]
        assert conversation.history[0].message_sid and conversation.history[0].body == "hi"

    def test_duplicates_and_races_end_as_a_clean_run(self, store_url: str) -> None:
        clean = make_app("examples.survey_bot", store_url)
        run_survey(clean, from_="+14155550101")
        expected = outcome(saved(clean, "+14155550101"))

        app = make_app("examples.survey_bot", store_url)
        client = client_of(app)
        replies: list[str] = []
        for index, body in enumerate(SURVEY):
            payload = inbound_sms(body)
            if index in (2, 4):  # two steps' webhooks raced from two processes (or threads)
                answers = race(store_url, app, payload)
            else:
                answers = [client.send("messages", payload).texts for _ in range(2)]
            assert answers[0] == answers[1], body
            replies += answers[0]
        assert replies == SURVEY_REPLIES
        assert outcome(saved(app)) == expected

    def test_people_never_see_each_others_state(self, store_url: str) -> None:
        app = make_app("examples.survey_bot", store_url)
        ada = client_of(app).conversation(from_="+14155550111")
        bob = client_of(app).conversation(from_="+14155550122")
        ada.send_all(["hi", "Ada"])
        assert bob.send_all(["hi", "Bob", "41"])[-1] == "Which city do you live in?"
        assert ada.send("36").texts == ["Which city do you live in?"]
        whatsapp = client_of(app).conversation(from_="whatsapp:+14155550111")
        assert whatsapp.send("Eve").texts[-1] == "What is your name?"  # another channel
        ada_state = saved(app, "+14155550111")
        bob_state = saved(app, "+14155550122")
        assert ada_state is not None and bob_state is not None
        assert ada_state.state == {"name": "Ada", "age": 36}
        assert bob_state.state == {"name": "Bob", "age": 41}

    def test_invalid_answers_are_asked_again(self, store_url: str) -> None:
        app = make_app("examples.survey_bot", store_url)
        texts = client_of(app).conversation().send_all(["hi", "Ada", "old", "200", "36"])
        assert texts[-3:] == [
            "Sorry, an age is a whole number from 1 to 129. How old are you?",
            "Sorry, an age is a whole number from 1 to 129. How old are you?",
            "Which city do you live in?",
        ]


def _deliver_in_process(url: str, payload: dict[str, str], barrier: Any, out: Any) -> None:
    app = make_app("examples.survey_bot", url)
    client = client_of(app)
    barrier.wait()
    out.put(client.send("messages", payload).texts)


def race(url: str, app: Flask, payload: dict[str, str]) -> list[list[str]]:
    """Deliver ``payload`` twice at once: from two processes, or two threads for memory://."""
    if url.startswith("memory"):
        barrier = threading.Barrier(2)

        def send() -> list[str]:
            client = client_of(app)
            barrier.wait()
            return client.send("messages", payload).texts

        with ThreadPoolExecutor(2) as pool:
            return [future.result() for future in [pool.submit(send) for _ in range(2)]]
    context = multiprocessing.get_context("spawn")
    process_barrier = context.Barrier(2)
    queue = context.Queue()
    processes = [
        context.Process(target=_deliver_in_process, args=(url, payload, process_barrier, queue))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    answers = [queue.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    return answers


class TestSerialisation:
    def test_messages_of_one_person_run_one_at_a_time(self, store_url: str) -> None:
        app = make_app("apps.tally_bot", store_url, WEBHOOK_KIT_CLAIM_WAIT=10)
        payloads = [inbound_sms(f"message {i}") for i in range(8)]

        def send(payload: dict[str, str]) -> int:
            return client_of(app).send("messages", payload).status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(send, payloads)) == [200] * 8
        conversation = saved(app)
        assert conversation is not None and conversation.state == {"tally": 8}
        assert sorted(t.body for t in conversation.history if t.direction == "out") == sorted(
            f"tally {n}" for n in range(1, 9)
        )

    def test_a_failing_handler_changes_nothing_and_frees_the_conversation(
        self, store_url: str
    ) -> None:
        app = make_app("apps.tally_bot", store_url, WEBHOOK_KIT_CLAIM_WAIT=0.5)
        client = client_of(app)
        assert client.send_message("one").texts == ["tally 1"]
        assert client.send_message("FAIL").status_code == 500
        assert client.send_message("two").texts == ["tally 2"]  # not stuck behind a lock

    def test_end_forgets_the_conversation(self, store_url: str) -> None:
        app = make_app("apps.tally_bot", store_url)
        client = client_of(app)
        client.send_message("one")
        assert client.send_message("BYE").texts == ["bye"]
        assert saved(app) is None
        assert client.send_message("again").texts == ["tally 1"]

    def test_it_expires_after_the_ttl(self, store_url: str) -> None:
        app = make_app("apps.tally_bot", store_url, WEBHOOK_KIT_CONVERSATION_TTL=1)
        client = client_of(app)
        assert client.send_message("one").texts == ["tally 1"]
        time.sleep(1.2)
        assert client.send_message("two").texts == ["tally 1"]


class TestStoreContract:
    @pytest.fixture
    def store(self, store_url: str) -> Iterator[Store]:
        store = open_store(store_url)
        yield store
        store.close()

    def write(self, store: Store, data: bytes | None, ttl: float = 30) -> ConversationWrite:
        lock = store.claim("lock:+1|c", 30)
        return ConversationWrite("+1|c", lock.owner, data, ttl)

    def test_saved_with_the_claim_and_the_lock_released(self, store: Store) -> None:
        claim = store.claim("message:SM1", 30)
        store.complete(
            "message:SM1", claim.owner, b"<Response/>", conversation=self.write(store, b"{}")
        )
        assert store.get_conversation("+1|c") == b"{}"
        assert store.claim("message:SM1", 30).outcome is Outcome.DONE
        assert store.claim("lock:+1|c", 30).outcome is Outcome.CLAIMED

    def test_a_lost_claim_saves_nothing(self, store: Store) -> None:
        stale = store.claim("message:SM1", 0.1)
        time.sleep(0.2)
        store.claim("message:SM1", 30)  # taken over by a retry
        store.complete("message:SM1", stale.owner, b"late", conversation=self.write(store, b"{}"))
        assert store.get_conversation("+1|c") is None
        assert store.claim("lock:+1|c", 30).outcome is Outcome.BUSY  # the lock was not freed

    def test_none_deletes_and_ttl_expires(self, store: Store) -> None:
        for data, ttl in [(b"1", 30.0), (None, 30.0), (b"2", 0.2)]:
            key = f"message:{ttl}:{data!r}"
            claim = store.claim(key, 30)
            store.complete(key, claim.owner, b"", conversation=self.write(store, data, ttl))
            assert store.get_conversation("+1|c") == data
        time.sleep(0.3)
        assert store.get_conversation("+1|c") is None


class TestAPI:
    def test_state_must_be_json(self) -> None:
        kit = WebhookKit()

        @kit.on_message()
        def keep(message: Any, conversation: Conversation) -> str:
            conversation.state["when"] = object()
            return "kept?"

        app = Flask(__name__)
        app.config.update(WEBHOOK_KIT_AUTH_TOKEN=TOKEN, WEBHOOK_KIT_STORE="memory://")
        kit.init_app(app)
        app.test_client_class = TwilioTestClient
        reply = client_of(app).send_message("hi")
        assert reply.status_code == 500  # the handler's mistake, named in the log

    def test_history_is_bounded(self) -> None:
        app = make_app("apps.tally_bot", "memory://")
        client = client_of(app)
        for n in range(HISTORY_LIMIT):
            client.send_message(f"m{n}")
        conversation = saved(app)
        assert conversation is not None and len(conversation.history) == HISTORY_LIMIT
        assert conversation.history[-1].body == f"tally {HISTORY_LIMIT}"

    def test_one_argument_handlers_load_nothing(self) -> None:
        kit = WebhookKit()
        kit.on_message()(lambda message: "hi")
        assert not kit.registry.messages.needs_conversation
        kit.on_message(step="x")(lambda message: "hi")
        assert kit.registry.messages.needs_conversation

    def test_flow_needs_questions(self) -> None:
        with pytest.raises(ValueError, match="at least one question"):
            Flow("empty", [], done=lambda conversation: None)
        flow = Flow("f", [Question("a", "A?")], done=lambda conversation: "done")
        assert flow.step_of(flow.questions[0]) == "f:a"

    def test_bad_ttl_is_a_configuration_error(self) -> None:
        with pytest.raises(ConfigurationError, match="WEBHOOK_KIT_CONVERSATION_TTL"):
            make_app("apps.tally_bot", "memory://", WEBHOOK_KIT_CONVERSATION_TTL="soon")


class TestTwoHostsSharingRedis:
    """End to end: two gunicorn instances on one Redis behave as one host."""

    def test_the_survey_alternating_hosts_per_message(self, redis_url: str) -> None:
        env = {"WEBHOOK_KIT_STORE": redis_url, "WEBHOOK_KIT_HANDLERS": "examples.survey_bot"}
        with Gunicorn(env, workers=2) as host_a, Gunicorn(env, workers=2) as host_b:
            texts: list[str] = []
            for index, body in enumerate(SURVEY):
                first, second = (host_a, host_b) if index % 2 == 0 else (host_b, host_a)
                payload = inbound_sms(body)
                reply = first.post_signed("/twilio/messages", payload)
                assert reply.status == 200, reply.text
                assert second.post_signed("/twilio/messages", payload).body == reply.body
                texts += [str(message.body) for message in parse(reply.body).messages]
        assert texts == SURVEY_REPLIES
        store = open_store(redis_url)
        id = conversation_id(parse_inbound(Fields(inbound_sms().items())))
        conversation = loads(id, store.get_conversation(id), time.time())
        store.close()
        assert conversation.state == FINAL_STATE

    def test_concurrent_messages_of_one_person_across_hosts(self, redis_url: str) -> None:
        env = {"WEBHOOK_KIT_STORE": redis_url, "WEBHOOK_KIT_HANDLERS": "apps.tally_bot"}
        with Gunicorn(env, workers=2) as host_a, Gunicorn(env, workers=2) as host_b:
            hosts = [host_a, host_b] * 5

            def send(host: Gunicorn) -> int:
                return host.post_signed("/twilio/messages", inbound_sms("+1")).status

            with ThreadPoolExecutor(10) as pool:
                assert list(pool.map(send, hosts)) == [200] * 10
        store = open_store(redis_url)
        id = conversation_id(parse_inbound(Fields(inbound_sms().items())))
        conversation = loads(id, store.get_conversation(id), time.time())
        store.close()
        assert conversation.state == {"tally": 10}


class TestTimeouts:
    def test_run_once_when_the_person_stays_silent(self, store_url: str) -> None:
        app = make_app("apps.tally_bot", store_url)
        kit = app.extensions["webhook_kit"]
        client = client_of(app)
        assert client.send_message("WAIT").texts == ["waiting"]
        assert kit.run_timeouts(app) == 0  # not due yet
        time.sleep(0.3)
        assert kit.run_timeouts(app) == 1
        assert kit.run_timeouts(app) == 0  # once
        conversation = saved(app)
        assert conversation is not None and conversation.state == {"timeouts": 1}
        assert conversation.timeout_at is None

    def test_a_message_cancels_it(self, store_url: str) -> None:
        app = make_app("apps.tally_bot", store_url)
        client = client_of(app)
        client.send_message("WAIT")
        client.send_message("here")
        time.sleep(0.3)
        assert app.extensions["webhook_kit"].run_timeouts(app) == 0

    def test_maintenance_runs_them(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        url = f"sqlite:///{tmp_path}/kit.db"
        client_of(make_app("apps.tally_bot", url)).send_message("WAIT")
        time.sleep(0.3)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
        result = CliRunner().invoke(
            main, ["maintenance", "--store", url, "--handlers", "apps.tally_bot"]
        )
        assert result.exit_code == 0, result.output
        assert result.output.splitlines()[-1] == "ran 1 conversation timeout(s)"

    def test_a_failing_hook_runs_again_next_time(self, caplog: pytest.LogCaptureFixture) -> None:
        kit = WebhookKit()
        calls: list[str] = []

        @kit.on_message()
        def wait(message: Any, conversation: Conversation) -> None:
            conversation.timeout_after(0)

        @kit.on_timeout
        def flaky(conversation: Conversation) -> None:
            calls.append(conversation.address)
            if len(calls) == 1:
                raise RuntimeError("not now")

        app = Flask(__name__)
        app.config.update(WEBHOOK_KIT_AUTH_TOKEN=TOKEN, WEBHOOK_KIT_STORE="memory://")
        kit.init_app(app)
        app.test_client_class = TwilioTestClient
        client_of(app).send_message("hi")
        assert kit.run_timeouts(app) == 0 and "on_timeout hook failed" in caplog.text
        assert kit.run_timeouts(app) == 1
        assert kit.run_timeouts(app) == 0
        assert calls == [CUSTOMER, CUSTOMER]


def test_new_conversations_and_their_times() -> None:
    kit = WebhookKit()
    seen: list[tuple[bool, float, float, str]] = []

    @kit.on_message()
    def note(message: Any, conversation: Conversation) -> None:
        started, last = conversation.started_at.timestamp(), conversation.last_seen.timestamp()
        seen.append((conversation.is_new, started, last, conversation.sender))

    app = Flask(__name__)
    app.config.update(WEBHOOK_KIT_AUTH_TOKEN=TOKEN, WEBHOOK_KIT_STORE="memory://")
    kit.init_app(app)
    app.test_client_class = TwilioTestClient
    client = client_of(app)
    for body in ["one", "two", "three"]:
        client.send_message(body)
        time.sleep(0.05)
    new, started, last, sender = seen[0]
    again, _, last_second, _ = seen[1]
    _, started_third, last_third, _ = seen[2]
    assert new and not again and sender == MESSAGING_SERVICE_SID
    assert started == started_third == last == last_second  # "one" was the previous message
    assert last_third > started  # "two" came later
