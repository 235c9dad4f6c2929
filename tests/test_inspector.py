"""The inspector's HTTP side: who may open it, what the overview says, the live stream.

The page itself is driven in a real browser in test_inspector_browser.py; here the rules
behind it are checked request by request, and its routes are fuzzed for 5xx.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import random
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
import requests
from click.testing import CliRunner
from emulator_support import ERROR_KEYS
from flask import Flask
from flask.testing import FlaskClient
from server import free_port

from webhook_kit import InboundMessage, WebhookKit
from webhook_kit.cli import main
from webhook_kit.emulator import Chaos, Emulator, EmulatorError, Timing
from webhook_kit.emulator.delivery import Signing
from webhook_kit.emulator.http import create_app
from webhook_kit.emulator.http import inspector as inspector_module
from webhook_kit.emulator.http.inspector import CSP, TOKEN_HEADER
from webhook_kit.emulator.journal import Journal
from webhook_kit.signature import HMAC_SHA256

NUMBER = "+15017122661"
HANDSET = "+15558675309"
STATIC = Path(inspector_module.__file__).parent / "static"


def echo_app(emulator: Emulator) -> Flask:
    kit = WebhookKit()

    @kit.on_message()
    def echo(message: InboundMessage) -> str:
        return f"Echo: {message.body}"

    app = Flask("echo")
    app.config.update(WEBHOOK_KIT_AUTH_TOKEN=emulator.auth_token, WEBHOOK_KIT_STORE="memory://")
    kit.init_app(app)
    return app


def with_bot(emulator: Emulator) -> Emulator:
    emulator.mount("http://bot.test", echo_app(emulator))
    emulator.add_number(
        NUMBER,
        sms_url="http://bot.test/twilio/messages",
        status_callback="http://bot.test/twilio/status",
    )
    return emulator


def page_client(emulator: Emulator) -> tuple[FlaskClient, str]:
    """A test client of the emulator's app, and the token its page carries."""
    client = create_app(emulator, emulator.media_base, bind=emulator.host).test_client()
    page = client.get("/", headers={"Host": "127.0.0.1:8010"})
    match = re.search(r'name="emulator-page-token" content="([^"]+)"', page.get_data(as_text=True))
    return client, match.group(1) if match else ""


def basic(emulator: Emulator) -> dict[str, str]:
    pair = f"{emulator.account_sid}:{emulator.auth_token}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


# -- who may open it --------------------------------------------------------------------


def test_loopback_page_opens_without_credentials_actions_need_its_token() -> None:
    emulator = Emulator(clock="manual")
    client, token = page_client(emulator)
    local = {"Host": "127.0.0.1:8010"}
    page = client.get("/", headers=local)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"] == CSP
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert len(token) >= 40 and token in page.get_data(as_text=True)
    assert client.get("/_emulator/overview", headers=local).status_code == 200
    for host in ("localhost:8010", "[::1]:8010", "127.0.0.1"):
        assert client.get("/", headers={"Host": host}).status_code == 200
    # an action without the page's token is refused: another site cannot forge it
    refused = client.post("/_emulator/reset", headers=local)
    assert refused.status_code == 401 and refused.json["code"] == 20003
    wrong = client.post("/_emulator/reset", headers={**local, TOKEN_HEADER: token[:-1] + "x"})
    assert wrong.status_code == 401
    assert (
        client.post("/_emulator/reset", headers={**local, TOKEN_HEADER: token}).status_code == 204
    )
    # the token opens the REST API too (the page's "REST JSON" button reads it)
    listing = client.get(
        f"/2010-04-01/Accounts/{emulator.account_sid}/Messages.json",
        headers={**local, TOKEN_HEADER: token},
    )
    assert listing.status_code == 200 and listing.json["messages"] == []
    # the REST API without the token or credentials still says 401
    assert (
        client.get(
            f"/2010-04-01/Accounts/{emulator.account_sid}/Messages.json", headers=local
        ).status_code
        == 401
    )


