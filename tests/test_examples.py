"""Every example bot, tested the way users test theirs: with the pytest plugin's fixtures."""

from __future__ import annotations

import logging

import pytest

from webhook_kit.testing import TwilioTestClient, inbound_mms, new_sid, opt_out_message


@pytest.mark.webhook_kit(handlers="examples.echo_bot")
def test_echo_bot(webhook_client: TwilioTestClient) -> None:
    reply = webhook_client.send_message("hi")
    assert reply.messages[0].body == "Echo: hi"


@pytest.mark.webhook_kit(handlers="examples.keyword_router")
class TestKeywordRouter:
    def test_help(self, webhook_client: TwilioTestClient) -> None:
        for word in ["help", "INFO", "Help?"]:
            assert webhook_client.send_message(word).texts == [
                "Reply JOIN <name> to subscribe, or send a photo."
            ]

    def test_join(self, webhook_client: TwilioTestClient) -> None:
        assert webhook_client.send_message("JOIN ada").texts == ["Welcome, ada!"]

    def test_photo(self, webhook_client: TwilioTestClient) -> None:
        reply = webhook_client.send("messages", inbound_mms(2))
        assert reply.texts == ["Got 2 file(s), thanks!"]
        assert reply.messages[0].media_urls == ("https://demo.twilio.com/owl.png",)

    def test_stop_gets_no_second_reply(self, webhook_client: TwilioTestClient) -> None:
        reply = webhook_client.send("messages", opt_out_message("STOP"))
        assert reply.status_code == 200 and reply.texts == []

    def test_anything_else(self, webhook_client: TwilioTestClient) -> None:
        conversation = webhook_client.conversation()
        assert conversation.send_all(["what?", "JOIN bob"]) == [
            "Sorry, I did not get that. Reply HELP for options.",
            "Welcome, bob!",
        ]


@pytest.mark.webhook_kit(handlers="examples.delivery_alerts")
def test_delivery_alerts(
    webhook_client: TwilioTestClient, caplog: pytest.LogCaptureFixture
) -> None:
    sid = new_sid()
    with caplog.at_level(logging.INFO, "delivery_alerts"):
        webhook_client.send_status(sid, "sent")
        webhook_client.send_status(sid, "undelivered", error_code=30003)
        webhook_client.send_status(sid, "undelivered", error_code=30003)  # a retry
        webhook_client.send_status(sid, "delivered")  # too late to change the outcome
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"message {sid} undelivered: 30003 Unreachable destination handset: The carrier could "
        "not reach the phone: off, out of coverage, or unable to take SMS."
    ]
    finals = [r.getMessage() for r in caplog.records if "ended" in r.getMessage()]
    assert finals == [f"message {sid} ended undelivered after 2 callback(s)"]


@pytest.mark.webhook_kit(handlers="examples.survey_bot")
def test_survey_bot(webhook_client: TwilioTestClient) -> None:
    conversation = webhook_client.conversation()
    texts = conversation.send_all(["hi", "Ada", "thirty", "36", "Paris", "9", "5", "yes"])
    assert texts == [
        "Welcome to our five-question survey.",
        "What is your name?",
        "How old are you?",
        "Sorry, an age is a whole number from 1 to 129. How old are you?",
        "Which city do you live in?",
        "From 1 to 5, how much do you like our service?",
        "Sorry, please answer with a number from 1 to 5. "
        "From 1 to 5, how much do you like our service?",
        "May we contact you about your answers? (yes/no)",
        "Thank you, Ada! Your answers are saved.",
    ]
    assert conversation.send("hello").texts == [
        "You already answered, Ada. Reply AGAIN to redo it."
    ]
    saved = conversation.saved
    assert saved is not None and saved.state["city"] == "Paris" and saved.step is None
    assert conversation.send("again").texts[1] == "What is your name?"
    assert conversation.saved is not None and conversation.saved.state == {}
