"""The read-only ledger page (``WEBHOOK_KIT_LEDGER_PAGE=1``): off by default, open from
loopback only, escaped, never a 5xx."""

from __future__ import annotations

import base64
import random
import re
from urllib.parse import quote, urlencode

import pytest
from flask import Flask

from webhook_kit import InboundMessage, WebhookKit
from webhook_kit.standalone import create_app as standalone_app
from webhook_kit.testing import TwilioTestClient, new_sid

TOKEN = "ledger-page-token"
ACCOUNT = "AC" + "ab" * 16
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def make_app(**config: object) -> Flask:
    kit = WebhookKit()

    @kit.on_message()
    def echo(message: InboundMessage) -> str:
        return f"Echo: {message.body}"

    app = Flask("ledger_page_app")
    app.config.update(WEBHOOK_KIT_AUTH_TOKEN=TOKEN, WEBHOOK_KIT_STORE="memory://", **config)
    kit.init_app(app)
    app.test_client_class = TwilioTestClient
    return app


@pytest.fixture
def app() -> Flask:
    return make_app(WEBHOOK_KIT_LEDGER_PAGE=True, WEBHOOK_KIT_ACCOUNT_SID=ACCOUNT)


def basic(user: str = ACCOUNT, password: str = TOKEN) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


REMOTE = {"REMOTE_ADDR": "203.0.113.9"}


def test_off_by_default() -> None:
    client = make_app().test_client()
    assert client.get("/twilio/ledger").status_code == 404
    assert (
        make_app(WEBHOOK_KIT_LEDGER_PAGE="0").test_client().get("/twilio/ledger").status_code == 404
    )


def test_lists_messages_escaped_under_a_strict_policy(app: Flask) -> None:
    client = app.test_client()
    client.send_message(HOSTILE, from_="+15558675309")
    client.send_message("plain", from_="+15558675310")
    page = client.get("/twilio/ledger")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert (
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    )
    assert "<script" not in html and "<img" not in html
    csp = page.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce is not None and f'<style nonce="{nonce.group(1)}">' in html
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    rows = re.findall(r'<tr data-sid="([^"]+)">', html)
    assert len(rows) == 2
    assert page.headers["Cache-Control"] == "no-store"
    # a second request gets another nonce
    again = client.get("/twilio/ledger").headers["Content-Security-Policy"]
    assert again != csp


def test_filters_and_detail(app: Flask) -> None:
    client = app.test_client()
    sid = new_sid()
    client.send_message(
        "first",
        from_="+15558675309",
        fields={"MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid},
    )
    client.send_message("second", from_="+15558675310")
    client.send_status(sid, "sent")  # status callbacks apply to any SID the ledger knows
    mine = client.get("/twilio/ledger?From=%2B15558675309").get_data(as_text=True)
    assert re.findall(r'<tr data-sid="([^"]+)">', mine) == [sid]
    assert "second" not in mine
    inbound = client.get("/twilio/ledger?Direction=inbound&Status=received")
    assert inbound.status_code == 200
    detail = client.get(f"/twilio/ledger/{sid}")
    assert detail.status_code == 200
    text = detail.get_data(as_text=True)
    assert "first" in text and "+15558675309" in text
    assert re.findall(r'<tr data-status="([^"]+)">', text) == ["sent"]
    missing = client.get(f"/twilio/ledger/{new_sid()}")
    assert missing.status_code == 404 and "has no message" in missing.get_data(as_text=True)
    assert client.get("/twilio/ledger/" + "x" * 500).status_code == 404


def test_pages_of_fifty(app: Flask) -> None:
    client = app.test_client()
    for n in range(55):
        client.send_message(f"m{n}", from_="+15558675309")
    first = client.get("/twilio/ledger?From=%2B15558675309").get_data(as_text=True)
    assert len(re.findall(r"<tr data-sid=", first)) == 50
    older = re.search(r'<a href="([^"]+)">Older messages', first)
    assert older is not None
    link = older.group(1).replace("&amp;", "&")
    assert "From=%2B15558675309" in link
    second = client.get(link).get_data(as_text=True)
    assert len(re.findall(r"<tr data-sid=", second)) == 5 and "Older messages" not in second


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("Status=bogus", "is not a message status"),
        ("Direction=sideways", "is not one of"),
        ("Cursor=garbage", "is not one that Ledger.find returned"),
    ],
)
def test_bad_filters_are_400_with_the_reason(app: Flask, query: str, words: str) -> None:
    answer = app.test_client().get(f"/twilio/ledger?{query}")
    assert answer.status_code == 400 and words in answer.get_data(as_text=True)


