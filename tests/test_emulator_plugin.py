"""The pytest fixtures for the emulator, as a user's test suite uses them."""

from __future__ import annotations

import pytest
from twilio.rest import Client

from webhook_kit.emulator import Emulator


def test_fixtures_give_a_client_pointed_at_the_emulator(
    twilio_emulator: Emulator, twilio_client: Client
) -> None:
    message = twilio_client.messages.create(to="+15558675310", from_="+15017122661", body="hi")
    assert twilio_client.username == twilio_emulator.account_sid
    assert twilio_emulator.message(message.sid) is not None
    twilio_emulator.advance(1)
    assert twilio_client.messages(message.sid).fetch().status == "delivered"
    assert [r.method for r in twilio_emulator.requests] == ["POST", "GET"]


@pytest.mark.twilio_emulator(clock="real", speed=100, account_sid="AC" + "7" * 32)
def test_marker_configures_the_emulator(twilio_emulator: Emulator) -> None:
    assert twilio_emulator.account_sid == "AC" + "7" * 32
    assert not twilio_emulator.clock.manual


def test_each_test_gets_a_fresh_emulator(twilio_emulator: Emulator) -> None:
    assert twilio_emulator.messages() == [] and twilio_emulator.requests == []
