"""The testing kit: payload factories, the signed client, the conversation driver, the plugin."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from webhook_kit import ConfigurationError, InboundMessage, WebhookKit
from webhook_kit.events import Fields, parse_inbound, parse_status
from webhook_kit.testing import (
    ACCOUNT_SID,
    TwilioTestClient,
    fallback_request,
    inbound_mms,
    inbound_sms,
    new_sid,
    opt_out_message,
    status_callback,
    whatsapp_message,
)

SID = re.compile(r"^(SM|MM|ME)[0-9a-f]{32}$")
E164 = re.compile(r"^\+[1-9]\d{7,14}$")


class TestFactories:
    def test_sids_have_twilio_shape(self) -> None:
        assert SID.match(new_sid()) and SID.match(new_sid("MM"))
        assert new_sid() != new_sid()
        assert re.match(r"^AC[0-9a-f]{32}$", ACCOUNT_SID)

    def test_inbound_sms_has_the_twenty_fields_twilio_sends(self) -> None:
        fields = inbound_sms("hi")
        assert len(fields) == 20
        assert SID.match(fields["MessageSid"])
        assert fields["SmsSid"] == fields["SmsMessageSid"] == fields["MessageSid"]
        assert E164.match(fields["From"]) and E164.match(fields["To"])
        assert fields["Body"] == "hi" and fields["NumMedia"] == "0"

    def test_every_field_is_overridable_or_removable(self) -> None:
        fields = inbound_sms(ToCity="Paris", FromZip=None, NumSegments=3, Extra="x")
        assert fields["ToCity"] == "Paris" and "FromZip" not in fields
        assert fields["NumSegments"] == "3" and fields["Extra"] == "x"

    def test_mms_with_n_media(self) -> None:
        fields = inbound_mms(3, "look", content_type="image/png")
        message = parse_inbound(Fields(fields.items()))
        assert message.message_sid.startswith("MM") and message.num_media == 3
        assert fields["NumMedia"] == "3"
        assert all(m.content_type == "image/png" and "/Media/ME" in m.url for m in message.media)

    def test_whatsapp_message(self) -> None:
        fields = whatsapp_message(
            "hi", button=("Yes", "yes-1"), location=(1.5, -2.25, "1 Main St", "Home")
        )
        message = parse_inbound(Fields(fields.items()))
        assert message.channel == "whatsapp" and message.profile_name == "Ada Lovelace"
        assert message.wa_id == "14155550100"
        assert (message.button_text, message.button_payload) == ("Yes", "yes-1")
        assert message.location is not None and message.location.label == "Home"
        assert message.location.latitude == 1.5

    @pytest.mark.parametrize(
        ("keyword", "kind"),
        [("STOP", "STOP"), ("start", "START"), ("HELP", "HELP"), ("UNSTOP", "START")],
    )
    def test_opt_out_messages(self, keyword: str, kind: str) -> None:
        fields = opt_out_message(keyword)
        assert fields["Body"] == keyword and fields["OptOutType"] == kind

    def test_status_callback(self) -> None:
        fields = status_callback("SM" + "0" * 32, "undelivered", error_code=30003)
        update = parse_status(Fields(fields.items()))
        assert update.status == "undelivered" and update.error is not None
        assert update.error.code == 30003 and update.raw_dlr_done_date is not None
        sent = status_callback(status="sent")
        assert "RawDlrDoneDate" not in sent and "ErrorCode" not in sent
        assert SID.match(sent["MessageSid"])

    def test_fallback_request(self) -> None:
        fields = fallback_request("hi", error_code=11205, error_url="https://x/y")
        assert fields["ErrorCode"] == "11205" and fields["ErrorUrl"] == "https://x/y"
        assert fields["Body"] == "hi"


def make_client(**config: object) -> TwilioTestClient:
    kit = WebhookKit()

    @kit.on_message()
    def echo(message: InboundMessage) -> list[str]:
        return [f"Echo: {message.body}", f"{len(message.media)} media"]

    app = Flask(__name__)
    app.config.update({"WEBHOOK_KIT_AUTH_TOKEN": "t", "WEBHOOK_KIT_STORE": "memory://", **config})
    app.test_client_class = TwilioTestClient
    kit.init_app(app)
    client = app.test_client()
    assert isinstance(client, TwilioTestClient)
    return client


class TestClient:
    def test_send_message_returns_the_parsed_reply(self) -> None:
        reply = make_client().send_message("hi", media=["https://x/1"])
        assert reply.status_code == 200
        assert reply.messages[0].body == "Echo: hi"
        assert reply.texts == ["Echo: hi", "1 media"]

    def test_send_status(self) -> None:
        reply = make_client().send_status(new_sid(), "delivered")
        assert reply.status_code == 200 and reply.twiml is not None and reply.messages == ()

    def test_signs_for_the_public_url_the_app_rebuilds(self) -> None:
        client = make_client(WEBHOOK_KIT_PUBLIC_URL="https://bot.example.com")
        assert client.send_message("hi").status_code == 200

    def test_explicit_token_and_rejection(self) -> None:
        client = make_client()
        client.auth_token = "wrong"
        reply = client.send_message("hi")
        assert reply.status_code == 403 and reply.twiml is None and reply.texts == []

    def test_conversation_driver(self) -> None:
        conversation = make_client().conversation(from_="+14155550199")
        texts = conversation.send_all(["one", "two"])
        assert texts == ["Echo: one", "0 media", "Echo: two", "0 media"]
        assert len(conversation.replies) == 2
        assert conversation.send("three").texts[0] == "Echo: three"

    def test_an_app_without_a_kit_says_what_to_do(self) -> None:
        app = Flask(__name__)
        app.test_client_class = TwilioTestClient
        client = app.test_client()
        assert isinstance(client, TwilioTestClient)
        with pytest.raises(ConfigurationError, match="init_app"):
            client.post_signed("/x", {})


PLUGIN_TEST = """
import pytest

def test_echo(webhook_client):
    reply = webhook_client.send_message("hi")
    assert reply.messages[0].body == "Echo: hi"

@pytest.mark.webhook_kit(handlers="examples.keyword_router", WEBHOOK_KIT_MAX_SEGMENTS=5)
def test_marker(webhook_client, webhook_app):
    assert webhook_client.send_message("JOIN ada").texts == ["Welcome, ada!"]
    assert webhook_app.config["WEBHOOK_KIT_MAX_SEGMENTS"] == 5

def test_payloads(webhook_client, webhook_payloads):
    reply = webhook_client.send("status", webhook_payloads.status_callback(status="sent"))
    assert reply.status_code == 200
"""


def test_plugin_with_ini_handlers(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nwebhook_kit_handlers = examples.echo_bot\n")
    pytester.makepyfile(PLUGIN_TEST)
    pytester.syspathinsert(str(pytester.path.parent))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_plugin_uses_the_users_app_fixture(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest
from flask import Flask
from webhook_kit import WebhookKit

@pytest.fixture
def app():
    kit = WebhookKit()
    kit.on_message()(lambda message: "mine: " + message.body)
    app = Flask(__name__)
    app.config.update(WEBHOOK_KIT_AUTH_TOKEN="secret", WEBHOOK_KIT_STORE="memory://")
    kit.init_app(app)
    return app
"""
    )
    pytester.makepyfile(
        """
def test_mine(webhook_client):
    assert webhook_client.send_message("hi").texts == ["mine: hi"]
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
