"""The order-updates example: it sends, tracks and reconciles against the emulator over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from test_sending import CUSTOMER, Served, post_signed

from examples import order_updates
from webhook_kit.emulator import Chaos, Emulator
from webhook_kit.testing import inbound_sms


@pytest.fixture
def shop() -> Iterator[tuple[Emulator, Served]]:
    lost = Chaos(reorder=0, duplicate=0, late=0, drop_final=1.0)
    with Emulator(clock="manual", chaos=lost) as emulator:
        served = Served(emulator)
        served.kit = order_updates.kit
        served.start()
        yield emulator, served
        served.stop()


def ask(served: Served, body: str) -> str:
    fields = dict(inbound_sms(body, from_=CUSTOMER, to=order_updates.SENDER).items())
    token = served.app.config["WEBHOOK_KIT_AUTH_TOKEN"]
    status, reply = post_signed(served.url + "/twilio/messages", fields, token)
    assert status == 200
    return reply


def test_ship_track_and_reconcile(shop: tuple[Emulator, Served]) -> None:
    emulator, served = shop
    assert "not texted you about order 42" in ask(served, "WHERE 42")
    with served.app.app_context():
        sent = order_updates.notify_shipped("42", CUSTOMER)
    assert "order 42 is queued" in ask(served, "WHERE 42")
    emulator.advance(5)  # the final callback is lost
    assert "order 42 is sent" in ask(served, "WHERE 42")
    with served.app.app_context():
        assert order_updates.kit.reconcile(older_than=0).updated == 1
    assert "order 42 is delivered" in ask(served, "WHERE 42")
    assert served.record(sent.sid).ref == "order-42"


def test_ship_from_the_command_line(shop: tuple[Emulator, Served]) -> None:
    emulator, served = shop
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": emulator.account_sid,
        "TWILIO_AUTH_TOKEN": emulator.auth_token,
        "WEBHOOK_KIT_TWILIO_BASE_URL": emulator.url,
        "WEBHOOK_KIT_PUBLIC_URL": served.url,
        "WEBHOOK_KIT_STORE": "memory://",
    }
    done = subprocess.run(
        [sys.executable, "-m", "examples.order_updates", "ship", "7", CUSTOMER],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("sent SM") and "(queued)" in done.stdout
    (message,) = emulator.messages(to=CUSTOMER)
    assert message.body == "Your order 7 has shipped."
    assert message.status_callback.startswith(served.url + "/twilio/status?c=")  # type: ignore[union-attr]