def test_a_rebound_host_name_or_another_origin_is_refused() -> None:
    emulator = Emulator(clock="manual")
    client, token = page_client(emulator)
    # DNS rebinding: the attacker's name resolves to 127.0.0.1, the Host header keeps it
    rebound = client.get("/", headers={"Host": "attacker.example:8010"})
    assert rebound.status_code == 401 and rebound.headers["WWW-Authenticate"].startswith("Basic")
    assert (
        client.get("/_emulator/overview", headers={"Host": "attacker.example"}).status_code == 401
    )
    forged = client.post(
        "/_emulator/reset",
        headers={"Host": "127.0.0.1:8010", TOKEN_HEADER: token, "Origin": "http://evil.example"},
    )
    assert forged.status_code == 403 and set(forged.json) == ERROR_KEYS
    # a cross-origin request is refused even with the account's credentials
    assert (
        client.post("/_emulator/reset", headers={**basic(emulator), "Origin": "null"}).status_code
        == 403
    )
    embedded = client.get(
        "/_emulator/overview",
        headers={
            "Host": "127.0.0.1:8010",
            "Sec-Fetch-Site": "cross-site",
            "Sec-Fetch-Mode": "no-cors",
        },
    )
    assert embedded.status_code == 403
    followed = client.get(
        "/",
        headers={
            "Host": "127.0.0.1:8010",
            "Sec-Fetch-Site": "cross-site",
            "Sec-Fetch-Mode": "navigate",
        },
    )
    assert followed.status_code == 200  # a link from elsewhere opens the page
    same = client.post(
        "/_emulator/reset",
        headers={"Host": "127.0.0.1:8010", TOKEN_HEADER: token, "Origin": "http://127.0.0.1:8010"},
    )
    assert same.status_code == 204


def test_any_other_bind_needs_the_accounts_basic_auth() -> None:
    emulator = Emulator(clock="manual", host="0.0.0.0")  # not started: the app is enough
    client, token = page_client(emulator)
    assert token == ""  # the page was not served: 401 before it
    for path in (
        "/",
        "/_emulator/overview",
        "/_emulator/events",
        "/_emulator/inspector/inspector.js",
    ):
        answer = client.get(path, headers={"Host": "127.0.0.1:8010"})
        assert answer.status_code == 401, path
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="Twilio API"'
    page = client.get("/", headers={"Host": "127.0.0.1:8010", **basic(emulator)})
    assert page.status_code == 200
    wrong = {"Authorization": "Basic " + base64.b64encode(b"AC:nope").decode()}
    assert client.get("/", headers=wrong).status_code == 401
    overview = client.get("/_emulator/overview", headers=basic(emulator))
    assert overview.status_code == 200 and overview.json["account_sid"] == emulator.account_sid


# -- the page and its assets ---------------------------------------------------------------


def test_the_page_is_served_by_the_package_and_runs_no_inline_script() -> None:
    client, _ = page_client(Emulator(clock="manual"))
    html = (STATIC / "inspector.html").read_text()
    assert re.findall(r"<script[^>]*>", html) == [
        '<script src="/_emulator/inspector/inspector.js" defer>'
    ]
    loads = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert loads and all(url.startswith(("/_emulator/inspector/", "data:", "#")) for url in loads)
    assert not re.search(r"\son[a-z]+=", html), "no inline event handlers under the CSP"
    for name, kind in (("inspector.js", "text/javascript"), ("inspector.css", "text/css")):
        answer = client.get(f"/_emulator/inspector/{name}", headers={"Host": "localhost"})
        assert answer.status_code == 200 and answer.mimetype == kind
        assert answer.data == (STATIC / name).read_bytes()
    missing = client.get("/_emulator/inspector/../core.py", headers={"Host": "localhost"})
    assert missing.status_code == 404
    unknown = client.get("/_emulator/inspector/secrets.txt", headers={"Host": "localhost"})
    assert unknown.status_code == 404 and set(unknown.json) == ERROR_KEYS


def test_the_script_never_parses_markup() -> None:
    lines = (STATIC / "inspector.js").read_text().splitlines()
    script = "\n".join(line for line in lines if not line.lstrip().startswith("//"))
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    assert "textContent" in script and "createTextNode" in script


