"""Opt-out compliance: keywords the kit recognises, the registry on every store, purge, CLI."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask

from webhook_kit import ConfigurationError, InboundMessage, OptOutType, WebhookKit
from webhook_kit.cli import main
from webhook_kit.conversation import Conversation
from webhook_kit.emulator import Emulator
from webhook_kit.errors import SendError, UnsubscribedRecipientError
from webhook_kit.ledger import MessageFacts, StatusEntry
from webhook_kit.optout import DEFAULT_REPLIES, OptOuts, keyword_type
from webhook_kit.status import MessageStatus
from webhook_kit.stores import ConversationWrite, OptOut, Outcome, Store, open_store
from webhook_kit.testing import (
    CUSTOMER,
    MESSAGING_SERVICE_SID,
    TWILIO_NUMBER,
    TwilioTestClient,
    opt_out_message,
)

TOKEN = "opt-out-test-token"
STOP_TEXT = DEFAULT_REPLIES[OptOutType.STOP]
START_TEXT = DEFAULT_REPLIES[OptOutType.START]
HELP_TEXT = DEFAULT_REPLIES[OptOutType.HELP]


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param in ("redis", "postgres"):
        return str(request.getfixturevalue(f"{request.param}_url"))
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/kit.db"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def echo_app(**config: Any) -> tuple[Flask, list[str]]:
    """An echo bot recording every message its default handler saw."""
    kit = WebhookKit()
    seen: list[str] = []

    @kit.on_message()
    def echo(message: InboundMessage) -> str:
        seen.append(message.body)
        return f"Echo: {message.body}"

    app = Flask(__name__)
    app.config.update(WEBHOOK_KIT_AUTH_TOKEN=TOKEN, WEBHOOK_KIT_STORE="memory://", **config)
    kit.init_app(app)
    app.test_client_class = TwilioTestClient
    return app, seen


def client_of(app: Flask) -> TwilioTestClient:
    client = app.test_client()
    assert isinstance(client, TwilioTestClient)
    return client


def registry(app: Flask) -> OptOuts:
    with app.app_context():
        kit = app.extensions["webhook_kit"]
        assert isinstance(kit, WebhookKit)
        return kit.opt_outs


class TestKeywords:
    @pytest.mark.parametrize(
        ("body", "kind"),
        [
            ("STOP", OptOutType.STOP),
            (" stop. ", OptOutType.STOP),
            ("Unsubscribe", OptOutType.STOP),
            ("stopall", OptOutType.STOP),
            ("REVOKE", OptOutType.STOP),
            ("optout", OptOutType.STOP),
            ("cancel", OptOutType.STOP),
            ("end", OptOutType.STOP),
            ("quit!", OptOutType.STOP),
            ("start", OptOutType.START),
            ("Yes", OptOutType.START),
            ("unstop", OptOutType.START),
            ("help", OptOutType.HELP),
            ("INFO?", OptOutType.HELP),
            ("stop please", None),
            ("please stop", None),
            ("stopping", None),
            ("", None),
        ],
    )
    def test_default_keywords_whole_body_one_word(self, body: str, kind: OptOutType | None) -> None:
        assert keyword_type(body) is kind


class TestWithoutAdvancedOptOut:
    def test_stop_opts_out_and_later_replies_are_dropped(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        app, seen = echo_app()
        client = client_of(app)
        assert client.send_message("Stop").texts == [STOP_TEXT]
        assert seen == []  # the default handler never sees STOP
        opt_outs = registry(app)
        assert opt_outs.is_opted_out(CUSTOMER, TWILIO_NUMBER)
        assert opt_outs.is_opted_out(CUSTOMER, MESSAGING_SERVICE_SID)
        record = opt_outs.get(CUSTOMER, TWILIO_NUMBER)
        assert record is not None and record.source == "keyword"
        with caplog.at_level(logging.WARNING, "webhook_kit"):
            reply = client.send_message("are you there?")
        assert reply.status_code == 200 and reply.texts == []  # dropped...
        assert seen == ["are you there?"]  # ...but the handler saw the message
        assert "21610" in caplog.text and CUSTOMER in caplog.text
        assert client.send_message("yes").texts == [START_TEXT]  # an opt-in now
        assert not opt_outs.is_opted_out(CUSTOMER, TWILIO_NUMBER, MESSAGING_SERVICE_SID)
        assert client.send_message("back").texts == ["Echo: back"]

    def test_yes_from_a_subscriber_is_an_ordinary_message(self) -> None:
        app, seen = echo_app()
        assert client_of(app).send_message("yes").texts == ["Echo: yes"]
        assert seen == ["yes"]

    def test_help_gets_the_compliance_text_once(self) -> None:
        app, seen = echo_app()
        assert client_of(app).send_message("HELP").texts == [HELP_TEXT]
        assert seen == []

    def test_opt_out_handlers_see_it_and_may_answer_instead(self) -> None:
        kit = WebhookKit()
        seen: list[tuple[str, str | None]] = []

        @kit.on_message(opt_out="STOP")
        def stopped(message: InboundMessage) -> None:
            seen.append((message.body, message.opt_out_type))

        @kit.on_message(opt_out="HELP")
        def help_(message: InboundMessage) -> str:
            return "Call 555-0100 for help."

        @kit.on_message(keyword="START")
        def start(message: InboundMessage) -> str:
            return "Welcome back!"

        app = Flask(__name__)
        app.config.update(WEBHOOK_KIT_AUTH_TOKEN=TOKEN, WEBHOOK_KIT_STORE="memory://")
        kit.init_app(app)
        app.test_client_class = TwilioTestClient
        client = client_of(app)
        assert client.send_message("quit").texts == [STOP_TEXT]  # None: the kit answers
        assert seen == [("quit", OptOutType.STOP)]
        assert client.send_message("info").texts == ["Call 555-0100 for help."]
        assert client.send_message("start").texts == ["Welcome back!"]  # named by keyword=

    def test_stop_ends_the_conversation(self) -> None:
        kit = WebhookKit()

        @kit.on_message()
        def remember(message: InboundMessage, conversation: Conversation) -> str:
            conversation.state["n"] = conversation.state.get("n", 0) + 1
            return str(conversation.state["n"])

        app = Flask(__name__)
        app.config.update(WEBHOOK_KIT_AUTH_TOKEN=TOKEN, WEBHOOK_KIT_STORE="memory://")
        kit.init_app(app)
        app.test_client_class = TwilioTestClient
        client = client_of(app)
        assert client.send_message("a").texts == ["1"]
        assert client.send_message("b").texts == ["2"]
        client.send_message("STOP")
        client.send_message("START")
        assert client.send_message("c").texts == ["1"]

    def test_texts_are_configurable_and_recognition_can_be_off(self) -> None:
        app, _ = echo_app(WEBHOOK_KIT_STOP_REPLY="Bye.", WEBHOOK_KIT_HELP_REPLY="")
        client = client_of(app)
        assert client.send_message("HELP").texts == []
        assert client.send_message("STOP").texts == ["Bye."]
        off, _ = echo_app(WEBHOOK_KIT_OPT_OUT_KEYWORDS="off")
        assert client_of(off).send_message("STOP").texts == ["Echo: STOP"]
        assert not registry(off).is_opted_out(CUSTOMER, TWILIO_NUMBER)
        with pytest.raises(ConfigurationError, match="WEBHOOK_KIT_OPT_OUT_KEYWORDS"):
            echo_app(WEBHOOK_KIT_OPT_OUT_KEYWORDS="maybe")


class TestWithAdvancedOptOut:
    def test_recorded_and_answered_by_nobody(self) -> None:
        app, seen = echo_app()
        client = client_of(app)
        assert client.send("messages", opt_out_message("STOP")).texts == []
        record = registry(app).get(CUSTOMER, MESSAGING_SERVICE_SID)
        assert record is not None and record.opted_out and record.source == "advanced"
        assert client.send_message("hello").texts == []
        assert client.send("messages", opt_out_message("START")).texts == []
        assert client.send_message("hello").texts == ["Echo: hello"]
        assert seen == ["hello", "hello"]


class TestRegistry:
    def test_store_contract(self, store: Store) -> None:
        assert store.get_opt_out("+1500", "+1415") is None
        store.set_opt_out(OptOut("+1500", "+1415", True, 10.0, "keyword"))
        store.set_opt_out(OptOut("MG1", "+1415", True, 11.0, "advanced"))
        store.set_opt_out(OptOut("+1500", "+1416", False, 12.0, "api"))
        store.set_opt_out(OptOut("+1500", "+1415", False, 13.0, "keyword"))  # replaces
        latest = OptOut("+1500", "+1415", False, 13.0, "keyword")
        assert store.get_opt_out("+1500", "+1415") == latest
        assert [(r.sender, r.address) for r in store.list_opt_outs()] == [
            ("+1500", "+1415"),
            ("+1500", "+1416"),
            ("MG1", "+1415"),
        ]
        assert store.list_opt_outs("MG1") == [OptOut("MG1", "+1415", True, 11.0, "advanced")]
        assert store.opted_out("+1415", ["+1500", "MG1"])  # MG1's record says opted out
        assert not store.opted_out("+1415", ["+1500"])  # opted in again
        assert not store.opted_out("+1416", ["+1500", "MG1"])
        assert not store.opted_out("+1415", [])

    def test_an_inbound_claim_reads_the_screen_in_its_own_step(self, store: Store) -> None:
        store.set_opt_out(OptOut("MG1", "+1415", True, 10.0, "keyword"))
        store.set_opt_out(OptOut("+1500", "+1416", False, 11.0, "keyword"))  # opted in again
        now = time.time()

        def claim(n: int, sender: str, senders: tuple[str, ...]) -> bool:
            facts = MessageFacts(f"SM{n:032x}", now, from_=sender, to="+1500", created_at=now)
            won = store.claim(f"message:{n}", 15.0, message=facts, senders=senders)
            assert won.outcome is Outcome.CLAIMED
            return won.opted_out

        assert claim(1, "+1415", ("+1500", "MG1"))  # MG1's record: opted out
        assert not claim(2, "+1415", ("+1500",))
        assert not claim(3, "+1416", ("+1500", "MG1"))
        assert not claim(4, "+1415", ())  # nothing asked, nothing read
        again = store.claim("message:1", 15.0, senders=("+1500", "MG1"))
        assert again.outcome is Outcome.BUSY and not again.opted_out

    def test_csv_round_trip(self, store: Store) -> None:
        opt_outs = OptOuts(store)
        opt_outs.opt_out("+14155550100", "+15005550006", "MG1")
        opt_outs.opt_in("+14155550101", "+15005550006")
        out = io.StringIO()
        assert opt_outs.export_csv(out) == 3
        rows = out.getvalue().splitlines()
        assert rows[0] == "sender,address,opted_out,updated_at,source"
        assert [row.split(",")[:3] for row in rows[1:]] == [
            ["+15005550006", "+14155550100", "1"],
            ["+15005550006", "+14155550101", "0"],
            ["MG1", "+14155550100", "1"],
        ]
        other = OptOuts(open_store("memory://"))
        assert other.import_csv(io.StringIO(out.getvalue())) == 3
        assert [(r.sender, r.address) for r in other.list()] == [
            ("+15005550006", "+14155550100"),
            ("MG1", "+14155550100"),
        ]
        assert other.list(opted_out_only=False)[0].source == "import"

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("number,address\n+1,+2\n", "lacks the column"),
            ("sender,address\n+1,\n", "line 2"),
            ("sender,address,opted_out\n+1,+2,maybe\n", "line 2"),
        ],
    )
    def test_bad_csv_names_the_problem(self, text: str, problem: str) -> None:
        with pytest.raises(ConfigurationError, match=problem):
            OptOuts(open_store("memory://")).import_csv(io.StringIO(text))


class TestPurge:
    def test_removes_conversations_and_ledger_keeps_opt_outs(self, store: Store) -> None:
        person, other = "+14155550100", "+14155550199"
        for address in (person, other):
            id = f"{address}|MG1|AC1|sms"
            lock = store.claim("lock:" + id, 30)
            claim = store.claim("message:" + address, 30)
            store.complete(  # an hour: a purge on a shared Redis SCANs its keyspace
                "message:" + address,
                claim.owner,
                b"",
                conversation=ConversationWrite(id, lock.owner, b"{}", 3600),
            )
            sid = "SM" + address[-4:] * 8
            form = f"MessageSid={sid}&MessageStatus=sent&To=%2B{address[1:]}&From=%2B15005550006"
            rank = MessageStatus.SENT.rank
            entry = StatusEntry(
                sid, f"status:{sid}", "sent", rank, False, None, None, time.time(), form
            )
            store.record_status(entry)
        store.set_opt_out(OptOut("+15005550006", person, True, 1.0, "keyword"))
        # A message they sent, known from its inbound webhook only.
        store.save_message(MessageFacts("SM" + "7" * 32, time.time(), from_=person, to="+1"))
        store.save_message(MessageFacts("SM" + "8" * 32, time.time(), from_=other, to="+1"))
        assert store.purge_address(person) == 3
        assert store.get_message("SM" + "7" * 32) is None
        assert store.get_conversation(f"{person}|MG1|AC1|sms") is None
        assert store.get_message("SM" + person[-4:] * 8) is None
        assert store.get_conversation(f"{other}|MG1|AC1|sms") == b"{}"
        assert store.get_message("SM" + other[-4:] * 8) is not None
        assert store.get_message("SM" + "8" * 32) is not None
        assert store.get_opt_out("+15005550006", person) is not None
        assert store.purge_address(person) == 0

    def test_cli(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        url = f"sqlite:///{tmp_path}/kit.db"
        monkeypatch.setenv("WEBHOOK_KIT_STORE", url)
        store = open_store(url)
        lock = store.claim("lock:+1|x", 30)
        claim = store.claim("k", 30)
        store.complete(
            "k", claim.owner, b"", conversation=ConversationWrite("+1|x", lock.owner, b"{}", 60)
        )
        runner = CliRunner()
        result = runner.invoke(main, ["conversations", "purge", "--address", "+1"])
        assert result.exit_code == 0, result.output
        assert result.stdout == "removed 1 conversation(s) and ledger record(s) of +1\n"
        assert store.get_conversation("+1|x") is None
        csv_path = tmp_path / "in.csv"
        csv_path.write_text("sender,address\n+15005550006,+14155550100\n")
        assert runner.invoke(main, ["opt-outs", "import", str(csv_path)]).stdout == (
            "imported 1 opt-out record(s)\n"
        )
        exported = runner.invoke(main, ["opt-outs", "export"]).stdout.splitlines()
        assert exported[1].startswith("+15005550006,+14155550100,1,")
        bad = runner.invoke(main, ["conversations", "purge", "--address", "+1", "--store", "x:"])
        assert bad.exit_code == 1 and bad.output.startswith("error: unknown store URL")
        store.close()


class TestSending:
    """kit.send refuses an opted-out recipient itself: the emulator never sees the request."""

    @pytest.fixture
    def app(self, twilio_emulator: Emulator) -> Flask:
        kit = WebhookKit()
        kit.on_message()(lambda message: None)
        app = Flask(__name__)
        app.config.update(
            WEBHOOK_KIT_AUTH_TOKEN=twilio_emulator.auth_token,
            WEBHOOK_KIT_ACCOUNT_SID=twilio_emulator.account_sid,
            WEBHOOK_KIT_TWILIO_BASE_URL=twilio_emulator.url,
            WEBHOOK_KIT_STORE="memory://",
            WEBHOOK_KIT_PUBLIC_URL="http://127.0.0.1:9",  # callbacks are not the point here
        )
        kit.init_app(app)
        app.test_client_class = TwilioTestClient
        return app

    def test_stop_then_send_is_21610_without_an_api_call_and_start_lets_it_through(
        self, app: Flask, twilio_emulator: Emulator
    ) -> None:
        kit = app.extensions["webhook_kit"]
        client = client_of(app)
        assert client.send_message("STOP", fields={"MessagingServiceSid": None}).texts == [
            STOP_TEXT
        ]
        before = len(twilio_emulator.requests)
        with app.app_context(), pytest.raises(UnsubscribedRecipientError) as refused:
            kit.send(CUSTOMER, "Your order shipped", from_=TWILIO_NUMBER)
        assert refused.value.code == 21610 and isinstance(refused.value, SendError)
        assert "reply START" in str(refused.value)
        assert len(twilio_emulator.requests) == before  # no API call
        with app.app_context():
            assert kit.ledger.find(to=CUSTOMER).records == ()  # nothing recorded as sent
        assert client.send_message("START", fields={"MessagingServiceSid": None}).texts == [
            START_TEXT
        ]
        with app.app_context():
            sent = kit.send(CUSTOMER, "Your order shipped", from_=TWILIO_NUMBER)
        assert sent.sid.startswith("SM")
        assert len(twilio_emulator.requests) == before + 1

    def test_a_messaging_service_opt_out_counts_for_its_sends(
        self, app: Flask, twilio_emulator: Emulator
    ) -> None:
        kit = app.extensions["webhook_kit"]
        client_of(app).send_message("unsubscribe")  # via MESSAGING_SERVICE_SID
        with app.app_context(), pytest.raises(UnsubscribedRecipientError):
            kit.send(CUSTOMER, "hi", messaging_service_sid=MESSAGING_SERVICE_SID)
        with app.app_context(), pytest.raises(UnsubscribedRecipientError):
            kit.send(CUSTOMER, "hi", from_=TWILIO_NUMBER)
        assert twilio_emulator.requests == []

    def test_a_timeout_hook_sends_a_reminder_through_kit_send(
        self, app: Flask, twilio_emulator: Emulator
    ) -> None:
        kit = app.extensions["webhook_kit"]

        @kit.on_message(keyword="BOOK")
        def book(message: InboundMessage, conversation: Conversation) -> str:
            conversation.timeout_after(0)
            return "Which day?"

        @kit.on_timeout
        def remind(conversation: Conversation) -> None:
            kit.send(conversation.address, "Still there? Which day?", from_=conversation.sender)

        assert client_of(app).send_message("BOOK", fields={"MessagingServiceSid": None}).texts == [
            "Which day?"
        ]
        assert kit.run_timeouts(app) == 1
        [reminder] = twilio_emulator.messages(to=CUSTOMER)
        assert reminder.body == "Still there? Which day?" and reminder.from_ == TWILIO_NUMBER
