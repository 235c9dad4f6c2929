"""pytest fixtures for testing webhook_kit bots; registered through the ``pytest11`` entry point.

``webhook_client`` sends signed webhooks to your app and returns parsed replies. The app is
your own ``app`` fixture, or, with ``webhook_kit_handlers = module`` in the pytest ini (or
``@pytest.mark.webhook_kit(handlers="module")``), the standalone app around that module's
``kit``, with an in-memory store and a test auth token.

``twilio_emulator`` runs the offline Twilio emulator on a free port for one test (manual clock
unless ``@pytest.mark.twilio_emulator(clock="real", ...)`` says otherwise), and
``twilio_client`` is the official ``twilio.rest.Client`` pointed at it. ``emulated_app`` is
the two together: the app under test wired to an emulator (one account and token, the app
mounted, its number's webhooks and ``kit.send`` pointed at each other).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask

from . import testing
from .emulator import Emulator
from .errors import ConfigurationError
from .kit import WebhookKit
from .standalone import create_app
from .testing import EmulatedApp, TwilioTestClient

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
    handlers, options = _handlers(request)
    app = _standalone(handlers, options) if handlers else _users_app(request)
    app.test_client_class = TwilioTestClient
    return app


@pytest.fixture
def emulated_app(request: pytest.FixtureRequest) -> Iterator[EmulatedApp]:
    """The app under test wired to an emulator (see :class:`~webhook_kit.testing.EmulatedApp`).

    The standalone app around ``webhook_kit_handlers`` is configured as for the emulator in
    production (its token, account, API base URL and ``WEBHOOK_KIT_PUBLIC_URL``); your own
    ``app`` fixture's token is given to the emulator instead. The emulator is configured by
    ``@pytest.mark.twilio_emulator(...)`` as for ``twilio_emulator``.
    """
    handlers, options = _handlers(request)
    settings = _emulator_options(request)
    if handlers:
        settings.setdefault("auth_token", TEST_AUTH_TOKEN)
        settings.setdefault("account_sid", testing.ACCOUNT_SID)
        with Emulator(**settings) as emulator:
            app = _standalone(
                handlers,
                {
                    "WEBHOOK_KIT_AUTH_TOKEN": emulator.auth_token,
                    "WEBHOOK_KIT_ACCOUNT_SID": emulator.account_sid,
                    "WEBHOOK_KIT_TWILIO_BASE_URL": emulator.url,
                    "WEBHOOK_KIT_PUBLIC_URL": testing.EMULATED_BASE_URL,
                    **options,
                },
            )
            app.test_client_class = TwilioTestClient
            yield EmulatedApp.wire(app, emulator)
        return
    app = _users_app(request)
    kit = app.extensions.get("webhook_kit")
    tokens = kit.pipeline(app).settings.auth_tokens if isinstance(kit, WebhookKit) else ()
    if tokens:
        settings.setdefault("auth_token", tokens[0])
    settings.setdefault("account_sid", app.config.get("WEBHOOK_KIT_ACCOUNT_SID") or None)
    with Emulator(**settings) as emulator:
        yield EmulatedApp.wire(app, emulator)


def _handlers(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    marker = request.node.get_closest_marker("webhook_kit")
    options = dict(marker.kwargs) if marker else {}
    handlers = options.pop("handlers", None) or request.config.getini("webhook_kit_handlers")
    return handlers, options


def _standalone(handlers: str, options: dict[str, Any]) -> Flask:
    """The standalone app around ``handlers``, with an in-memory store and the test token."""
    try:
        app = create_app(
            {"WEBHOOK_KIT_HANDLERS": handlers},
            config={
                "WEBHOOK_KIT_AUTH_TOKEN": TEST_AUTH_TOKEN,
                "WEBHOOK_KIT_STORE": "memory://",
                **options,
            },
        )
    except ConfigurationError as error:
        pytest.fail(
            f"webhook_kit_handlers = {handlers} (the pytest ini option, or "
            f"@pytest.mark.webhook_kit(handlers=...)): {error}",
            pytrace=False,
        )
    app.testing = True
    return app


def _users_app(request: pytest.FixtureRequest) -> Flask:
    """The test suite's own ``app`` fixture; without one, say what to set."""
    try:
        app = request.getfixturevalue("app")
    except pytest.FixtureLookupError:
        pytest.fail(
            "webhook_kit's fixtures need your app: set `webhook_kit_handlers = yourbot` (the "
            "module defining kit = WebhookKit()) under [pytest] in pytest.ini (or [tool.pytest."
            "ini_options] in pyproject.toml), or mark the test @pytest.mark.webhook_kit("
            "handlers='yourbot'), or define a fixture named `app` returning your Flask app",
            pytrace=False,
        )
    if not isinstance(app, Flask) or not isinstance(app.extensions.get("webhook_kit"), WebhookKit):
        pytest.fail(
            "the `app` fixture must return a Flask app on which kit.init_app(app) was called",
            pytrace=False,
        )
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
    """An :class:`~webhook_kit.emulator.Emulator` serving on a free loopback port.

    Its account and auth token are the ones ``webhook_app`` uses, so the emulator's webhooks
    verify in the standalone test app; ``emulated_app`` wires the two together.
    """
    options = {
        "account_sid": testing.ACCOUNT_SID,
        "auth_token": TEST_AUTH_TOKEN,
        **_emulator_options(request),
    }
    with Emulator(**options) as emulator:
        yield emulator


def _emulator_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("twilio_emulator")
    return {"clock": "manual", **(marker.kwargs if marker else {})}


@pytest.fixture
def twilio_client(twilio_emulator: Emulator) -> Client:
    """The official twilio client, with the emulator's credentials, talking only to it."""
    return twilio_emulator.client()