# -- what the overview says ----------------------------------------------------------------


def test_overview_has_threads_timelines_and_every_webhook() -> None:
    with with_bot(Emulator(clock="manual")) as emulator:
        exchange = emulator.handset(HANDSET).send(NUMBER, "hi", ["https://example.com/cat.png"])
        emulator.advance(5)
        data = requests.get(f"{emulator.url}/_emulator/overview", timeout=10).json()
    assert data["manual_clock"] is True and data["chaos"] is None
    [number] = data["numbers"]
    assert (
        number.items()
        >= {
            "number": NUMBER,
            "sms_url": "http://bot.test/twilio/messages",
            "fallback_url": None,
            "status_callback": "http://bot.test/twilio/status",
        }.items()
    )
    assert data["handsets"] == [{"address": HANDSET, "numbers": [NUMBER], "opted_out_of": []}]
    assert data["services"] == []
    inbound, reply = data["messages"]
    assert inbound["resource"]["sid"] == exchange.inbound.sid
    assert inbound["media"] == [{"url": "https://example.com/cat.png", "content_type": "image/png"}]
    assert [step["status"] for step in inbound["timeline"]] == ["received"]
    [posted] = inbound["webhooks"]
    assert posted["kind"] == "inbound" and posted["status"] == 200
    assert posted["signature"].startswith("X-Twilio-Signature")
    assert posted["latency"] >= 0 and posted["retries"] == 0 and posted["chaos"] == []
    assert "<Message>Echo: hi</Message>" in posted["answer"]["body"]
    assert reply["resource"]["body"] == "Echo: hi"
    assert inbound["handset"] == reply["handset"] == HANDSET
    assert reply["resource"]["direction"] == "outbound-reply"
    assert [s["status"] for s in reply["timeline"]] == ["queued", "sending", "sent", "delivered"]
    assert [w["params"]["MessageStatus"] for w in reply["webhooks"]] == [
        "sending",
        "sent",
        "delivered",
    ]
    times = [s["at"] for s in reply["timeline"]]
    assert times == sorted(times) and times[-1] > times[0]


def test_failure_rules_show_their_code_and_description() -> None:
    with with_bot(Emulator(clock="manual")) as emulator:
        emulator.add_rule("undelivered", 30003, to=HANDSET)
        emulator.handset(HANDSET).send(NUMBER, "hi")
        emulator.advance(5)
        data = requests.get(f"{emulator.url}/_emulator/overview", timeout=10).json()
    assert data["rules"] == [
        {
            "status": "undelivered",
            "error_code": 30003,
            "to": HANDSET,
            "body": None,
            "probability": 1.0,
        }
    ]
    last = data["messages"][1]["timeline"][-1]
    assert last["status"] == "undelivered" and last["error_code"] == 30003
    assert last["error_message"] == "Unreachable destination handset"


def test_chaos_marks_dropped_duplicated_delayed_and_out_of_order_callbacks() -> None:
    chaos = Chaos(seed=5, reorder=1.0, jitter=0.5, duplicate=1.0, late=0, drop_final=0.5)
    with Emulator(clock="manual", chaos=chaos, timing=Timing(queue=0.01, send=0.01)) as emulator:
        with_bot(emulator)
        for n in range(12):
            emulator.handset(HANDSET).send(NUMBER, str(n))
        emulator.advance(10)
        data = requests.get(f"{emulator.url}/_emulator/overview", timeout=10).json()
        deliveries = requests.get(
            f"{emulator.url}/_emulator/deliveries", headers=basic(emulator), timeout=10
        ).json()["deliveries"]
    hooks = [w for m in data["messages"] for w in m["webhooks"] if w["kind"] == "status"]
    dropped = [w for w in hooks if "dropped" in w["chaos"]]
    assert len(dropped) == data["dropped_callbacks"] == emulator.dropped_callbacks > 0
    assert all(w["attempts"] == 0 and w["status"] is None for w in dropped)
    assert all(w["params"]["MessageStatus"] == "delivered" for w in dropped)
    posted = [w for w in hooks if "dropped" not in w["chaos"]]
    assert all("delayed" in w["chaos"] for w in posted)
    assert sum("duplicate" in w["chaos"] for w in posted) == len(posted) // 2
    assert any(w["out_of_order"] for w in posted)
    # the control API returns the same record of each webhook
    assert sum("dropped" in d["chaos"] for d in deliveries) == len(dropped)
    assert all(set(d) == set(hooks[0]) - {"out_of_order"} for d in deliveries)


