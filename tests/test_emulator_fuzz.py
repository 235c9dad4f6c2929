"""A few hundred generated malformed requests: each gets a Twilio-shaped 4xx, never a 500."""

from __future__ import annotations

import base64
import http.client
import json
import random
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest
from emulator_support import ERROR_KEYS

from webhook_kit.emulator import Emulator

FIELDS = [
    "To", "From", "Body", "MediaUrl", "MessagingServiceSid", "StatusCallback", "ValidityPeriod",
    "MaxPrice", "SmartEncoded", "ScheduleType", "SendAt", "ContentSid", "ContentVariables",
    "Attempt", "ProvideFeedback", "ForceDelivery", "ShortenUrls", "SendAsMms", "RiskCheck",
    "ApplicationSid", "ContentRetention", "AddressRetention", "TrafficType", "Status",
    "PageSize", "Page", "PageToken", "DateSent", "DateSent<", "DateSent>", "Unknown",
]  # fmt: skip
NASTY = [
    "", " ", "+", "+1", "+15005550001", "+15558675310", "whatsapp:", "whatsapp:+1555",
    "messenger:", "x" * 2000, "é👋\u202e", "\x00", "%", "%zz", "-1", "0", "1e309", "nan",
    "true", "maybe", "fixed", "2026-13-45", "2026-01-01T25:00:00Z", "SM" + "0" * 32,
    "MG" + "z" * 32, "MGnope", "PA", "PASM", "http://", "http://bad_host/x", "javascript:x",
    "http://[::1/x", "http://h:99999/x", "https://example.com/a.png", "²", "٣", "9" * 30,
    '{"a": 1}', "[1, 2]", "\r\nX-Injected: 1", "canceled", "../../etc/passwd",
]  # fmt: skip


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(clock="manual") as running:
        yield running


def _requests(emulator: Emulator, rng: random.Random) -> Iterator[tuple[str, str, bytes, dict]]:
    account = emulator.account_sid
    good = "Basic " + base64.b64encode(f"{account}:{emulator.auth_token}".encode()).decode()
    sid = emulator.client().messages.create(to="+15558675310", from_="+15017122661", body="x").sid
    auths = [good] * 6 + ["Basic !!!", "Bearer abc", "Basic " + base64.b64encode(b"AC:x").decode()]
    for _ in range(320):
        pairs = [
            (rng.choice(FIELDS), rng.choice([*NASTY, str(rng.randint(-5, 5000))]))
            for _ in range(rng.randint(0, 6))
        ]
        body = urlencode(pairs).encode()
        if rng.random() < 0.15:
            body = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        query = urlencode(pairs)
        target = rng.choice(
            [
                f"/2010-04-01/Accounts/{account}/Messages.json",
                f"/2010-04-01/Accounts/{account}/Messages.json?{query}",
                f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
                f"/2010-04-01/Accounts/{account}/Messages/{quote(rng.choice(NASTY))}.json",
                f"/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json?{query}",
                f"/2010-04-01/Accounts/{account}/Messages/{sid}/Media/ME{'0' * 32}.json",
                f"/2010-04-01/Accounts/{quote(rng.choice(NASTY))}/Messages.json",
                "/2010-04-01/Accounts.json",
                f"/_emulator/{rng.choice(['advance', 'send', 'numbers', 'rules', 'nope'])}",
            ]
        )
        method = rng.choice(["GET", "POST", "POST", "POST", "DELETE", "PUT", "PATCH"])
        headers = {
            "Authorization": rng.choice(auths),
            "Content-Type": rng.choice(
                ["application/x-www-form-urlencoded"] * 4
                + ["application/json", "multipart/form-data; boundary=x", "text/plain"]
            ),
        }
        yield method, target, body, headers


def test_malformed_requests_get_twilio_shaped_4xx(emulator: Emulator) -> None:
    statuses: dict[int, int] = {}
    for method, target, body, headers in _requests(emulator, random.Random(2024)):
        connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=10)
        try:
            connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
            status, text = response.status, response.read()
        finally:
            connection.close()
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, (method, target, body, text)
        if status >= 400:
            payload = json.loads(text)
            assert set(payload) == ERROR_KEYS and payload["status"] == status, text
            assert b"Traceback" not in text
    assert sum(count for status, count in statuses.items() if status >= 400) > 250
