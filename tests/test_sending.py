"""kit.send, correlation, reconciliation and the ledger, against the emulator over real HTTP.

The emulator serves Twilio's REST API on a loopback port and posts signed status callbacks
to the app, which is served by a real HTTP server too. Nothing is mocked.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from flask import Flask
from twilio.http.response import Response
from twilio.rest import Client
from werkzeug.serving import make_server

from webhook_kit import ConfigurationError, MessageStatus, StatusCallback, WebhookKit
from webhook_kit import errors as kit_errors
from webhook_kit.cli import main
from webhook_kit.emulator import Chaos, Emulator, Timing
from webhook_kit.emulator.client import EmulatorHttpClient
from webhook_kit.events import Fields, parse_inbound
from webhook_kit.ledger import Direction, MessageFacts, MessageRecord
from webhook_kit.sending import Sender, SentMessage
from webhook_kit.signature import compute_signature
from webhook_kit.stores import open_store
from webhook_kit.testing import inbound_sms

SENDER = "+15005550006"
CUSTOMER = "+14155550100"
SERVICE = "MG" + "a" * 32


class Served:
    """A Flask app with a WebhookKit, served over HTTP on a free loopback port."""

    def __init__(self, emulator: Emulator, **config: Any) -> None:
        self.kit = WebhookKit()
        self.app = Flask(__name__)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.app.config.update(
            {
                "WEBHOOK_KIT_AUTH_TOKEN": emulator.auth_token,
                "WEBHOOK_KIT_ACCOUNT_SID": emulator.account_sid,
                "WEBHOOK_KIT_TWILIO_BASE_URL": emulator.url,
                "WEBHOOK_KIT_PUBLIC_URL": self.url,
                "WEBHOOK_KIT_STORE": "memory://",
                **config,
            }
        )
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def start(self) -> Served:
        self.kit.init_app(self.app)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)

    def send(self, *args: Any, **kwargs: Any) -> SentMessage:
        with self.app.app_context():
            return self.kit.send(*args, **kwargs)

    def record(self, sid: str) -> MessageRecord:
        with self.app.app_context():
            record = self.kit.ledger.get(sid)
        assert record is not None, f"{sid} is not in the ledger"
        return record

    def by_ref(self, ref: str) -> MessageRecord:
        with self.app.app_context():
            (record,) = self.kit.ledger.find(ref=ref)
        return record


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(clock="manual") as running:
        yield running


@pytest.fixture
def served(emulator: Emulator) -> Iterator[Served]:
    app = Served(emulator).start()
    yield app
    app.stop()


def test_send_is_recorded_linked_and_tracked_to_delivery(
    emulator: Emulator, served: Served
) -> None:
    sent = served.send(CUSTOMER, "Your order shipped", from_=SENDER, ref="order-42")
    assert isinstance(sent, SentMessage) and sent.sid.startswith("SM")
    assert sent.status is MessageStatus.QUEUED and sent.num_segments == 1
    assert sent.ref == "order-42" and sent.direction is Direction.OUTBOUND_API
    callback = emulator.message(sent.sid).status_callback  # type: ignore[union-attr]
    assert callback is not None and callback.startswith(served.url + "/twilio/status?c=WK")
    record = served.record(sent.sid)
    assert (record.to, record.from_, record.body, record.ref) == (
        CUSTOMER, SENDER, "Your order shipped", "order-42",
    )  # fmt: skip
    assert record.status is MessageStatus.QUEUED and record.history == ()
    emulator.advance(5)
    record = served.record(sent.sid)
    assert record.status is MessageStatus.DELIVERED and record.is_final
    assert [event.status.value for event in record.history] == ["sending", "sent", "delivered"]
    assert record.sent_at is not None and record.price is None  # callbacks carry no price
    assert served.by_ref("order-42").message_sid == sent.sid


@pytest.mark.parametrize(
    ("to", "from_", "error", "code"),
    [
        ("+15005550001", SENDER, kit_errors.InvalidToError, 21211),
        ("+15005550002", SENDER, kit_errors.UnreachableRecipientError, 21612),
        ("+15005550003", SENDER, kit_errors.RegionNotPermittedError, 21408),
        ("+15005550004", SENDER, kit_errors.UnsubscribedRecipientError, 21610),
        ("+15005550009", SENDER, kit_errors.NotMobileError, 21614),
        (CUSTOMER, "+15005550001", kit_errors.InvalidFromError, 21212),
        (CUSTOMER, "+15005550007", kit_errors.SenderNotCapableError, 21606),
        (CUSTOMER, "+15005550008", kit_errors.QueueFullError, 21611),
    ],
)
def test_each_magic_number_raises_its_send_error_and_the_ledger_shows_it(
    served: Served, to: str, from_: str, error: type[kit_errors.SendError], code: int
) -> None:
    with pytest.raises(error) as raised:
        served.send(to, "hi", from_=from_, ref=f"magic-{code}")
    assert raised.value.code == code and raised.value.status == 400
    assert raised.value.more_info == f"https://www.twilio.com/docs/errors/{code}"
    assert str(code) in str(raised.value)
    assert isinstance(raised.value, kit_errors.WebhookKitError)
    record = served.by_ref(f"magic-{code}")
    assert record.status is MessageStatus.FAILED and record.error_code == code
    assert record.pending and record.to == to  # Twilio never gave it a SID


def test_wrong_credentials_are_an_authentication_error(emulator: Emulator) -> None:
    app = Served(emulator, WEBHOOK_KIT_API_KEY="SK" + "0" * 32, WEBHOOK_KIT_API_SECRET="nope")
    app.start()
    try:
        with pytest.raises(kit_errors.AuthenticationError) as raised:
            app.send(CUSTOMER, "hi", from_=SENDER)
        assert raised.value.code == 20003 and raised.value.status == 401
    finally:
        app.stop()


def test_every_create_parameter_reaches_twilio(emulator: Emulator, served: Served) -> None:
    emulator.add_service(sid=SERVICE)
    send_at = datetime.now(UTC) + timedelta(hours=2)
    sent = served.send(
        CUSTOMER,
        "Reminder: it\u2019s tomorrow",
        messaging_service_sid=SERVICE,
        send_at=send_at,
        validity_period=600,
        smart_encoded=True,
        shorten_urls=True,
        provide_feedback=True,
        attempt=2,
        force_delivery=True,
        content_retention="retain",
        address_retention="retain",
        persistent_action=["mailto:help@example.com"],
        traffic_type="free",
        risk_check="disable",
        max_price=0.5,
        media_url="https://example.com/a.png",
    )
    assert sent.status is MessageStatus.SCHEDULED
    form = Fields(emulator.requests[-1].form)
    assert form["MessagingServiceSid"] == SERVICE and form["ScheduleType"] == "fixed"
    assert form["SendAt"] == send_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    for name, value in {
        "ValidityPeriod": "600",
        "SmartEncoded": "true",
        "ShortenUrls": "true",
        "ProvideFeedback": "true",
        "Attempt": "2",
        "ForceDelivery": "true",
        "ContentRetention": "retain",
        "AddressRetention": "retain",
        "PersistentAction": "mailto:help@example.com",
        "TrafficType": "free",
        "RiskCheck": "disable",
        "MaxPrice": "0.5",
        "MediaUrl": "https://example.com/a.png",
    }.items():
        assert form[name] == value, name
    with served.app.app_context():  # a scheduled message can be canceled
        assert served.kit.cancel(sent.sid).status is MessageStatus.CANCELED
    assert served.record(sent.sid).status is MessageStatus.CANCELED


def test_content_template_and_reply_through_the_api(emulator: Emulator, served: Served) -> None:
    inbound = parse_inbound(Fields(inbound_sms("hello", from_=CUSTOMER, to=SENDER).items()))
    sent = served.send(
        body=None,
        in_reply_to=inbound,
        content_sid=emulator.add_template({"twilio/text": {"body": "Hi {{1}}"}}),
        content_variables={"1": "Ada"},
    )
    assert (sent.to, sent.from_) == (CUSTOMER, SENDER)
    assert emulator.message(sent.sid).body == "Hi Ada"  # type: ignore[union-attr]
    record = served.record(sent.sid)
    assert record.in_reply_to == inbound.message_sid and record.direction == "outbound-api"


def test_redact_drops_the_body_on_twilio_and_in_the_ledger(
    emulator: Emulator, served: Served
) -> None:
    sent = served.send(CUSTOMER, "one-time code 123456", from_=SENDER)
    emulator.advance(5)
    with served.app.app_context():
        served.kit.redact(sent.sid)
    assert emulator.message(sent.sid).body == ""  # type: ignore[union-attr]
    record = served.record(sent.sid)
    assert record.body is None and record.redacted and record.status is MessageStatus.DELIVERED


def post_signed(url: str, fields: dict[str, str], token: str) -> tuple[int, str]:
    """POST a form signed as Twilio signs it; the HTTP status and body."""
    signature = compute_signature(url, fields, token)
    request = urllib.request.Request(
        url, urlencode(fields).encode(), {"X-Twilio-Signature": signature}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status), response.read().decode()


def test_forged_and_foreign_tokens_are_not_trusted(emulator: Emulator, served: Served) -> None:
    with served.app.app_context():
        sender = served.kit.sender()
    pending, token = sender.correlator.new()
    now = time.time()
    sender.store.save_message(MessageFacts(pending, now, ref="waiting", created_at=now))
    foreign = Sender(
        open_store("memory://"), emulator.client(), secret_key="another app's key"
    ).correlator.new()[1]
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for index, forged in enumerate((tampered, foreign, pending)):
        sid = f"SM{index:032d}"
        fields = {"MessageSid": sid, "MessageStatus": "delivered"}
        url = f"{served.url}/twilio/status?c={forged}"
        assert post_signed(url, fields, emulator.auth_token)[0] == 200  # recorded, token ignored
        assert served.record(sid).ref is None
    assert served.record(pending).pending  # nothing was merged into the waiting send
    genuine = f"{served.url}/twilio/status?c={token}"
    fields = {"MessageSid": "SM" + "e" * 32, "MessageStatus": "sent"}
    assert post_signed(genuine, fields, emulator.auth_token)[0] == 200
    assert served.record("SM" + "e" * 32).ref == "waiting"


class SlowAnswers(EmulatorHttpClient):
    """Every ``every``-th API answer (the first included) reaches the sender ``delay`` seconds
    late, as over a slow network, so that status callbacks overtake it."""

    def __init__(self, base_url: str, *, delay: float = 1.0, every: int = 1) -> None:
        super().__init__(base_url)
        self.delay, self.every = delay, every
        self.count = itertools.count()

    def request(self, *args: Any, **kwargs: Any) -> Response:
        response = super().request(*args, **kwargs)
        if next(self.count) % self.every == 0:
            time.sleep(self.delay)
        return response


def test_a_callback_before_the_api_answer_finds_its_send_by_token() -> None:
    instant = Timing(accept=0, queue=0, send=0, deliver=0, read=None)
    with Emulator(timing=instant) as emulator:
        served = Served(emulator)
        seen: list[MessageRecord] = []

        @served.kit.on_status()
        def look(update: StatusCallback) -> None:
            record = served.kit.ledger.get(update.message_sid)
            assert record is not None
            seen.append(record)

        served.start()
        try:
            client = Client(
                emulator.account_sid,
                emulator.auth_token,
                http_client=SlowAnswers(emulator.url),
            )
            with served.app.app_context():
                served.kit.sender(client=client)
                sent = served.kit.send(CUSTOMER, "fast", from_=SENDER, ref="early")
            assert seen, "no callback arrived while the API answer was delayed"
            early = seen[0]
            assert early.ref == "early" and early.num_segments is None  # not linked yet
            record = served.record(sent.sid)
            assert record.ref == "early" and record.status is MessageStatus.DELIVERED
            with served.app.app_context():
                assert not [r for r in served.kit.ledger.find() if r.pending]
        finally:
            served.stop()


def test_reconcile_settles_messages_whose_final_callbacks_were_lost() -> None:
    lost = Chaos(reorder=0, duplicate=0, late=0, drop_final=1.0)
    with Emulator(clock="manual", chaos=lost) as emulator:
        served = Served(emulator).start()
        try:
            emulator.add_rule("undelivered", 30003, to="+14155550199")
            sids = [served.send(to, "x", from_=SENDER).sid for to in (CUSTOMER, "+14155550199")]
            emulator.advance(5)
            assert [served.record(sid).status for sid in sids] == ["sent", "sent"]
            with served.app.app_context():
                served.kit.sender().retry_delay = 0.05  # keep the test short
                assert served.kit.reconcile(older_than=3600).checked == 0  # too young
                report = served.kit.reconcile(older_than=0)
            assert report.checked == 2 and report.updated == 2 and report.missing == ()
            delivered, undelivered = (served.record(sid) for sid in sids)
            assert delivered.status is MessageStatus.DELIVERED
            assert undelivered.status is MessageStatus.UNDELIVERED
            assert undelivered.error_code == 30003
            assert delivered.history[-1].reconciled and not delivered.history[0].reconciled
            assert (delivered.price, delivered.price_unit) == ("-0.00790", "USD")
            with served.app.app_context():
                assert served.kit.reconcile(older_than=0).checked == 0  # nothing open now
        finally:
            served.stop()


def test_reconcile_backs_off_on_429(emulator: Emulator) -> None:
    with Emulator(clock="manual", rate_limit=2) as limited:
        served = Served(limited).start()
        try:
            sids = [served.send(CUSTOMER, str(i), from_=SENDER).sid for i in range(2)]
            with served.app.app_context():
                sender = served.kit.sender()
                sender.retry_delay = 0.1
                report = served.kit.reconcile(older_than=0)  # 2 fetches, bucket empty
            assert report.checked == 2
            statuses = [r.status for r in limited.requests]
            assert 429 in statuses and statuses[-1] == 200
            assert {served.record(sid).history[-1].reconciled for sid in sids} == {True}
        finally:
            served.stop()


def test_stats_and_paging(emulator: Emulator, served: Served) -> None:
    emulator.add_rule("undelivered", 30007, body="spam")
    for index in range(5):
        served.send(CUSTOMER, "spam" if index == 0 else "ham", from_=SENDER, ref="batch")
    with pytest.raises(kit_errors.InvalidToError):
        served.send("+15005550001", "x", from_=SENDER)
    emulator.advance(5)
    inbound = dict(inbound_sms("thanks", from_=CUSTOMER, to=SENDER).items())
    assert post_signed(served.url + "/twilio/messages", inbound, emulator.auth_token)[0] == 200
    with served.app.app_context():
        first = served.kit.ledger.find(limit=4)
        second = served.kit.ledger.find(limit=4, cursor=first.cursor)
        assert len(first) == 4 and len(second) == 3 and second.cursor is None
        stats = served.kit.ledger.stats(since=datetime.now(UTC) - timedelta(minutes=5))
    assert stats.total == 7
    assert stats.by_status == {"delivered": 4, "undelivered": 1, "failed": 1, "received": 1}
    assert stats.by_error_code == {30007: 1, 21211: 1}
    assert stats.delivery_rate == pytest.approx(4 / 6)  # outbound messages only
    assert set(stats.latency) == {"p50", "p90", "p99"}


def test_inbound_messages_are_in_the_ledger(served: Served) -> None:
    served.kit.on_message()(lambda message: None)
    fields = dict(inbound_sms("hello there", from_=CUSTOMER, to=SENDER).items())
    url = served.url + "/twilio/messages"
    assert post_signed(url, fields, served.app.config["WEBHOOK_KIT_AUTH_TOKEN"])[0] == 200
    record = served.record(fields["MessageSid"])
    assert record.direction is Direction.INBOUND and record.body == "hello there"
    assert record.status is MessageStatus.RECEIVED and record.from_ == CUSTOMER


def test_unreachable_twilio_leaves_the_send_pending(emulator: Emulator) -> None:
    served = Served(emulator, WEBHOOK_KIT_TWILIO_BASE_URL="http://127.0.0.1:1").start()
    try:
        with pytest.raises(kit_errors.TwilioUnreachableError, match="may or may not"):
            served.send(CUSTOMER, "x", from_=SENDER, ref="limbo")
        assert served.by_ref("limbo").pending and served.by_ref("limbo").status is None
    finally:
        served.stop()


def test_sending_needs_a_public_url_or_a_callback(emulator: Emulator) -> None:
    served = Served(emulator, WEBHOOK_KIT_PUBLIC_URL=None).start()
    try:
        with pytest.raises(ConfigurationError, match="WEBHOOK_KIT_PUBLIC_URL"):
            served.send(CUSTOMER, "x", from_=SENDER)
        sent = served.send(CUSTOMER, "x", from_=SENDER, status_callback="https://example.com/s")
        assert served.record(sent.sid).status is MessageStatus.QUEUED
    finally:
        served.stop()


def test_ledger_and_reconcile_commands(tmp_path: Path) -> None:
    lost = Chaos(reorder=0, duplicate=0, late=0, drop_final=1.0)
    store = f"sqlite:///{tmp_path}/kit.db"
    with Emulator(clock="manual", chaos=lost) as emulator:
        served = Served(emulator, WEBHOOK_KIT_STORE=store).start()
        try:
            sent = served.send(CUSTOMER, "parcel", from_=SENDER, ref="order-7")
            with pytest.raises(kit_errors.UnsubscribedRecipientError):
                served.send("+15005550004", "x", from_=SENDER, ref="order-8")
            emulator.advance(5)
        finally:
            served.stop()
        env = {
            "WEBHOOK_KIT_STORE": store,
            "TWILIO_ACCOUNT_SID": emulator.account_sid,
            "TWILIO_AUTH_TOKEN": emulator.auth_token,
            "WEBHOOK_KIT_TWILIO_BASE_URL": emulator.url,
        }
        runner = CliRunner()

        def run(*args: str) -> str:
            result = runner.invoke(main, list(args), env=env)
            assert result.exit_code == 0, result.output
            assert result.stderr == f"store: {store}\n"  # which store it read
            return result.stdout

        found = run("ledger", "find", "--ref", "order-7")
        assert sent.sid in found and "sent" in found and "SID" in found.splitlines()[0]
        assert json.loads(run("reconcile", "--older-than", "0", "--json"))["checked"] == 1
        shown = json.loads(run("ledger", "show", sent.sid, "--json"))
        assert shown["status"] == "delivered" and shown["ref"] == "order-7"
        assert shown["history"][-1]["reconciled"] is True
        assert "(reconciled)" in run("ledger", "show", sent.sid)
        stats = json.loads(run("ledger", "stats", "--since", "1h", "--json"))
        assert stats["by_status"] == {"delivered": 1, "failed": 1}
        assert stats["by_error_code"] == {"21610": 1}
        text = run("ledger", "stats")
        assert "delivery rate  50.0%" in text
        page = json.loads(run("ledger", "find", "--limit", "1", "--json"))
        assert len(page["records"]) == 1 and page["cursor"]
        rest = json.loads(run("ledger", "find", "--cursor", page["cursor"], "--json"))
        assert len(rest["records"]) == 1 and rest["cursor"] is None
        missing = runner.invoke(main, ["ledger", "show", "SMnope"], env=env)
        assert missing.exit_code == 1 and "not in the ledger" in missing.output
        bad = runner.invoke(main, ["ledger", "find", "--since", "soon"], env=env)
        assert bad.exit_code == 1 and "--since" in bad.output


def test_credentials_region_and_edge_come_from_the_configuration() -> None:
    store = open_store("memory://")
    environ = {
        "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
        "TWILIO_API_KEY": "SK" + "2" * 32,
        "TWILIO_API_SECRET": "api-secret",
    }
    config = {
        "WEBHOOK_KIT_AUTH_TOKEN": "tok",
        "WEBHOOK_KIT_REGION": "ie1",
        "WEBHOOK_KIT_EDGE": "dublin",
    }
    client = Sender.from_config(config, store, environ=environ).client
    assert (client.username, client.password) == ("SK" + "2" * 32, "api-secret")
    assert client.account_sid == "AC" + "1" * 32
    assert client.get_hostname("https://api.twilio.com/x") == "https://api.dublin.ie1.twilio.com/x"
    token_only = Sender.from_config(config, store, environ={"TWILIO_ACCOUNT_SID": "AC" + "1" * 32})
    assert (token_only.client.username, token_only.client.password) == ("AC" + "1" * 32, "tok")
    with pytest.raises(ConfigurationError, match="TWILIO_ACCOUNT_SID"):
        Sender.from_config(config, store, environ={})
    with pytest.raises(ConfigurationError, match="TWILIO_AUTH_TOKEN"):
        Sender.from_config({}, store, environ={"TWILIO_ACCOUNT_SID": "AC" + "1" * 32})


def test_a_send_needs_a_recipient(served: Served) -> None:
    with pytest.raises(TypeError, match="in_reply_to"):
        served.send(body="to nobody", from_=SENDER)
