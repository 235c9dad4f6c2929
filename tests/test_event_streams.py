"""Event Streams: the sink route, its dedupe and ledger, a fuzz pass, and the emulator source."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server import free_port
from test_sending import SENDER, Served

from webhook_kit import MessageStatus, StatusCallback, StreamEvent, WebhookKit
from webhook_kit.emulator import Chaos, Emulator
from webhook_kit.errors import BadRequestError, PayloadTooLargeError
from webhook_kit.ledger import record_json
from webhook_kit.signature import body_sha256, compute_signature
from webhook_kit.streams import INBOUND_TYPE, MESSAGE_STATUS_PREFIX, parse_batch
from webhook_kit.testing import (
    TwilioTestClient,
    cloud_event,
    inbound_event,
    message_event,
    new_sid,
)

TOKEN = "event-streams-token"
INBOUND = INBOUND_TYPE


class Bot:
    """An app whose handlers note what they saw."""

    def __init__(self, store: str = "memory://", **config: Any) -> None:
        self.kit = WebhookKit()
        self.statuses: list[tuple[str, str]] = []
        self.events: list[str] = []
        self.prefixed: list[str] = []
        self.inbound: list[StreamEvent] = []
        self.fail_next = 0

        @self.kit.on_status()
        def status(update: StatusCallback) -> None:
            self.statuses.append((update.message_sid, update.status.value))

        @self.kit.on_event()
        def every(event: StreamEvent) -> None:
            if self.fail_next:
                self.fail_next -= 1
                raise RuntimeError("handler failed")
            self.events.append(event.id)

        @self.kit.on_event("com.twilio.messaging.message.*")
        def messages(event: StreamEvent) -> None:
            self.prefixed.append(event.type)

        @self.kit.on_event(INBOUND)
        def inbound(event: StreamEvent) -> None:
            self.inbound.append(event)

        self.app = Flask(__name__)
        self.app.config.update(
            {"WEBHOOK_KIT_AUTH_TOKEN": TOKEN, "WEBHOOK_KIT_STORE": store, **config}
        )
        self.kit.init_app(self.app)
        self.app.test_client_class = TwilioTestClient

    def client(self, **options: Any) -> TwilioTestClient:
        made = self.app.test_client(**options)
        assert isinstance(made, TwilioTestClient)
        return made

    def record(self, sid: str) -> Any:
        with self.app.app_context():
            return self.kit.ledger.get(sid)

    def nothing_applied(self) -> bool:
        with self.app.app_context():
            return not self.kit.ledger.find() and not self.events and not self.statuses


@pytest.fixture
def bot() -> Bot:
    return Bot()


def test_status_events_reach_the_ledger_with_their_source(bot: Bot) -> None:
    sid = new_sid()
    batch = [message_event(sid, "sent"), message_event(sid, "undelivered", error_code=30003)]
    assert bot.client().send_events(batch).status_code == 200
    record = bot.record(sid)
    assert record.status is MessageStatus.UNDELIVERED and record.error_code == 30003
    assert [(e.status.value, e.source) for e in record.history] == [
        ("sent", "event-streams"),
        ("undelivered", "event-streams"),
    ]
    kept = json.loads(record.history[1].raw["EventStreamsEvent"])
    assert kept == batch[1]  # every field of the CloudEvent is kept
    assert record.history[1].raw["MessageStatus"] == "undelivered"
    assert bot.statuses == [(sid, "sent"), (sid, "undelivered")]
    with bot.app.app_context():
        shown = record_json(bot.kit.ledger.get(sid))  # what `webhook-kit ledger show` prints
    assert [entry["source"] for entry in shown["history"]] == ["event-streams"] * 2
    assert bot.prefixed == [MESSAGE_STATUS_PREFIX + "sent", MESSAGE_STATUS_PREFIX + "undelivered"]


def test_a_late_sent_never_overwrites_delivered(bot: Bot) -> None:
    sid = new_sid()
    batch = [message_event(sid, "delivered"), message_event(sid, "sent")]
    assert bot.client().send_events(batch).status_code == 200
    assert bot.record(sid).status is MessageStatus.DELIVERED


def test_duplicates_are_applied_once_in_a_batch_and_across_retries(bot: Bot) -> None:
    sid = new_sid()
    event = message_event(sid, "delivered")
    for _ in range(3):
        assert bot.client().send_events([event, event]).status_code == 200
    assert len(bot.record(sid).history) == 1
    assert bot.events == [event["id"]] and bot.statuses == [(sid, "delivered")]


@pytest.mark.parametrize("first", ["callback", "event-streams"])
def test_on_status_runs_once_whichever_channel_brings_it_first(bot: Bot, first: str) -> None:
    sid = new_sid()
    client = bot.client()
    post = {
        "callback": lambda: client.send_status(sid, "read", fields={"EventType": "READ"}),
        "event-streams": lambda: client.send_events([message_event(sid, "read")]),
    }
    for channel in (first, *(c for c in post if c != first)):
        assert post[channel]().status_code == 200
    (entry,) = bot.record(sid).history
    assert entry.source == first and entry.event_type == "READ"
    assert bot.statuses == [(sid, "read")]
    assert len(bot.events) == 1  # the event itself is new to on_event either way


def test_event_handlers_filter_by_type(bot: Bot) -> None:
    inbound = inbound_event(body="hi")
    test = cloud_event("com.twilio.eventstreams.test-event", {"test_id": "t"})
    assert bot.client().send_events([inbound, test]).status_code == 200
    assert [event.id for event in bot.inbound] == [inbound["id"]]
    assert bot.inbound[0].data["body"] == "hi" and bot.inbound[0].message_sid
    assert bot.events == [inbound["id"], test["id"]] and bot.prefixed == []
    assert bot.nothing_applied() is False and not bot.statuses


def test_a_failing_handler_answers_500_and_the_retry_finishes_the_batch(bot: Bot) -> None:
    sids = [new_sid() for _ in range(3)]
    batch = [message_event(sid, "delivered") for sid in sids]
    bot.fail_next = 1
    first = bot.client().send_events(batch)
    assert first.status_code == 500 and b"Traceback" not in first.get_data()
    assert bot.client().send_events(batch).status_code == 200
    assert bot.events == [event["id"] for event in batch]
    assert sorted(bot.statuses) == sorted((sid, "delivered") for sid in sids)
    assert all(len(bot.record(sid).history) == 1 for sid in sids)


def test_dedupe_holds_across_hosts_sharing_a_store(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'shared.db'}"
    hosts = [Bot(store), Bot(store)]
    sid = new_sid()
    batch = [message_event(sid, "sent"), message_event(sid, "delivered")]
    for host in hosts:
        assert host.client().send_events(batch).status_code == 200
    assert len(hosts[0].events) + len(hosts[1].events) == 2
    assert [e.status.value for e in hosts[1].record(sid).history] == ["sent", "delivered"]


def test_signed_with_a_shared_key() -> None:
    key = ("webhooks_sharedkey_es", "es-secret")
    bot = Bot(WEBHOOK_KIT_SHARED_KEYS=f"{key[0]}:{key[1]}")
    sid = new_sid()
    assert bot.client(shared_key=key).send_events([message_event(sid)]).status_code == 200
    assert bot.client(shared_key=(key[0], "x")).send_events([message_event()]).status_code == 403
    assert bot.record(sid).status is MessageStatus.DELIVERED


# -- bad batches: a 4xx, nothing applied -------------------------------------------------------


def post_raw(
    bot: Bot, body: bytes, *, sign: bool = True, content_type: str = "application/json"
) -> int:
    """POST ``body`` to the sink, signed for exactly these bytes unless ``sign`` is False."""
    url = f"http://localhost/twilio/events?bodySHA256={body_sha256(body)}"
    headers = {"X-Twilio-Signature": compute_signature(url, None, TOKEN) if sign else "AAAA"}
    response = bot.app.test_client().post(
        url, data=body, headers=headers, content_type=content_type
    )
    return response.status_code


GOOD = message_event(new_sid(), "delivered")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b'{"id": "x"}', 400),
        (b"[1, 2]", 400),
        (json.dumps([GOOD, {**GOOD, "id": ""}]).encode(), 400),
        (json.dumps([GOOD, {**GOOD, "id": 7}]).encode(), 400),
        (json.dumps([GOOD, {**GOOD, "data": []}]).encode(), 400),
        (json.dumps([GOOD, {**GOOD, "id": "x" * 300}]).encode(), 400),
        (json.dumps([{**GOOD, "data": {**GOOD["data"], "messageSid": "SMnope"}}]).encode(), 400),
        (json.dumps([{**GOOD, "data": {**GOOD["data"], "messageStatus": 3}}]).encode(), 400),
        (json.dumps([{**GOOD, "data": {**GOOD["data"], "errorCode": {"a": 1}}}]).encode(), 400),
        (json.dumps([{**GOOD, "data": {**GOOD["data"], "errorCode": -1}}]).encode(), 400),
        (json.dumps([{**GOOD, "data": {**GOOD["data"], "to": ["x"]}}]).encode(), 400),
        (json.dumps([{**GOOD, "time": 5}]).encode(), 400),
        (b"[" * 100_000 + b"]" * 100_000, 400),
        (json.dumps([{**GOOD, "id": str(i)} for i in range(1001)]).encode(), 413),
        (b"[" + b" " * (1024 * 1024) + b"]", 413),
        (b'[{"id": "\\ud800"}]', 400),
    ],
)
def test_malformed_or_oversized_batches_apply_nothing(bot: Bot, body: bytes, status: int) -> None:
    assert post_raw(bot, body) == status
    assert bot.nothing_applied()


def test_tampered_bodies_and_wrong_content_types_apply_nothing(bot: Bot) -> None:
    signed = json.dumps([GOOD]).encode()
    url = f"http://localhost/twilio/events?bodySHA256={body_sha256(signed)}"
    signature = compute_signature(url, None, TOKEN)
    tampered = signed.replace(b"DELIVERED", b"FAILED")
    client = bot.app.test_client()
    response = client.post(
        url,
        data=tampered,
        headers={"X-Twilio-Signature": signature},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert post_raw(bot, signed, sign=False) == 403
    assert post_raw(bot, signed, content_type="text/plain") == 400
    assert client.get("/twilio/events").status_code == 405
    assert bot.nothing_applied()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = st.sampled_from(["id", "type", "source", "specversion", "time", "data", "dataschema"])
EVENTS = st.dictionaries(FIELDS, JSON, max_size=7) | JSON


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EVENTS, max_size=5) | JSON, st.binary(max_size=40))
def test_fuzz_no_5xx_and_nothing_applied_unless_accepted(value: Any, noise: bytes) -> None:
    bot = Bot()
    body = json.dumps(value).encode()
    status = post_raw(bot, body)
    assert status < 500
    if status != 200:
        assert bot.nothing_applied()
    raw = post_raw(Bot(), noise)  # bytes that are mostly not JSON at all
    assert raw < 500


def test_parse_batch_names_the_bad_event() -> None:
    with pytest.raises(BadRequestError, match="event 1: CloudEvent attribute 'id'"):
        parse_batch(json.dumps([GOOD, {**GOOD, "id": None}]).encode(), 10)
    with pytest.raises(PayloadTooLargeError, match="WEBHOOK_KIT_EVENTS_MAX_BATCH=1"):
        parse_batch(json.dumps([GOOD, GOOD]).encode(), 1)


# -- the emulator as the source -----------------------------------------------------------------


@pytest.fixture
def lossy() -> Iterator[tuple[Emulator, Served]]:
    chaos = Chaos(seed=5, reorder=1.0, jitter=0.5, duplicate=1.0, late=0.0, drop_final=1.0)
    with Emulator(clock="manual", chaos=chaos) as emulator:
        served = Served(emulator)
        served.start()
        yield emulator, served
        served.stop()


def test_every_message_ends_true_without_reconcile_though_final_callbacks_are_lost(
    lossy: tuple[Emulator, Served],
) -> None:
    emulator, served = lossy
    emulator.streams.add_sink(served.url + "/twilio/events")
    emulator.add_rule("undelivered", 30003, to="+14155550101")
    emulator.add_rule("failed", 30008, to="+14155550102")
    customers = ["+14155550100", "+14155550101", "+14155550102", "whatsapp:+14155550103"]
    sids = [served.send(to, f"hello {to}", from_=SENDER).sid for to in customers * 3]
    emulator.advance(60)
    assert emulator.dropped_callbacks >= len(sids)  # every final status callback was lost
    for sid in sids:
        truth, record = emulator.message(sid), served.record(sid)
        assert truth is not None and record.status.value == truth.status, sid
        assert record.error_code == truth.error_code
        statuses = [entry.status.value for entry in record.history]
        assert len(statuses) == len(set(statuses)), statuses  # each status once
        assert not any(entry.reconciled for entry in record.history)
        (final,) = [e for e in record.history if e.status.value == truth.status]
        assert final.source == "event-streams"  # its callback was dropped
    # Every event was delivered twice (chaos duplicates all), and counted once.
    sent_ids = Counter(
        event["id"]
        for delivery in emulator.deliveries
        if delivery.kind == "events"
        for event in json.loads(delivery.body)
    )
    assert sent_ids and set(sent_ids.values()) == {2}
    assert emulator.streams.duplicated == len(sent_ids)
    assert emulator.streams.delivered == 2 * len(sent_ids)


def test_sinks_and_subscriptions_over_the_official_client() -> None:
    with Emulator(clock="manual") as emulator:
        bot = Bot(WEBHOOK_KIT_AUTH_TOKEN=emulator.auth_token)
        emulator.mount("http://bot.test", bot.app)
        client = emulator.client()
        config = {"destination": "http://bot.test/twilio/events", "method": "POST"}
        sink = client.events.v1.sinks.create(
            description="bot", sink_configuration=config, sink_type="webhook"
        )
        assert sink.sid.startswith("DG") and sink.status == "initialized"
        types = [{"type": MESSAGE_STATUS_PREFIX + "delivered", "schema_version": 8}]
        with pytest.raises(Exception, match="validate it first"):
            client.events.v1.subscriptions.create(description="d", sink_sid=sink.sid, types=types)
        assert client.events.v1.sinks(sink.sid).sink_test.create().result == "submitted"
        emulator.advance(1)
        (test,) = [json.loads(d.body)[0] for d in emulator.deliveries if d.kind == "events"]
        assert test["type"] == "com.twilio.eventstreams.test-event"
        assert bot.events == [test["id"]]  # the kit answered it like any event
        valid = client.events.v1.sinks(sink.sid).sink_validate.create(
            test_id=test["data"]["test_id"]
        )
        assert (
            valid.result == "valid" and client.events.v1.sinks(sink.sid).fetch().status == "active"
        )
        subscription = client.events.v1.subscriptions.create(
            description="delivered only", sink_sid=sink.sid, types=types
        )
        assert subscription.sid.startswith("DF") and subscription.sink_sid == sink.sid
        listed = client.events.v1.subscriptions.list(sink_sid=sink.sid)
        assert [s.sid for s in listed] == [subscription.sid]
        emulator.add_number("+15005550006")
        message = client.messages.create(to="+14155550100", from_="+15005550006", body="hi")
        emulator.advance(5)
        record = bot.record(message.sid)
        assert record is not None and record.status is MessageStatus.DELIVERED
        assert [e.status.value for e in record.history] == ["delivered"]  # subscribed to that only
        assert len(client.events.v1.sinks.list()) == 1


def test_a_sink_that_fails_is_retried_until_it_answers() -> None:
    with Emulator(clock="manual") as emulator:
        bot = Bot(WEBHOOK_KIT_AUTH_TOKEN=emulator.auth_token)
        bot.fail_next = 3
        emulator.mount("http://bot.test", bot.app)
        emulator.streams.add_sink("http://bot.test/twilio/events", types=[INBOUND])
        emulator.add_number("+15005550006", sms_url="http://bot.test/twilio/messages")
        emulator.handset("+14155550100").send("+15005550006", "hello")
        emulator.advance(0.2)
        attempts = [d for d in emulator.deliveries if d.kind == "events"]
        assert [d.response.status for d in attempts if d.response] == [500]
        emulator.advance(60)
        attempts = [d for d in emulator.deliveries if d.kind == "events"]
        assert [d.response.status for d in attempts if d.response] == [500, 500, 500, 200]
        assert [event.data["body"] for event in bot.inbound] == ["hello"]
        assert emulator.streams.delivered == 1 and emulator.streams.abandoned == 0
        # The message came by its webhook and by Event Streams: one inbound record.
        with bot.app.app_context():
            (record,) = bot.kit.ledger.find()
        assert record.message_sid == bot.inbound[0].message_sid
        assert (record.direction, record.body, record.status) == ("inbound", "hello", "received")
        credentials = base64.b64encode(f"{emulator.account_sid}:{emulator.auth_token}".encode())
        request = urllib.request.Request(
            emulator.url + "/_emulator/deliveries",
            headers={"Authorization": "Basic " + credentials.decode()},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            logged = json.loads(response.read())["deliveries"]
        batches = [d["events"] for d in logged if d["kind"] == "events"]
        assert len(batches) == 4 and batches[-1][0]["data"]["body"] == "hello"


def test_sink_batches_carry_url_credentials_and_the_rules_shared_key() -> None:
    with Emulator(clock="manual") as emulator:
        key = emulator.webhooks.create_shared_key("sink key")
        setting = emulator.webhooks.create_setting(
            {
                "auth": {"source": "INLINE", "value": {"scheme": "none"}},
                "signature": {"type": "sharedKey", "sharedKeyId": key.id, "algorithm": "HMAC_SHA1"},
            }
        )
        emulator.webhooks.create_rule(
            {
                "matchType": "EXACT_MATCH",
                "value": "http://bot.test/twilio/events",
                "settings": [{"settingId": setting.id, "percentage": 100}],
            }
        )
        bot = Bot(
            WEBHOOK_KIT_AUTH_TOKEN="not-the-emulators",  # only the shared key can verify
            WEBHOOK_KIT_SHARED_KEYS={key.id: key.secret},
            WEBHOOK_KIT_BASIC_AUTH="events:pa:ss",
        )
        emulator.mount("http://bot.test", bot.app)
        delivered = MESSAGE_STATUS_PREFIX + "delivered"
        emulator.streams.add_sink("http://events:pa%3Ass@bot.test/twilio/events", types=[delivered])
        emulator.add_number("+15005550006")
        sid = (
            emulator.client().messages.create(to="+14155550100", from_="+15005550006", body="x").sid
        )
        emulator.advance(5)
        (batch,) = [d for d in emulator.deliveries if d.kind == "events"]
        assert batch.url.startswith("http://bot.test/twilio/events?bodySHA256=")
        assert batch.response is not None and batch.response.status == 200
        assert bot.record(sid).status is MessageStatus.DELIVERED


def test_the_emulator_command_subscribes_sinks() -> None:
    port = free_port()
    sink = "http://127.0.0.1:9/twilio/events"
    process = subprocess.Popen(
        [sys.executable, "-m", "webhook_kit.cli", "emulator", "--port", str(port),
         "--account-sid", "AC" + "5" * 32, "--auth-token", "cli-token", "--sink", sink],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        credentials = base64.b64encode(f"{'AC' + '5' * 32}:cli-token".encode()).decode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/Sinks", headers={"Authorization": f"Basic {credentials}"}
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    listed = json.loads(response.read())
                break
            except OSError:
                assert time.monotonic() < deadline, "the emulator did not start"
                time.sleep(0.1)
        (only,) = listed["sinks"]
        assert only["sink_configuration"]["destination"] == sink and only["status"] == "active"
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgres"])
def test_every_store_applies_an_event_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = (
        f"sqlite:///{tmp_path / 'events.db'}"
        if backend == "sqlite"
        else request.getfixturevalue(f"{backend}_url")
    )
    bot = Bot(store)
    sid = new_sid()
    batch = [message_event(sid, "sent"), message_event(sid, "failed", error_code=30008)]
    for _ in range(2):
        assert bot.client().send_events([*batch, batch[0]]).status_code == 200
    record = bot.record(sid)
    assert record.status is MessageStatus.FAILED and record.error_code == 30008
    assert [(e.status.value, e.source) for e in record.history] == [
        ("sent", "event-streams"),
        ("failed", "event-streams"),
    ]
    assert json.loads(record.history[1].raw["EventStreamsEvent"]) == batch[1]
    assert bot.events == [batch[0]["id"], batch[1]["id"]]
    bot.kit.pipeline(bot.app).store.close()


def test_a_batch_out_of_time_answers_503_and_the_retries_finish_it() -> None:
    bot = Bot(WEBHOOK_KIT_EVENTS_BUDGET=0)  # every event is past the budget: one per request
    batch = [message_event(new_sid(), "delivered") for _ in range(3)]
    first = bot.client().send_events(batch)
    assert first.status_code == 503
    assert first.get_data() == (
        b"ran the handlers of 1 of 3 events within WEBHOOK_KIT_EVENTS_BUDGET; retry the rest\n"
    )
    # The ledger step is the whole batch's: only handlers are left for the retries.
    sids = [event["data"]["messageSid"] for event in batch]
    assert all(bot.record(sid).status is MessageStatus.DELIVERED for sid in sids)
    answers = [bot.client().send_events(batch) for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 200, 200]
    assert bot.events == [event["id"] for event in batch]
    assert sorted(bot.statuses) == sorted((sid, "delivered") for sid in sids)
    assert all(len(bot.record(sid).history) == 1 for sid in sids)


def test_on_final_runs_once_when_the_final_status_comes_by_event_streams() -> None:
    bot = Bot()
    finals: list[tuple[str, str]] = []

    @bot.kit.on_final
    def final(record: Any) -> None:
        finals.append((record.message_sid, record.status.value))

    sid = new_sid()
    assert bot.client().send_status(sid, "sent").status_code == 200
    for _ in range(2):
        assert bot.client().send_events([message_event(sid, "delivered")]).status_code == 200
    assert bot.client().send_status(sid, "delivered").status_code == 200
    assert finals == [(sid, "delivered")]
