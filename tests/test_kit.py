"""The extension and its request path, through Flask's test client with signed requests."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request

from webhook_kit import (
    ConfigurationError,
    FallbackRequest,
    InboundMessage,
    MessageRecord,
    MessageStatus,
    MessagingResponse,
    StatusCallback,
    StoreError,
    WebhookKit,
)
from webhook_kit.jobs import Job
from webhook_kit.ledger import MessageFacts, StatusEntry
from webhook_kit.signature import compute_signature
from webhook_kit.stores import Applied, Claim, ConversationWrite
from webhook_kit.stores.memory import MemoryStore
from webhook_kit.testing import (
    TwilioTestClient,
    WebhookReply,
    fallback_request,
    inbound_sms,
    new_sid,
    opt_out_message,
    status_callback,
    whatsapp_message,
)

TOKEN = "test-token"

SID1 = "SM" + "1" * 32
SID_FORM = f"MessageSid={SID1}".encode()
SUBACCOUNT = "AC" + "5" * 32


def make_app(kit: WebhookKit, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update({"WEBHOOK_KIT_AUTH_TOKEN": TOKEN, "WEBHOOK_KIT_STORE": "memory://", **config})
    app.test_client_class = TwilioTestClient
    kit.init_app(app)
    return app


def client_for(kit: WebhookKit, **config: Any) -> TwilioTestClient:
    client = make_app(kit, **config).test_client()
    assert isinstance(client, TwilioTestClient)
    return client


def echo_kit() -> WebhookKit:
    kit = WebhookKit()

    @kit.on_message()
    def echo(message: InboundMessage) -> str:
        return f"Echo: {message.body}"

    return kit


# -- replies ----------------------------------------------------------------------------------


def reply_for(result: object) -> WebhookReply:
    kit = WebhookKit()

    @kit.on_message()
    def handler(message: InboundMessage) -> Any:
        return result

    return client_for(kit).send_message("hi")


def test_str_is_one_message() -> None:
    reply = reply_for("Hello <you> & co")
    assert reply.status_code == 200
    assert reply.response.content_type == "text/xml; charset=utf-8"
    assert reply.response.get_data() == (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b"<Response><Message>Hello &lt;you&gt; &amp; co</Message></Response>"
    )


def test_list_of_str_is_several_messages() -> None:
    assert reply_for(["one", "two"]).texts == ["one", "two"]


def test_twiml_object_is_sent_as_built() -> None:
    response = MessagingResponse()
    response.message("see", to="+15550001111").media("https://example.com/a.png")
    reply = reply_for(response)
    assert reply.messages[0].to == "+15550001111"
    assert reply.messages[0].media_urls == ("https://example.com/a.png",)


def test_none_is_an_empty_response() -> None:
    reply = reply_for(None)
    assert reply.status_code == 200
    assert reply.response.get_data().endswith(b"<Response/>")


@pytest.mark.parametrize("bad", [42, {"a": 1}, [1, 2], b"bytes"])
def test_anything_else_is_a_type_error_naming_the_handler(
    bad: object, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, "webhook_kit"):
        reply = reply_for(bad)
    assert reply.status_code == 500
    assert b"Traceback" not in reply.response.get_data()
    assert "handler" in caplog.text and "returned" in caplog.text
    assert "reply_for.<locals>.handler" in caplog.text


def test_decorators_return_the_function_unchanged() -> None:
    kit = WebhookKit()

    def handler(message: InboundMessage) -> str:
        return "x"

    assert kit.on_message(keyword="A")(handler) is handler
    assert kit.on_fallback()(handler) is handler

    def status(update: StatusCallback) -> None:
        return None

    assert kit.on_status()(status) is status


# -- routing ----------------------------------------------------------------------------------


def router_kit() -> WebhookKit:
    kit = WebhookKit()

    @kit.on_message(keyword="HELP")
    def help_(message: InboundMessage) -> str:
        return "help"

    @kit.on_message(keyword=["JOIN", "start"], pattern=r"^\w+ (?P<name>\w+)$")
    def join(message: InboundMessage) -> str:
        assert message.match is not None
        return f"welcome {message.match['name']}"

    @kit.on_message(pattern=r"(?i)order #(\d+)")
    def order(message: InboundMessage) -> str:
        assert message.match is not None
        return f"order {message.match.group(1)}"

    @kit.on_message(from_="+15550000001")
    def vip(message: InboundMessage) -> str:
        return "vip"

    @kit.on_message(to=["+15550000099"])
    def second_number(message: InboundMessage) -> str:
        return "second number"

    @kit.on_message(channel="whatsapp")
    def whatsapp(message: InboundMessage) -> str:
        return "whatsapp"

    @kit.on_message(has_media=True)
    def photo(message: InboundMessage) -> str:
        return f"{len(message.media)} media"

    @kit.on_message(when=lambda message: len(message.body) > 50)
    def long(message: InboundMessage) -> str:
        return "long"

    @kit.on_message(opt_out=True)
    def opted(message: InboundMessage) -> None:
        return None

    @kit.on_message()
    def default(message: InboundMessage) -> str:
        return "default"

    return kit


@pytest.fixture
def router() -> TwilioTestClient:
    return client_for(router_kit())


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("HELP", "help"),
        ("help me please", "help"),
        ("Help!", "help"),
        ("helpful", "default"),
        ("JOIN ada", "welcome ada"),
        ("start bob", "welcome bob"),
        ("JOIN ada lovelace", "default"),
        ("where is ORDER #42?", "order 42"),
        ("x" * 60, "long"),
        ("", "default"),
    ],
)
def test_filters_on_the_body(router: TwilioTestClient, body: str, expected: str) -> None:
    assert router.send_message(body).texts == [expected]


def test_sender_and_recipient_filters(router: TwilioTestClient) -> None:
    assert router.send_message("hi", from_="+15550000001").texts == ["vip"]
    assert router.send_message("hi", to="+15550000099").texts == ["second number"]


def test_channel_and_media_filters(router: TwilioTestClient) -> None:
    assert router.send("messages", whatsapp_message("hi")).texts == ["whatsapp"]
    reply = router.send_message("look", media=["https://x/1", "https://x/2"])
    assert reply.texts == ["2 media"]


def test_registration_order_decides(router: TwilioTestClient) -> None:
    # "HELP" from the VIP number: the keyword route was registered first.
    assert router.send_message("HELP", from_="+15550000001").texts == ["help"]


def test_default_runs_last_whatever_its_registration_order() -> None:
    kit = WebhookKit()

    @kit.on_message()
    def default(message: InboundMessage) -> str:
        return "default"

    @kit.on_message(keyword="PING")
    def ping(message: InboundMessage) -> str:
        return "pong"

    client = client_for(kit)
    assert client.send_message("ping").texts == ["pong"]
    assert client.send_message("other").texts == ["default"]


def test_messages_twilio_already_answered_only_reach_opt_out_routes() -> None:
    kit = WebhookKit()
    seen: list[str] = []

    @kit.on_message(keyword="STOP")
    def stop_keyword(message: InboundMessage) -> str:
        return "should not run"

    @kit.on_message(opt_out="STOP")
    def stop(message: InboundMessage) -> None:
        seen.append(message.opt_out_type or "")

    @kit.on_message()
    def default(message: InboundMessage) -> str:
        return "should not run either"

    client = client_for(kit)
    assert client.send("messages", opt_out_message("STOP")).texts == []
    assert seen == ["STOP"]
    help_reply = client.send("messages", opt_out_message("HELP"))
    assert help_reply.status_code == 200 and help_reply.texts == []


def test_no_matching_route_is_an_empty_answer() -> None:
    kit = WebhookKit()

    @kit.on_message(keyword="ONLY")
    def only(message: InboundMessage) -> str:
        return "x"

    reply = client_for(kit).send_message("something else")
    assert reply.status_code == 200 and reply.texts == []


def test_two_default_handlers_are_refused() -> None:
    kit = WebhookKit()
    kit.on_message()(lambda message: "a")
    with pytest.raises(ConfigurationError, match="both default handlers"):
        kit.on_message()(lambda message: "b")


@pytest.mark.parametrize("keyword", ["TWO WORDS", "", ["ok", ""]])
def test_keyword_filters_are_single_words(keyword: Any) -> None:
    with pytest.raises(ConfigurationError, match="single words"):
        WebhookKit().on_message(keyword=keyword)(lambda message: None)


def test_empty_filter_collection_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="empty"):
        WebhookKit().on_message(from_=[])(lambda message: None)


# -- status callbacks and the ledger -----------------------------------------------------------


def test_status_handlers_all_run_for_matching_statuses() -> None:
    kit = WebhookKit()
    calls: list[str] = []

    @kit.on_status(MessageStatus.UNDELIVERED, "failed")
    def alert(update: StatusCallback) -> None:
        assert update.error is not None
        calls.append(f"alert {update.status} {update.error.code}")

    @kit.on_status()
    def every(update: StatusCallback) -> None:
        calls.append(f"every {update.status}")

    client = client_for(kit)
    sid = new_sid()
    assert client.send_status(sid, "sent").status_code == 200
    reply = client.send_status(sid, "undelivered", error_code=30003)
    assert reply.status_code == 200 and reply.twiml is not None and reply.twiml.verbs == ()
    assert calls == ["every sent", "alert undelivered 30003", "every undelivered"]


def test_duplicate_status_callback_runs_handlers_once() -> None:
    kit = WebhookKit()
    calls: list[str] = []
    kit.on_status()(lambda update: calls.append(update.status))
    client = client_for(kit)
    fields = status_callback(status="delivered")
    for _ in range(3):
        assert client.send("status", fields).status_code == 200
    assert calls == ["delivered"]


def test_ledger_is_queryable_and_monotonic() -> None:
    kit = echo_kit()
    app = make_app(kit)
    client = app.test_client()
    assert isinstance(client, TwilioTestClient)
    sid = new_sid()
    for status in ["delivered", "queued", "sent"]:
        client.send_status(sid, status)
    with app.app_context():
        record = kit.ledger.get(sid)
        assert record is not None
        assert record.status is MessageStatus.DELIVERED and record.is_final
        assert [event.status.value for event in record.history] == ["delivered", "queued", "sent"]
        assert kit.ledger.status(sid) is MessageStatus.DELIVERED
        assert kit.ledger.get("SMunknown") is None


def test_final_hook_runs_once_per_message() -> None:
    kit = WebhookKit()
    finals: list[tuple[str, str | None]] = []

    @kit.on_final
    def done(record: MessageRecord) -> None:
        finals.append((record.message_sid, record.status.value if record.status else None))

    client = client_for(kit)
    sid = new_sid()
    for status in ["sent", "delivered", "delivered", "read", "queued"]:
        assert client.send_status(sid, status).status_code == 200
    assert finals == [(sid, "delivered")]


def test_failing_final_hook_runs_again_on_retry() -> None:
    kit = WebhookKit()
    attempts: list[str] = []

    @kit.on_final
    def flaky(record: MessageRecord) -> None:
        attempts.append(record.message_sid)
        if len(attempts) == 1:
            raise RuntimeError("downstream is down")

    client = client_for(kit)
    fields = status_callback(status="delivered")
    assert client.send("status", fields).status_code == 500
    assert client.send("status", fields).status_code == 200
    assert client.send("status", fields).status_code == 200
    assert attempts == [fields["MessageSid"]] * 2


def test_status_handler_that_returns_a_reply_is_an_error(caplog: pytest.LogCaptureFixture) -> None:
    kit = WebhookKit()
    kit.on_status()(lambda update: "thanks")  # type: ignore[arg-type,return-value]
    with caplog.at_level(logging.ERROR, "webhook_kit"):
        reply = client_for(kit).send_status(new_sid(), "sent")
    assert reply.status_code == 500
    assert "status callbacks cannot reply" in caplog.text


def test_status_handler_failure_keeps_the_ledger_and_allows_a_retry() -> None:
    kit = WebhookKit()
    runs: list[int] = []

    @kit.on_status()
    def flaky(update: StatusCallback) -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("boom")

    app = make_app(kit)
    client = app.test_client()
    assert isinstance(client, TwilioTestClient)
    fields = status_callback(status="sent")
    assert client.send("status", fields).status_code == 500
    assert client.send("status", fields).status_code == 200
    assert len(runs) == 2
    with app.app_context():
        record = kit.ledger.get(fields["MessageSid"])
        assert record is not None and len(record.history) == 1


# -- fallback ---------------------------------------------------------------------------------


def test_fallback_handler_gets_the_error() -> None:
    kit = echo_kit()

    @kit.on_fallback()
    def sorry(request: FallbackRequest) -> str:
        return f"sorry ({request.error_code}): {request.body}"

    reply = client_for(kit).send("fallback", fallback_request("hi", error_code=11205))
    assert reply.texts == ["sorry (11205): hi"]


def test_fallback_without_handler_is_an_empty_answer() -> None:
    reply = client_for(echo_kit()).send("fallback", fallback_request())
    assert reply.status_code == 200 and reply.texts == []


# -- idempotency ------------------------------------------------------------------------------


def counting_kit(
    behaviour: Callable[[InboundMessage], str] | None = None,
) -> tuple[WebhookKit, list[str]]:
    kit = WebhookKit()
    runs: list[str] = []

    @kit.on_message()
    def handler(message: InboundMessage) -> str:
        runs.append(message.message_sid)
        return behaviour(message) if behaviour else f"run {len(runs)}"

    return kit, runs


def test_duplicate_inbound_replays_the_first_answer() -> None:
    kit, runs = counting_kit()
    client = client_for(kit)
    fields = inbound_sms("hi")
    first = client.send("messages", fields)
    second = client.send("messages", fields)
    assert first.texts == second.texts == ["run 1"]
    assert first.response.get_data() == second.response.get_data()
    assert len(runs) == 1


def test_idempotency_token_is_logged_never_the_key(caplog: pytest.LogCaptureFixture) -> None:
    kit, runs = counting_kit()
    client = client_for(kit)
    fields = inbound_sms("hi")
    with caplog.at_level(logging.INFO, "webhook_kit"):
        for token in ("tok-1", "tok-2", "tok-3"):
            client.send("messages", fields, headers={"I-Twilio-Idempotency-Token": token})
    assert len(runs) == 1
    assert "idempotency token tok-2" in caplog.text and "tok-3" in caplog.text


def test_a_failed_handler_releases_its_claim_so_a_retry_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail_first(message: InboundMessage) -> str:
        if fail_first.calls == 0:  # type: ignore[attr-defined]
            fail_first.calls += 1  # type: ignore[attr-defined]
            raise RuntimeError("database down")
        return "ok"

    fail_first.calls = 0  # type: ignore[attr-defined]
    kit, runs = counting_kit(fail_first)
    client = client_for(kit)
    fields = inbound_sms("hi")
    with caplog.at_level(logging.ERROR, "webhook_kit"):
        failed = client.send("messages", fields)
    assert failed.status_code == 500 and failed.texts == []
    assert fields["MessageSid"] in caplog.text and "database down" in caplog.text
    assert "handler counting_kit.<locals>.handler failed" in caplog.text
    assert b"database down" not in failed.response.get_data()
    assert client.send("messages", fields).texts == ["ok"]
    assert len(runs) == 2


def test_a_duplicate_waits_for_the_first_delivery() -> None:
    started, finish = threading.Event(), threading.Event()

    def slow(message: InboundMessage) -> str:
        started.set()
        finish.wait(5)
        return "slow answer"

    kit, runs = counting_kit(slow)
    app = make_app(kit, WEBHOOK_KIT_CLAIM_WAIT=5)
    fields = inbound_sms("hi")
    results: list[WebhookReply] = []

    def deliver() -> None:
        client = app.test_client()
        assert isinstance(client, TwilioTestClient)
        results.append(client.send("messages", fields))

    first = threading.Thread(target=deliver)
    first.start()
    started.wait(5)
    second = threading.Thread(target=deliver)
    second.start()
    finish.set()
    first.join()
    second.join()
    assert [r.texts for r in results] == [["slow answer"], ["slow answer"]]
    assert len(runs) == 1


def test_a_duplicate_gets_409_when_the_first_takes_too_long() -> None:
    started, finish = threading.Event(), threading.Event()

    def slow(message: InboundMessage) -> str:
        started.set()
        finish.wait(5)
        return "late"

    kit, _ = counting_kit(slow)
    app = make_app(kit, WEBHOOK_KIT_CLAIM_WAIT=0.1)
    fields = inbound_sms("hi")
    first_client, second_client = app.test_client(), app.test_client()
    assert isinstance(first_client, TwilioTestClient)
    assert isinstance(second_client, TwilioTestClient)
    first = threading.Thread(target=lambda: first_client.send("messages", fields))
    first.start()
    started.wait(5)
    busy = second_client.send("messages", fields)
    finish.set()
    first.join()
    assert busy.status_code == 409
    assert busy.response.get_data(as_text=True) == (
        "an earlier delivery of this webhook is still being handled\n"
    )


# -- errors -------------------------------------------------------------------------------------


def test_error_handler_can_reply() -> None:
    kit = WebhookKit()

    @kit.on_message()
    def broken(message: InboundMessage) -> str:
        raise ValueError("nope")

    seen: list[tuple[str, str]] = []

    @kit.on_error
    def apologise(error: Exception, event: InboundMessage | StatusCallback) -> str:
        seen.append((type(error).__name__, event.message_sid))
        return "Sorry, something went wrong."

    reply = client_for(kit).send_message("hi")
    assert reply.status_code == 200 and reply.texts == ["Sorry, something went wrong."]
    assert seen and seen[0][0] == "ValueError"


def test_configured_error_reply() -> None:
    kit = WebhookKit()
    kit.on_message()(lambda message: 1 / 0)  # type: ignore[arg-type,return-value]
    reply = client_for(kit, WEBHOOK_KIT_ERROR_REPLY="Try again later").send_message("hi")
    assert reply.status_code == 200 and reply.texts == ["Try again later"]


def test_failing_error_handler_falls_back_to_500() -> None:
    kit = WebhookKit()
    kit.on_message()(lambda message: 1 / 0)  # type: ignore[arg-type,return-value]
    kit.on_error(lambda error, event: 1 / 0)  # type: ignore[arg-type,return-value]
    assert client_for(kit).send_message("hi").status_code == 500


class BrokenStore(MemoryStore):
    def record_status(
        self, entry: StatusEntry, lease: float | None = None, replace: str = ""
    ) -> Applied:
        raise StoreError("disk full")

    def claim(
        self,
        key: str,
        lease: float,
        *,
        replace: str = "",
        message: MessageFacts | None = None,
        senders: Sequence[str] = (),
    ) -> Claim:
        if key.startswith("message:"):
            raise StoreError("redis unreachable")
        return super().claim(key, lease, replace=replace, message=message, senders=senders)


def test_store_failure_is_503_and_releases_the_claim() -> None:
    store = BrokenStore()
    kit = WebhookKit(store=store)
    kit.on_message()(lambda message: "x")
    client = client_for(kit)
    status = client.send_status(new_sid(), "sent")
    assert status.status_code == 503
    assert status.response.get_data() == b"store unavailable: try again later\n"
    assert not store._claims  # released: Twilio's retry can record it
    assert client.send_message("hi").status_code == 503


# -- bad input ---------------------------------------------------------------------------------


def raw_post(
    client: TwilioTestClient,
    body: bytes,
    content_type: str = "application/x-www-form-urlencoded",
    path: str = "/twilio/messages",
    sign: bool = True,
) -> tuple[int, str]:
    headers = {}
    if sign:
        from urllib.parse import parse_qsl

        try:
            pairs = parse_qsl(body.decode(), keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            pairs = []
        headers["X-Twilio-Signature"] = compute_signature(f"http://localhost{path}", pairs, TOKEN)
    response = client.post(path, data=body, content_type=content_type, headers=headers)
    return response.status_code, response.get_data(as_text=True)


@pytest.fixture
def echo() -> TwilioTestClient:
    return client_for(echo_kit())


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (SID_FORM, "text/plain", 400, "Content-Type 'text/plain'"),
        (SID_FORM, "multipart/form-data; boundary=x", 400, "multipart/form-data"),
        (b"\xff\xfe", "application/x-www-form-urlencoded", 400, "not valid UTF-8"),
        (b"Body=%FF%FE", "application/x-www-form-urlencoded", 400, "percent-decoding"),
        (b"From=%2B1&To=%2B2", "application/x-www-form-urlencoded", 400, "missing MessageSid"),
        (SID_FORM + b"&To=%2B2", "application/x-www-form-urlencoded", 400, "missing From"),
        (SID_FORM + b"&From=%2B1", "application/x-www-form-urlencoded", 400, "missing To"),
        (b"", "application/x-www-form-urlencoded", 400, "missing MessageSid"),
        (b"[1, 2]", "application/json", 400, "must be an object"),
        (b"{oops", "application/json", 400, "not valid JSON"),
        (b"&".join([b"f=1"] * 1001), "application/x-www-form-urlencoded", 400, "1000"),
    ],
)
def test_bad_bodies_are_a_clear_400(
    echo: TwilioTestClient, body: bytes, content_type: str, status: int, message: str
) -> None:
    code, text = raw_post(echo, body, content_type)
    assert code == status
    assert message in text and text.endswith("\n") and text.count("\n") == 1


def test_status_without_its_fields_is_400(echo: TwilioTestClient) -> None:
    code, text = raw_post(echo, SID_FORM, path="/twilio/status")
    assert code == 400 and "missing MessageStatus" in text


def test_oversized_body_is_413_with_a_configurable_limit() -> None:
    client = client_for(echo_kit(), WEBHOOK_KIT_MAX_BODY=600)
    code, text = raw_post(client, b"Body=" + b"x" * 700, sign=False)
    assert code == 413 and "600-byte limit" in text
    reply = client.send_message("small")
    assert reply.status_code == 200


def test_unsigned_and_badly_signed_requests_are_403(echo: TwilioTestClient) -> None:
    code, text = raw_post(echo, SID_FORM + b"&From=a&To=b", sign=False)
    assert code == 403 and text == "missing X-Twilio-Signature header: request not from Twilio\n"
    response = echo.post(
        "/twilio/messages",
        data=SID_FORM + b"&From=a&To=b",
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": compute_signature("http://localhost/", {}, TOKEN)},
    )
    assert response.status_code == 403


def test_signed_for_other_fields_is_403(echo: TwilioTestClient) -> None:
    fields = inbound_sms("original")
    signature = compute_signature("http://localhost/twilio/messages", fields, TOKEN)
    tampered = {**fields, "Body": "tampered"}
    response = echo.post(
        "/twilio/messages", data=tampered, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 403


def test_log_only_mode_lets_bad_signatures_through_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = client_for(echo_kit(), WEBHOOK_KIT_VALIDATE="log-only")
    with caplog.at_level(logging.WARNING, "webhook_kit"):
        code, text = raw_post(client, SID_FORM + b"&From=a&To=b&Body=hi", sign=False)
    assert code == 200 and "Echo: hi" in text
    assert "log-only: would reject missing X-Twilio-Signature" in caplog.text


def test_off_mode_skips_verification_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "webhook_kit"):
        client = client_for(echo_kit(), WEBHOOK_KIT_VALIDATE="off", WEBHOOK_KIT_AUTH_TOKEN=None)
    assert "NOT verified" in caplog.text
    code, _ = raw_post(client, SID_FORM + b"&From=a&To=b", sign=False)
    assert code == 200


def test_get_webhooks_are_signed_over_the_query(echo: TwilioTestClient) -> None:
    reply = echo.send("messages", inbound_sms("via GET"), method="GET")
    assert reply.status_code == 200 and reply.texts == ["Echo: via GET"]
    response = echo.get(f"/twilio/messages?MessageSid={SID1}&From=a&To=b")
    assert response.status_code == 403


def test_json_bodies_verify_their_hash(echo: TwilioTestClient) -> None:
    import json

    from webhook_kit.signature import body_sha256

    body = json.dumps({"MessageSid": SID1, "From": "+1", "To": "+2", "Body": "json"}).encode()
    path = f"/twilio/messages?bodySHA256={body_sha256(body)}"
    signature = compute_signature(f"http://localhost{path}", None, TOKEN)
    response = echo.post(
        path, data=body, content_type="application/json", headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 200 and b"Echo: json" in response.get_data()
    other = echo.post(
        path,
        data=body.replace(b"json", b"jsoN"),
        content_type="application/json",
        headers={"X-Twilio-Signature": signature},
    )
    assert other.status_code == 403


def test_rotated_tokens_are_all_accepted() -> None:
    client = client_for(echo_kit(), WEBHOOK_KIT_AUTH_TOKEN="new-token, old-token")
    for token in ["new-token", "old-token"]:
        client.auth_token = token
        assert client.send_message("hi").status_code == 200
    client.auth_token = "revoked"
    assert client.send_message("hi").status_code == 403


def test_subaccount_tokens_come_from_the_loader() -> None:
    kit = echo_kit()

    @kit.auth_token_loader
    def tokens(account_sid: str) -> str | None:
        return "sub-token" if account_sid == SUBACCOUNT else None

    client = client_for(kit)
    client.auth_token = "sub-token"
    assert client.send_message("hi", fields={"AccountSid": SUBACCOUNT}).status_code == 200
    assert client.send_message("hi").status_code == 403


def test_handler_can_still_read_request_form() -> None:
    kit = WebhookKit()

    @kit.on_message()
    def handler(message: InboundMessage) -> str:
        return request.form["Body"]

    assert client_for(kit).send_message("from the form").texts == ["from the form"]


def test_segment_warning(caplog: pytest.LogCaptureFixture) -> None:
    kit = WebhookKit()
    kit.on_message()(lambda message: "x" * 400)
    with caplog.at_level(logging.WARNING, "webhook_kit"):
        client_for(kit, WEBHOOK_KIT_MAX_SEGMENTS=2).send_message("hi")
    assert "costs 3 SMS segments" in caplog.text


# -- extension conventions -------------------------------------------------------------------


def test_init_app_follows_flask_conventions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "from-env")
    kit = echo_kit()
    app = Flask(__name__)
    app.config["WEBHOOK_KIT_STORE"] = "memory://"
    kit.init_app(app)
    assert app.extensions["webhook_kit"] is kit
    assert app.config["WEBHOOK_KIT_AUTH_TOKEN"] == "from-env"
    assert app.config["WEBHOOK_KIT_VALIDATE"] == "enforce"
    assert app.config["WEBHOOK_KIT_MAX_BODY"] == 65536
    assert not any(value is app for value in vars(kit).values())
    rules = {rule.rule: rule.methods for rule in app.url_map.iter_rules()}
    assert {"GET", "POST"} <= (rules["/twilio/messages"] or set())
    assert "POST" in (rules["/twilio/status"] or set())
    assert "POST" in (rules["/twilio/fallback"] or set())


def test_one_kit_serves_several_apps_with_their_own_config() -> None:
    kit = echo_kit()
    first = make_app(kit)
    second = make_app(kit, WEBHOOK_KIT_AUTH_TOKEN="other")
    assert kit.pipeline(first).settings.auth_tokens == (TOKEN,)
    assert kit.pipeline(second).settings.auth_tokens == ("other",)
    assert kit.pipeline(first).store is not kit.pipeline(second).store


def test_url_prefix() -> None:
    kit = echo_kit()
    app = Flask(__name__)
    app.config.update(WEBHOOK_KIT_AUTH_TOKEN=TOKEN, WEBHOOK_KIT_STORE="memory://")
    app.test_client_class = TwilioTestClient
    kit.init_app(app, url_prefix="/hooks/sms")
    client = app.test_client()
    assert isinstance(client, TwilioTestClient)
    assert client.send_message("hi").texts == ["Echo: hi"]
    assert client.post("/twilio/messages").status_code == 404


def test_init_app_twice_is_refused() -> None:
    kit = echo_kit()
    app = make_app(kit)
    with pytest.raises(ConfigurationError, match="once per app"):
        kit.init_app(app)


def test_ledger_outside_an_app_context_says_what_to_do() -> None:
    kit = echo_kit()
    with pytest.raises(RuntimeError):
        _ = kit.ledger
    other = Flask(__name__)
    with other.app_context(), pytest.raises(ConfigurationError, match="init_app"):
        _ = kit.ledger


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"WEBHOOK_KIT_AUTH_TOKEN": None}, "set TWILIO_AUTH_TOKEN"),
        ({"WEBHOOK_KIT_VALIDATE": "sometimes"}, "WEBHOOK_KIT_VALIDATE"),
        ({"WEBHOOK_KIT_PUBLIC_URL": "example.com"}, "must start with http"),
        ({"WEBHOOK_KIT_PROXY_HOPS": "two"}, "WEBHOOK_KIT_PROXY_HOPS"),
        ({"WEBHOOK_KIT_PROXY_HOPS": -1}, "at least 0"),
        ({"WEBHOOK_KIT_MAX_BODY": 0}, "WEBHOOK_KIT_MAX_BODY"),
        ({"WEBHOOK_KIT_STORE": "mongodb://x"}, "unknown store URL"),
        ({"WEBHOOK_KIT_AUTH_TOKEN": 12345}, "WEBHOOK_KIT_AUTH_TOKEN"),
    ],
)
def test_bad_configuration_fails_at_start_up(
    config: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    app = Flask(__name__)
    app.config.update(WEBHOOK_KIT_AUTH_TOKEN=TOKEN, WEBHOOK_KIT_STORE="memory://")
    app.config.update(config)
    with pytest.raises(ConfigurationError, match=message):
        echo_kit().init_app(app)


def test_token_loader_alone_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    kit = echo_kit()
    kit.auth_token_loader(lambda account_sid: "per-account")
    app = Flask(__name__)
    app.config["WEBHOOK_KIT_STORE"] = "memory://"
    kit.init_app(app)


def test_csrf_extension_exempts_the_webhooks() -> None:
    exempted: list[object] = []

    class FakeCSRF:
        def exempt(self, view: object) -> None:
            exempted.append(view)

    app = Flask(__name__)
    app.config.update(WEBHOOK_KIT_AUTH_TOKEN=TOKEN, WEBHOOK_KIT_STORE="memory://")
    app.extensions["csrf"] = FakeCSRF()
    echo_kit().init_app(app)
    assert len(exempted) == 1 and getattr(exempted[0], "name", "") == "webhook_kit"


# -- direct dispatch (what the standalone app uses) -----------------------------------------


def direct_app(kit: WebhookKit, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update({"WEBHOOK_KIT_AUTH_TOKEN": TOKEN, "WEBHOOK_KIT_STORE": "memory://", **config})
    app.test_client_class = TwilioTestClient
    kit.init_app(app, direct=True)

    @app.route("/other", methods=["GET", "POST"])
    def other() -> str:
        return "flask"

    return app


def test_direct_dispatch_answers_the_webhook_routes_before_flask() -> None:
    kit = echo_kit()
    app = direct_app(kit)
    seen: list[str] = []
    app.before_request(lambda: seen.append("flask") or None)
    client = app.test_client()
    assert isinstance(client, TwilioTestClient)
    reply = client.send_message("hi")
    assert reply.texts == ["Echo: hi"]
    assert reply.response.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert reply.response.headers["Content-Length"] == str(len(reply.response.get_data()))
    assert client.send_status(new_sid(), "delivered").status_code == 200
    assert seen == []  # Flask's request cycle never ran
    assert client.get("/other").get_data() == b"flask" and seen == ["flask"]


def test_direct_dispatch_leaves_other_methods_to_flask() -> None:
    client = direct_app(echo_kit()).test_client()
    assert client.get("/twilio/status").status_code == 405
    assert client.put("/twilio/messages").status_code == 405


def test_direct_handlers_run_in_an_app_context() -> None:
    from flask import current_app, has_request_context

    kit = WebhookKit()
    contexts: list[tuple[str, bool]] = []

    @kit.on_message()
    def handler(message: InboundMessage) -> str:
        contexts.append((current_app.name, has_request_context()))
        record = kit.ledger.get("SMnone")
        return f"ledger says {record}"

    app = direct_app(kit)
    client = app.test_client()
    assert isinstance(client, TwilioTestClient)
    assert client.send_message("hi").texts == ["ledger says None"]
    assert contexts == [(app.name, False)]


def test_direct_dispatch_gives_every_kind_of_user_code_one_app_context() -> None:
    """Filters, handlers, hooks, error handlers and token loaders; none when none runs."""
    from flask import current_app, g, has_app_context

    kit = WebhookKit()
    seen: list[str] = []

    def note(kind: str) -> None:
        assert has_app_context(), kind
        seen.append(f"{kind}:{current_app.name}:{g.get('mark', '-')}")
        g.mark = kind  # the same context for the rest of the request

    def busy(message: InboundMessage) -> bool:
        note("filter")
        return message.body == "fail"

    @kit.on_message(when=busy)
    def failing(message: InboundMessage) -> str:
        note("handler")
        raise RuntimeError("boom")

    @kit.on_message()
    def echo(message: InboundMessage) -> str:
        note("handler")
        return "ok"

    @kit.on_error
    def apologise(error: Exception, event: object) -> str:
        note("on_error")
        return "sorry"

    @kit.on_final
    def final(record: object) -> None:
        note("final")

    @kit.auth_token_loader
    def tokens(account_sid: str) -> str:
        note("loader")
        return TOKEN

    app = direct_app(kit)
    client = app.test_client()
    assert isinstance(client, TwilioTestClient)
    name = app.name
    assert client.send_message("fail").texts == ["sorry"]
    assert seen == [f"loader:{name}:-", f"filter:{name}:loader", f"handler:{name}:filter",
                    f"on_error:{name}:handler"]  # fmt: skip
    seen.clear()
    assert client.send_message("hi").texts == ["ok"]
    assert seen == [f"loader:{name}:-", f"filter:{name}:loader", f"handler:{name}:filter"]
    seen.clear()
    assert client.send_status(new_sid(), "delivered").status_code == 200
    assert seen == [f"loader:{name}:-", f"final:{name}:loader"]
    assert not has_app_context()  # popped after each request


def test_direct_status_without_user_code_pushes_no_app_context() -> None:
    from flask import appcontext_pushed

    app = direct_app(echo_kit())
    client = app.test_client()
    assert isinstance(client, TwilioTestClient)
    pushed: list[object] = []
    with appcontext_pushed.connected_to(lambda sender, **extra: pushed.append(sender), app):
        assert client.send_status(new_sid(), "delivered").status_code == 200
        assert pushed == []
        assert client.send_message("hi").texts == ["Echo: hi"]
        assert pushed == [app]


def test_direct_bad_input_and_signatures() -> None:
    client = direct_app(echo_kit()).test_client()
    assert isinstance(client, TwilioTestClient)
    code, text = raw_post(client, b"\xff", sign=True)
    assert code == 400 and "UTF-8" in text
    code, text = raw_post(client, SID_FORM + b"&From=a&To=b", sign=False)
    assert code == 403


def test_direct_internal_error_is_a_plain_500(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    kit = echo_kit()
    app = direct_app(kit)
    monkeypatch.setattr(kit.pipeline(app), "check", lambda environ, incoming: 1 / 0)
    client = app.test_client()
    assert isinstance(client, TwilioTestClient)
    with caplog.at_level(logging.ERROR, "webhook_kit"):
        reply = client.send_message("hi")
    assert reply.status_code == 500
    assert reply.response.get_data() == b"internal error\n"
    assert "ZeroDivisionError" in caplog.text


def test_direct_status_without_handlers_is_one_store_step() -> None:
    class CountingStore(MemoryStore):
        calls: list[str] = []

        def claim(
            self,
            key: str,
            lease: float,
            *,
            replace: str = "",
            message: MessageFacts | None = None,
            senders: Sequence[str] = (),
        ) -> Claim:
            self.calls.append("claim")
            return super().claim(key, lease, replace=replace, message=message, senders=senders)

        def record_status(
            self, entry: StatusEntry, lease: float | None = None, replace: str = ""
        ) -> Applied:
            self.calls.append(f"record lease={lease}")
            return super().record_status(entry, lease, replace)

        def complete(
            self,
            key: str,
            owner: str,
            answer: bytes,
            *,
            conversation: ConversationWrite | None = None,
            jobs: Sequence[Job] = (),
        ) -> bool:
            self.calls.append("complete")
            return super().complete(key, owner, answer, conversation=conversation, jobs=jobs)

    store = CountingStore()
    kit = WebhookKit(store=store)
    kit.on_status(MessageStatus.FAILED)(lambda update: None)
    client = direct_app(kit).test_client()
    assert isinstance(client, TwilioTestClient)
    client.send_status(new_sid(), "delivered")
    assert store.calls == ["record lease=None"]
    store.calls.clear()
    client.send_status(new_sid(), "failed", error_code=30008)
    assert store.calls == ["record lease=15.0", "complete"]


# -- hostile input and faults (issue 17) -------------------------------------------------------


def test_a_long_plain_text_reply_is_split_at_word_boundaries() -> None:
    """The echo of a maximal (1,600-character) message with its prefix must still go out."""
    body = " ".join(["word"] * 319) + " end"  # 1,599 characters
    reply = client_for(echo_kit()).send_message(body)
    assert reply.status_code == 200
    assert all(len(text) <= 1600 for text in reply.texts) and len(reply.texts) == 2
    assert " ".join(reply.texts) == f"Echo: {body}"


def test_split_text_cuts_inside_a_word_only_when_it_must() -> None:
    from webhook_kit.routing import split_text

    assert split_text("abcdefghij", 4) == ["abcd", "efgh", "ij"]
    assert split_text("ab cd ef", 5) == ["ab cd", "ef"]
    assert split_text("a\n\nb", 2) == ["a", "b"]
    assert split_text("short", 1600) == ["short"] and split_text("", 5) == [""]


def test_a_store_failure_inside_a_handler_is_503_not_500() -> None:
    kit = WebhookKit()

    @kit.on_message()
    def reads_the_ledger(message: InboundMessage) -> str:
        raise StoreError("Redis store failed: connection refused")

    reply = client_for(kit).send_message("hi")
    assert reply.status_code == 503 and b"store unavailable" in reply.response.get_data()


def test_a_failing_filter_is_a_logged_500(caplog: pytest.LogCaptureFixture) -> None:
    kit = WebhookKit()
    kit.on_message(when=lambda message: 1 / 0 == 0)(lambda message: "never")
    with caplog.at_level(logging.ERROR, "webhook_kit"):
        reply = client_for(kit).send_message("hi")
    assert reply.status_code == 500 and "a message filter (when=) failed" in caplog.text


def test_a_re_split_replay_never_runs_the_handler_twice() -> None:
    kit, runs = counting_kit()
    client = client_for(kit)
    fields = inbound_sms("once")
    assert client.send("messages", fields).texts == ["run 1"]
    resplit = dict(fields)
    resplit["MessageSid"] += "MessagingServiceSid" + resplit.pop("MessagingServiceSid")
    url = "http://localhost/twilio/messages"
    assert compute_signature(url, resplit, TOKEN) == compute_signature(url, fields, TOKEN)
    assert client.send("messages", resplit).status_code == 400
    assert len(runs) == 1


def test_a_claim_held_by_a_dead_process_is_taken_over_at_once(tmp_path: Path) -> None:
    """A worker killed mid-handler (gunicorn's timeout, kill -9) strands nothing."""
    import os

    from webhook_kit.stores.sqlite import SQLiteStore

    path = str(tmp_path / "kit.db")
    fields = inbound_sms("hi")
    pid = os.fork()
    if pid == 0:  # the doomed worker: claims the message, then dies without a word
        SQLiteStore(path).claim(f"message:{fields['MessageSid']}", 30)
        os._exit(0)
    os.waitpid(pid, 0)
    runs: list[str] = []
    kit = WebhookKit(store=SQLiteStore(path))

    @kit.on_message()
    def handler(message: InboundMessage) -> str:
        runs.append(message.message_sid)
        return "ran"

    client = client_for(kit, WEBHOOK_KIT_CLAIM_WAIT=0)
    assert client.send("messages", fields).texts == ["ran"]
    assert client.send("messages", fields).texts == ["ran"]
    assert runs == [fields["MessageSid"]]


def test_only_a_duplicate_status_callback_is_logged_as_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = client_for(echo_kit())
    callback = status_callback(status="sent")
    with caplog.at_level(logging.INFO, "webhook_kit"):
        client.send("status", callback, headers={"I-Twilio-Idempotency-Token": "first"})
        assert "duplicate" not in caplog.text
        client.send("status", callback, headers={"I-Twilio-Idempotency-Token": "second"})
    assert "duplicate answered without the handler (idempotency token second)" in caplog.text