def test_overview_filters_by_address_and_keeps_the_newest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inspector_module, "OVERVIEW_LIMIT", 3)
    with with_bot(Emulator(clock="manual")) as emulator:
        emulator.handset(HANDSET).send(NUMBER, "one")
        emulator.handset("+15558675310").send(NUMBER, "two")
        emulator.handset("+15558675310").send(NUMBER, "three")
        everything = requests.get(f"{emulator.url}/_emulator/overview", timeout=10).json()
        one = requests.get(
            f"{emulator.url}/_emulator/overview", params={"Address": HANDSET}, timeout=10
        ).json()
    assert everything["truncated"] is True
    assert [m["resource"]["body"] for m in everything["messages"]] == [
        "Echo: two",
        "three",
        "Echo: three",
    ]
    assert {h["address"] for h in everything["handsets"]} == {HANDSET, "+15558675310"}
    assert [m["resource"]["body"] for m in one["messages"]] == ["one", "Echo: one"]
    assert one["truncated"] is False


def test_a_send_from_a_number_the_emulator_was_not_given_is_the_recipients() -> None:
    with Emulator(clock="manual") as emulator:
        emulator.client().messages.create(to=HANDSET, from_="+15550001111", body="api")
        data = requests.get(f"{emulator.url}/_emulator/overview", timeout=10).json()
    assert data["handsets"] == [
        {"address": HANDSET, "numbers": ["+15550001111"], "opted_out_of": []}
    ]
    assert data["messages"][0]["handset"] == HANDSET


def test_stop_and_start_show_as_an_opt_out() -> None:
    with with_bot(Emulator(clock="manual")) as emulator:
        emulator.handset(HANDSET).send(NUMBER, "STOP")
        stopped = requests.get(f"{emulator.url}/_emulator/overview", timeout=10).json()
        emulator.handset(HANDSET).send(NUMBER, "START")
        started = requests.get(f"{emulator.url}/_emulator/overview", timeout=10).json()
    assert stopped["handsets"][0]["opted_out_of"] == [NUMBER]
    assert started["handsets"][0]["opted_out_of"] == []


# -- driving ------------------------------------------------------------------------------------


def test_chaos_switch_goes_through_the_emulator() -> None:
    emulator = Emulator(clock="manual")
    client = create_app(emulator, emulator.media_base, bind=emulator.host).test_client()
    on = client.post(
        "/_emulator/chaos",
        data={"Seed": "7", "DropFinal": "1", "Reorder": "0", "Duplicate": "0.5"},
        headers=basic(emulator),
    )
    assert on.status_code == 200
    assert emulator.chaos == Chaos(seed=7, drop_final=1.0, reorder=0.0, duplicate=0.5)
    assert on.json["chaos"]["drop_final"] == 1.0
    off = client.post("/_emulator/chaos", data={"Enabled": "false"}, headers=basic(emulator))
    assert off.status_code == 200 and off.json == {"chaos": None} and emulator.chaos is None
    for form, words in [
        ({"DropFinal": "2"}, "drop_final must be between 0 and 1"),
        ({"Reorder": "nan"}, "reorder must be between 0 and 1"),
        ({"Jitter": "-1"}, "jitter must be 0 to 3600 seconds"),
        ({"Late": "often"}, "Late must be a number"),
        ({"Seed": "-3"}, "Seed must be a whole number"),
        ({"Enabled": "maybe"}, "Enabled must be true or false"),
    ]:
        answer = client.post("/_emulator/chaos", data=form, headers=basic(emulator))
        assert answer.status_code == 400 and words in answer.json["message"], (form, answer.json)
    assert emulator.chaos is None
    with pytest.raises(EmulatorError, match="duplicate must be between 0 and 1"):
        Chaos(duplicate=1.5)


