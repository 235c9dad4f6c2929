"""pytest fixtures for testing webhook_kit bots; registered through the ``pytest11`` entry point.

``webhook_client`` sends signed webhooks to your app and returns parsed replies. The app is
your own ``app`` fixture, or, with ``webhook_kit_handlers = module`` in the pytest ini (or
``@pytest.mark.webhook_kit(handlers="module")``), the standalone app around that module's
``kit``, with an in-memory store and a test auth token.

``twilio_emulator`` runs the offline Twilio emulator on a free port for one test (manual clock
unless ``@pytest.mark.twilio_emulator(clock="real", ...)`` says otherwise), and
``twilio_client`` is the official ``twilio.rest.Client`` pointed at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING

import pytest
from flask import Flask

from . import testing
from .emulator import Emulator
from .standalone import create_app
from .testing import TwilioTestClient

if TYPE_CHECKING:
    from twilio.rest import Client

TEST_AUTH_TOKEN = "webhook-kit-test-token"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "webhook_kit_handlers",
        "module whose `kit` the webhook_app fixture serves (default: your `app` fixture)",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "webhook_kit(handlers=None, **config): the handlers module and WEBHOOK_KIT_* config "
        "for the webhook_app fixture",
    )
    config.addinivalue_line(
        "markers",
        "twilio_emulator(**options): keyword arguments of webhook_kit.emulator.Emulator "
        "for the twilio_emulator fixture (default clock='manual')",
    )


@pytest.fixture
def webhook_app(request: pytest.FixtureRequest) -> Flask:
    """The app under test, set up to hand out :class:`TwilioTestClient` clients."""
    marker = request.node.get_closest_marker("webhook_kit")
    options = dict(marker.kwargs) if marker else {}
    handlers = options.pop("handlers", None) or request.config.getini("webhook_kit_handlers")
    if handlers:
        app = create_app(
            {"WEBHOOK_KIT_HANDLERS": handlers},
            config={
                "WEBHOOK_KIT_AUTH_TOKEN": TEST_AUTH_TOKEN,
                "WEBHOOK_KIT_STORE": "memory://",
                **options,
            },
        )
        app.testing = True
    else:
        app = request.getfixturevalue("app")
    app.test_client_class = TwilioTestClient
    return app


@pytest.fixture
def webhook_client(webhook_app: Flask) -> TwilioTestClient:
    """A client whose ``send_message``/``send_status`` are signed like Twilio's requests."""
    client = webhook_app.test_client()
    assert isinstance(client, TwilioTestClient)
    return client


@pytest.fixture
def webhook_payloads() -> ModuleType:
    """The payload factories: ``inbound_sms``, ``inbound_mms``, ``whatsapp_message``, ..."""
    return testing


@pytest.fixture
def twilio_emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """An :class:`~webhook_kit.emulator.Emulator` serving on a free loopback port."""
    marker = request.node.get_closest_marker("twilio_emulator")
    options = {"clock": "manual", **(marker.kwargs if marker else {})}
    with Emulator(**options) as emulator:
        yield emulator


@pytest.fixture
def twilio_client(twilio_emulator: Emulator) -> Client:
    """The official twilio client, with the emulator's credentials, talking only to it."""
    return twilio_emulator.client()
