"""``webhook-kit doctor`` against the emulator: exit 1 naming each difference, 0 when all match.

The command runs in-process (click's runner) with the environment a server would have; the
account it reads is an emulator on a loopback port, reached through the app's own client.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from webhook_kit.cli import main
from webhook_kit.doctor import url_differences
from webhook_kit.emulator import Emulator

PUBLIC = "https://bot.example.com"
NUMBER, OTHER = "+15017122661", "+15017122662"
API_KEY, API_SECRET = "SK" + "d" * 32, "doctor-key-secret"


@pytest.fixture(scope="module")
def running() -> Iterator[Emulator]:
    with Emulator(clock="manual", api_keys={API_KEY: API_SECRET}) as emulator:
        yield emulator


@pytest.fixture
def emulator(running: Emulator) -> Emulator:
    running.reset()
    return running


def environment(emulator: Emulator, **overrides: str | None) -> dict[str, str | None]:
    return {
        "WEBHOOK_KIT_HANDLERS": "examples.echo_bot",
        "TWILIO_ACCOUNT_SID": emulator.account_sid,
        "TWILIO_AUTH_TOKEN": emulator.auth_token,
        "WEBHOOK_KIT_AUTH_TOKEN": None,
        "TWILIO_API_KEY": None,
        "TWILIO_API_SECRET": None,
        "TWILIO_REGION": None,
        "TWILIO_EDGE": None,
        "WEBHOOK_KIT_STORE": "memory://",
        "WEBHOOK_KIT_PUBLIC_URL": PUBLIC,
        "WEBHOOK_KIT_TWILIO_BASE_URL": emulator.url,
        "WEBHOOK_KIT_URL_PREFIX": None,
        **overrides,
    }


def doctor(emulator: Emulator, *args: str, **overrides: str | None) -> Result:
    return CliRunner().invoke(main, ["doctor", *args], env=environment(emulator, **overrides))


def test_all_match_exits_0(emulator: Emulator) -> None:
    emulator.add_number(NUMBER, sms_url=f"{PUBLIC}/twilio/messages")
    emulator.add_number(
        OTHER,
        sms_url=f"{PUBLIC}:443/twilio/messages?tenant=2",  # default port, a query: still a match
        status_callback=f"{PUBLIC}/twilio/status",
    )
    result = doctor(emulator)
    assert result.exit_code == 0, result.output
    assert "the account calls the URLs this app verifies" in result.output
    assert "the app verifies with the account's auth token" in result.output
    assert f"number {NUMBER}" in result.output and "store memory:// answers" in result.output


def test_a_number_pointing_elsewhere_exits_1_and_names_it(emulator: Emulator) -> None:
    emulator.add_number(NUMBER, sms_url="http://old.example.com:8080/sms")
    good = emulator.add_number(OTHER, sms_url=f"{PUBLIC}/twilio/messages")
    result = doctor(emulator)
    assert result.exit_code == 1
    output = result.output
    assert f"number {NUMBER}" in output and "sms_url" in output
    assert "scheme http, the app expects https" in output
    assert "host old.example.com, the app is at bot.example.com" in output
    assert "port 8080, the app is on 443" in output
    assert "path /sms, the app's route is /twilio/messages" in output
    assert f"fix: set sms_url to {PUBLIC}/twilio/messages" in output
    assert f"ok: number {OTHER} ({good.sid}) sms_url" in output
    assert "1 difference(s) to fix" in output


def test_status_callback_and_empty_sms_url(emulator: Emulator) -> None:
    emulator.add_number(NUMBER, status_callback=f"{PUBLIC}/status")
    result = doctor(emulator)
    assert result.exit_code == 1
    assert "sms_url: is empty: incoming messages never reach the app" in result.output
    assert "status_callback: https://bot.example.com/status differs" in result.output
    assert "path /status, the app's route is /twilio/status" in result.output


def test_url_prefix_and_number_filter(emulator: Emulator) -> None:
    emulator.add_number(NUMBER, sms_url=f"{PUBLIC}/hooks/messages")
    emulator.add_number(OTHER, sms_url="https://elsewhere.example.com/x")
    ok = doctor(emulator, "--number", NUMBER, WEBHOOK_KIT_URL_PREFIX="/hooks")
    assert ok.exit_code == 0, ok.output
    missing = doctor(emulator, "--number", "+15550000000", WEBHOOK_KIT_URL_PREFIX="/hooks")
    assert missing.exit_code == 1 and "+15550000000: is not a number of this account" in (
        missing.output
    )


def test_wrong_auth_token_is_named(emulator: Emulator) -> None:
    """The doctor reads the account with an API key; the app verifies with another token."""
    emulator.add_number(NUMBER, sms_url=f"{PUBLIC}/twilio/messages")
    result = doctor(
        emulator,
        TWILIO_AUTH_TOKEN="an-old-token",
        TWILIO_API_KEY=API_KEY,
        TWILIO_API_SECRET=API_SECRET,
    )
    assert result.exit_code == 1
    assert "WEBHOOK_KIT_AUTH_TOKEN: is not the account's auth token" in result.output
    rotating = doctor(
        emulator,
        TWILIO_AUTH_TOKEN=f"an-old-token,{emulator.auth_token}",
        TWILIO_API_KEY=API_KEY,
        TWILIO_API_SECRET=API_SECRET,
    )
    assert rotating.exit_code == 0, rotating.output


def test_refused_credentials(emulator: Emulator) -> None:
    result = doctor(emulator, TWILIO_AUTH_TOKEN="not-the-token")
    assert result.exit_code == 1
    assert "Twilio credentials: the account" in result.output and "(401, 20003)" in result.output


def test_no_public_url_compares_paths_and_suggests_the_origin(emulator: Emulator) -> None:
    emulator.add_number(NUMBER, sms_url="https://bot.example.org/twilio/messages")
    result = doctor(emulator, WEBHOOK_KIT_PUBLIC_URL=None)
    assert result.exit_code == 1
    assert "WEBHOOK_KIT_PUBLIC_URL: not set" in result.output
    assert "fix: set WEBHOOK_KIT_PUBLIC_URL=https://bot.example.org" in result.output
    assert "number" not in result.output.split("DIFFERENCE")[-1]  # the path matched


def test_validation_off_is_a_difference(emulator: Emulator) -> None:
    emulator.add_number(NUMBER, sms_url=f"{PUBLIC}/twilio/messages")
    result = doctor(emulator, WEBHOOK_KIT_VALIDATE="off")
    assert result.exit_code == 1 and "WEBHOOK_KIT_VALIDATE: off" in result.output


def test_bad_configuration_is_one_line(emulator: Emulator) -> None:
    result = doctor(emulator, WEBHOOK_KIT_PUBLIC_URL="bot.example.com")
    assert result.exit_code == 1 and result.output.startswith("error: WEBHOOK_KIT_PUBLIC_URL")


@pytest.mark.parametrize(
    ("actual", "expected", "differences"),
    [
        ("https://a.com/x", "https://a.com/x", []),
        ("https://A.com:443/x?q=1#rc=2", "https://a.com/x", []),
        (
            "http://a.com/x",
            "https://a.com/x",
            ["scheme http, the app expects https", "port 80, the app is on 443"],
        ),
        ("https://a.com:8443/x", "https://a.com/x", ["port 8443, the app is on 443"]),
        ("https://a.com", "https://a.com/x", ["path /, the app's route is /x"]),
    ],
)
def test_url_differences(actual: str, expected: str, differences: list[str]) -> None:
    assert url_differences(actual, expected) == differences


def test_unreachable_api(emulator: Emulator) -> None:
    result = doctor(emulator, WEBHOOK_KIT_TWILIO_BASE_URL="http://127.0.0.1:1")
    assert result.exit_code == 1 and "Twilio API: could not be reached" in result.output


def test_messaging_services_are_compared(emulator: Emulator) -> None:
    """A service's inbound URL stands for its numbers' unless use_inbound_webhook_on_number."""
    client = emulator.client()
    pooled = emulator.add_number(NUMBER, sms_url="https://stale.example.com/ignored")
    own = emulator.add_number(OTHER, sms_url=f"{PUBLIC}/twilio/messages")
    service = client.messaging.v1.services.create(
        friendly_name="Bot",
        inbound_request_url="https://bot.example.com/old/messages",
        status_callback=f"{PUBLIC}/twilio/status",
    )
    client.messaging.v1.services(service.sid).phone_numbers.create(phone_number_sid=pooled.sid)
    result = doctor(emulator)
    assert result.exit_code == 1
    output = result.output
    assert f"Messaging Service Bot ({service.sid}) inbound_request_url" in output
    assert "path /old/messages, the app's route is /twilio/messages" in output
    assert f"number {NUMBER} ({pooled.sid}) sms_url: its Messaging Service" in output
    assert "stale.example.com" not in output.split("DIFFERENCE", 1)[1]  # not the number's
    assert f"ok: number {OTHER} ({own.sid}) sms_url" in output
    client.messaging.v1.services(service.sid).update(
        inbound_request_url=f"{PUBLIC}/twilio/messages"
    )
    assert doctor(emulator).exit_code == 0
    deferring = client.messaging.v1.services(service.sid).update(use_inbound_webhook_on_number=True)
    assert deferring.use_inbound_webhook_on_number is True
    result = doctor(emulator)
    assert result.exit_code == 1 and "stale.example.com" in result.output  # the number's own