# -- live updates ---------------------------------------------------------------------------


def test_journal_wakes_waiters() -> None:
    journal = Journal()
    seen = journal.changes
    assert journal.wait(seen, 0.01) == seen  # nothing happened: the timeout
    threading.Timer(0.05, journal.touch).start()
    assert journal.wait(seen, 5) == seen + 1
    waiter = threading.Thread(target=journal.wait, args=(journal.changes, 3600))
    waiter.start()
    journal.close()
    waiter.join(timeout=30)
    assert not waiter.is_alive() and journal.closed  # closing wakes it, an hour early


def test_events_stream_each_change_and_end_when_the_emulator_stops() -> None:
    emulator = with_bot(Emulator(clock="manual")).start()
    stream = requests.get(f"{emulator.url}/_emulator/events", stream=True, timeout=10)
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    lines = stream.iter_lines(decode_unicode=True)

    def next_data() -> int:
        for line in lines:
            if line.startswith("data: "):
                return int(line[6:])
        raise AssertionError("the stream ended")

    first = next_data()
    emulator.handset(HANDSET).send(NUMBER, "hi")
    assert next_data() > first
    emulator.stop()
    # the stream ends with the emulator (else the read would time out after 10 s)
    rest = [int(line[6:]) for line in lines if line.startswith("data: ")]
    assert rest == sorted(rest) and all(n <= emulator.journal.changes for n in rest)
    stream.close()


# -- no 5xx from any page route ---------------------------------------------------------------

NASTY = [
    "", " ", "%", "%zz", "\x00", "é👋\u202e", "x" * 3000, "-1", "nan", "1e309", "true", "false",
    "<script>alert(1)</script>", "../../etc/passwd", "+15558675309", "SM" + "0" * 32, "null",
    "http://evil.example", "\r\nX-Injected: 1", "[1,2]", '{"a": 1}', "9" * 40,
]  # fmt: skip
FIELDS = [
    "Enabled", "Seed", "Reorder", "Jitter", "Duplicate", "Late", "LateBy", "DropFinal", "Address",
]  # fmt: skip
ASSETS = ["inspector.js", "inspector.css", *NASTY]


def _page_requests(
    emulator: Emulator, token: str, rng: random.Random
) -> Iterator[tuple[str, str, bytes, dict[str, str]]]:
    for _ in range(260):
        pairs = [
            (rng.choice(FIELDS), rng.choice([*NASTY, str(rng.uniform(-5, 5))]))
            for _ in range(rng.randint(0, 5))
        ]
        body = urlencode(pairs).encode()
        if rng.random() < 0.15:
            body = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        target = rng.choice(
            [
                "/",
                f"/?{urlencode(pairs)}",
                "/_emulator/overview",
                f"/_emulator/overview?{urlencode(pairs)}",
                "/_emulator/chaos",
                f"/_emulator/inspector/{quote(rng.choice(ASSETS), safe='')}",
                f"/_emulator/{rng.choice(['send', 'advance', 'rules', 'numbers', 'reset'])}",
            ]
        )
        headers = {
            "Host": rng.choice(
                [f"127.0.0.1:{emulator.port}"] * 4
                + ["localhost", "[::1]:1", "evil.example", "[", ":"]
            ),
            "Content-Type": rng.choice(
                ["application/x-www-form-urlencoded"] * 3 + ["text/plain", "application/json"]
            ),
        }
        if rng.random() < 0.5:
            headers[TOKEN_HEADER] = rng.choice([token, token, "", "x"])
        if rng.random() < 0.2:
            headers["Origin"] = rng.choice(
                [f"http://127.0.0.1:{emulator.port}", "null", "http://e.x"]
            )
        if rng.random() < 0.2:
            headers["Authorization"] = rng.choice(
                [basic(emulator)["Authorization"], "Basic !!", "Bearer x"]
            )
        yield (
            rng.choice(["GET", "GET", "POST", "POST", "HEAD", "PUT", "DELETE"]),
            target,
            body,
            headers,
        )