def test_only_loopback_opens_it_without_credentials(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/twilio/ledger", headers={"Host": "127.0.0.1:5000"}).status_code == 200
    assert client.get("/twilio/ledger", headers={"Host": "[::1]:5000"}).status_code == 200
    for environ, headers in [
        (REMOTE, {}),
        ({}, {"Host": "bot.example.com"}),  # a rebound name, or a proxy passing Host on
        ({}, {"X-Forwarded-For": "203.0.113.9"}),
        ({}, {"Forwarded": "for=203.0.113.9"}),
    ]:
        refused = client.get("/twilio/ledger", environ_base=environ, headers=headers)
        assert refused.status_code == 401, (environ, headers)
        assert refused.headers["WWW-Authenticate"] == 'Basic realm="webhook_kit ledger"'
        assert "Traceback" not in refused.get_data(as_text=True)
    assert client.get("/twilio/ledger", environ_base=REMOTE, headers=basic()).status_code == 200
    for wrong in (
        basic(password="nope"),
        basic(user="AC" + "0" * 32),
        {"Authorization": "Bearer x"},
    ):
        assert client.get("/twilio/ledger", environ_base=REMOTE, headers=wrong).status_code == 401


def test_without_an_account_sid_it_stays_local() -> None:
    client = make_app(WEBHOOK_KIT_LEDGER_PAGE=True).test_client()
    assert client.get("/twilio/ledger").status_code == 200
    refused = client.get("/twilio/ledger", environ_base=REMOTE, headers=basic())
    assert refused.status_code == 403
    assert "WEBHOOK_KIT_ACCOUNT_SID" in refused.get_data(as_text=True)


def test_read_only(app: Flask) -> None:
    client = app.test_client()
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert client.open("/twilio/ledger", method=method).status_code == 405


NASTY = ["", "%", "\x00", "é👋", "x" * 3000, "-1", "nan", "<b>", "received", "inbound", "1e309"]


def test_no_5xx_from_any_query(app: Flask) -> None:
    client = app.test_client()
    client.send_message("hello", from_="+15558675309")
    rng = random.Random(6)
    names = ["To", "From", "Status", "Direction", "Cursor", "Other"]
    for _ in range(150):
        pairs = [(rng.choice(names), rng.choice(NASTY)) for _ in range(rng.randint(0, 4))]
        path = rng.choice(
            [f"/twilio/ledger?{urlencode(pairs)}", f"/twilio/ledger/{quote(rng.choice(NASTY))}"]
        )
        answer = client.get(path, environ_base=rng.choice([{}, REMOTE]))
        assert answer.status_code < 500, (path, answer.get_data(as_text=True)[:300])


def test_the_standalone_app_serves_it_when_the_environment_says_so() -> None:
    env = {"TWILIO_AUTH_TOKEN": TOKEN, "WEBHOOK_KIT_STORE": "memory://"}
    assert standalone_app(env).test_client().get("/twilio/ledger").status_code == 404
    app = standalone_app(
        {**env, "WEBHOOK_KIT_LEDGER_PAGE": "1", "WEBHOOK_KIT_ACCOUNT_SID": ACCOUNT}
    )
    client = app.test_client()
    assert client.get("/twilio/ledger").status_code == 200
    assert client.get("/twilio/ledger", environ_base=REMOTE).status_code == 401
    assert client.get("/twilio/ledger", environ_base=REMOTE, headers=basic()).status_code == 200
