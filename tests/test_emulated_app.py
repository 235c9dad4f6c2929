"""The app wired to the emulator (``emulated_app``), and fixtures that fail loudly."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from webhook_kit import WebhookKit, WebhookRejectedError
from webhook_kit.emulator import Emulator
from webhook_kit.errors import ConfigurationError
from webhook_kit.testing import CUSTOMER, EmulatedApp

BOT = """
from webhook_kit import WebhookKit

kit = WebhookKit()

@kit.on_message(keyword="BOOM")
def boom(message):
    raise RuntimeError("the CRM is down")

@kit.on_message()
def echo(message):
    return "Echo: " + message.body
"""


def _app(token: str = "secret") -> Flask:
    kit = WebhookKit()
    kit.on_message()(lambda message: "mine: " + message.body)
    app = Flask(__name__)
    app.config.update(WEBHOOK_KIT_AUTH_TOKEN=token, WEBHOOK_KIT_STORE="memory://")
    kit.init_app(app)
    return app


def test_a_rejected_signature_raises_with_the_apps_reason_and_logs_a_token_hint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with Emulator(clock="manual", auth_token="secret") as emulator:
        wired = EmulatedApp.wire(_app(), emulator)
        assert [reply.body for reply in wired.text("hi").replies] == ["mine: hi"]
        emulator.auth_token = "not-the-apps"  # the account's token was rotated, say
        with (
            caplog.at_level(logging.WARNING, "webhook_kit"),
            pytest.raises(WebhookRejectedError) as raised,
        ):
            wired.text("hi again")
    message = str(raised.value)
    assert "answered 403 to the inbound webhook http://bot.test/twilio/messages" in message
    assert "invalid signature" in message
    logged = caplog.text
    assert "rejected invalid signature for http://bot.test/twilio/messages" in logged
    assert f"is the auth token of account {emulator.account_sid}" in logged


def test_an_emulator_with_another_token_is_refused_at_once() -> None:
    with (
        Emulator(clock="manual", auth_token="other") as emulator,
        pytest.raises(ConfigurationError, match="another auth token"),
    ):
        EmulatedApp.wire(_app(), emulator)


def test_the_plugins_fixtures_share_one_account(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(mybot=BOT)
    pytester.makeini("[pytest]\nwebhook_kit_handlers = mybot\n")
    pytester.makepyfile(
        f"""
import pytest
from webhook_kit import WebhookRejectedError


def test_text_and_send(emulated_app):
    exchange = emulated_app.text("hi", from_="{CUSTOMER}")
    assert [reply.body for reply in exchange.replies] == ["Echo: hi"]
    sent = emulated_app.sender.send("{CUSTOMER}", "Your order shipped", from_=emulated_app.number)
    emulated_app.advance(10)  # its status callbacks reach the app, signed and verified
    record = emulated_app.kit.pipeline(emulated_app.app).store.get_message(sent.sid)
    assert record.status.value == "delivered"


def test_a_failing_handler_raises(emulated_app):
    with pytest.raises(WebhookRejectedError, match="answered 500 to the inbound webhook"):
        emulated_app.text("BOOM")


@pytest.mark.webhook_kit(WEBHOOK_KIT_PUBLIC_URL="http://bot.test/elsewhere")
def test_a_4xx_raises(emulated_app):
    with pytest.raises(WebhookRejectedError, match="answered 404"):
        emulated_app.text("hi")


def test_the_two_fixtures_agree(webhook_app, twilio_emulator):
    twilio_emulator.mount("http://bot.test", webhook_app)
    twilio_emulator.add_number("+15005550006", sms_url="http://bot.test/twilio/messages")
    exchange = twilio_emulator.handset("{CUSTOMER}").send("+15005550006", "hi")
    assert [reply.body for reply in exchange.replies] == ["Echo: hi"]
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_without_handlers_or_app_the_error_says_what_to_set(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_it(webhook_client):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*webhook_kit_handlers = yourbot*fixture named `app`*"])
    assert "fixture 'app' not found" not in result.stdout.str()


def test_a_handlers_module_that_cannot_load_names_the_ini_option(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nwebhook_kit_handlers = no_such_bot\n")
    pytester.makepyfile("def test_it(emulated_app):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*webhook_kit_handlers = no_such_bot (the pytest ini option*"])