def test_page_routes_never_answer_5xx() -> None:
    with with_bot(Emulator(clock="manual")) as emulator:
        emulator.handset(HANDSET).send(NUMBER, "<b>hi</b>")
        page = requests.get(f"{emulator.url}/", timeout=10).text
        found = re.search(r'name="emulator-page-token" content="([^"]+)"', page)
        assert found is not None
        token = found.group(1)
        statuses: dict[int, int] = {}
        for method, target, body, headers in _page_requests(emulator, token, random.Random(26)):
            connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=10)
            try:
                connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for name, value in headers.items():
                    connection.putheader(name, value.replace("\r\n", " "))
                connection.putheader("Content-Length", str(len(body)))
                connection.endheaders(body)
                response = connection.getresponse()
                status, text = response.status, response.read()
            finally:
                connection.close()
            statuses[status] = statuses.get(status, 0) + 1
            assert status < 500, (method, target, body, headers, text)
            assert b"Traceback" not in text
            if status >= 400 and method != "HEAD" and text:
                assert set(json.loads(text)) == ERROR_KEYS, text
    assert statuses.get(200, 0) > 20 and sum(c for s, c in statuses.items() if s >= 400) > 50


# -- the command line ---------------------------------------------------------------------------


def test_cli_prints_the_inspector_and_links_the_ledger() -> None:
    port = free_port()
    ledger = "http://127.0.0.1:8000/twilio/ledger"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "webhook_kit.cli",
            "emulator",
            "--port",
            str(port),
            "--ledger-url",
            ledger,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().decode() for _ in range(4)]
        overview = requests.get(f"http://127.0.0.1:{port}/_emulator/overview", timeout=10)
    finally:
        process.terminate()
        process.communicate(timeout=15)
    assert lines[3] == f"Inspector: http://127.0.0.1:{port}/ (no credentials on loopback)\n"
    assert overview.json()["ledger_url"] == ledger


def test_cli_refuses_a_ledger_url_that_is_not_one() -> None:
    result = CliRunner().invoke(main, ["emulator", "--ledger-url", "javascript:alert(1)"])
    assert result.exit_code == 1
    assert result.output == (
        "error: --ledger-url 'javascript:alert(1)' is not an http(s) URL, e.g. "
        "http://127.0.0.1:8000/twilio/ledger\n"
    )


def test_each_webhook_says_how_it_was_signed() -> None:
    assert Signing("secret").describe() == "X-Twilio-Signature (HMAC_SHA1, auth token)"
    shared = Signing("secret", HMAC_SHA256, "KS" + "1" * 32, ("user", "pass"))
    assert shared.describe() == (
        f"X-Twilio-Signature (HMAC_SHA256, shared key KS{'1' * 32}) + HTTP Basic"
    )
    assert Signing("secret").describe(("user", "pass")).endswith("+ HTTP Basic")
    with with_bot(Emulator(clock="manual")) as emulator:
        emulator.handset(HANDSET).send(NUMBER, "hi")
    [inbound] = [d for d in emulator.deliveries if d.kind == "inbound"]
    assert inbound.signature == "X-Twilio-Signature (HMAC_SHA1, auth token)"


def test_overview_lists_messaging_services_with_their_urls_and_senders() -> None:
    with Emulator(clock="manual") as emulator:
        sid = emulator.add_service("Alerts", StatusCallback="http://bot.test/twilio/status")
        emulator.add_number(
            NUMBER, sms_url="http://bot.test/twilio/messages", messaging_service_sid=sid
        )
        data = requests.get(f"{emulator.url}/_emulator/overview", timeout=10).json()
    assert data["services"] == [
        {
            "sid": sid,
            "friendly_name": "Alerts",
            "inbound_request_url": None,
            "fallback_url": None,
            "status_callback": "http://bot.test/twilio/status",
            "senders": [NUMBER],
        }
    ]
