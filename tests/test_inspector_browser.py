"""The inspector in a real browser: headless Debian chromium over the DevTools protocol.

A webhook_kit app (echo bot, ledger page on) runs on a loopback port beside the emulator.
From the page, a handset texts the app; the reply bubble appears; advancing the clock takes
the reply's timeline to ``delivered``; with chaos dropping every final callback, the next
reply is marked; a ``<script>`` body is shown as text and never runs. Screenshots at a
laptop's and a phone's width land in the test's tmp dir (the paths are printed).
"""

from __future__ import annotations

import json
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from browser import Browser, chromium_path
from conftest import require_service
from flask import Flask, Response
from werkzeug.serving import make_server

from webhook_kit import InboundMessage, WebhookKit
from webhook_kit.emulator import Emulator

NUMBER = "+15017122661"
HANDSET = "+15558675309"
FRIEND = "+447700900123"
HOSTILE = '<script>document.title="pwned"</script><img src=x onerror="window.pwned=1">'


def picture() -> bytes:
    """A 96x96 PNG (a warm gradient), made here so the page has a thumbnail to show."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((240, 120 + x, 60 + y)) for x in range(96)) for y in range(96)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 96, 96, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def bot(emulator: Emulator) -> Flask:
    kit = WebhookKit()

    @kit.on_message()
    def echo(message: InboundMessage) -> str:
        return f"Echo: {message.body}" if message.body else "Nice picture!"

    app = Flask("inspector_bot")
    app.config.update(
        WEBHOOK_KIT_AUTH_TOKEN=emulator.auth_token,
        WEBHOOK_KIT_ACCOUNT_SID=emulator.account_sid,
        WEBHOOK_KIT_STORE="memory://",
        WEBHOOK_KIT_LEDGER_PAGE=True,
    )
    kit.init_app(app)
    image = picture()
    app.add_url_rule("/media/sunset.png", "media", lambda: Response(image, mimetype="image/png"))
    return app


@pytest.fixture
def browser() -> Iterator[Browser]:
    path = chromium_path()
    require_service(path is not None, "no chromium on PATH (apt-get install chromium)")
    assert path is not None
    with Browser(path) as running:
        yield running


@pytest.fixture
def world() -> Iterator[tuple[Emulator, str]]:
    """The emulator (manual clock) and the app's base URL, both on loopback ports."""
    with Emulator(clock="manual") as emulator:
        server = make_server("127.0.0.1", 0, bot(emulator), threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{server.server_port}"
        emulator.add_number(
            NUMBER, sms_url=f"{base}/twilio/messages", status_callback=f"{base}/twilio/status"
        )
        emulator.ledger_url = f"{base}/twilio/ledger"
        try:
            yield emulator, base
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def fill(browser: Browser, selector: str, value: str) -> None:
    browser.evaluate(f"document.querySelector({json.dumps(selector)}).value = {json.dumps(value)}")


def click(browser: Browser, selector: str) -> None:
    browser.evaluate(f"document.querySelector({json.dumps(selector)}).click()")


def bubble(handset: str, body: str) -> str:
    """A JS expression: the bubble in ``handset``'s phone whose body is exactly ``body``."""
    return (
        f"[...document.querySelectorAll('.phone[data-handset=\"{handset}\"] .bubble')]"
        f".find(b => b.querySelector('.body') && b.querySelector('.body').textContent === "
        f"{json.dumps(body)})"
    )


def test_drive_the_emulator_from_the_page(
    browser: Browser, world: tuple[Emulator, str], tmp_path: Path
) -> None:
    emulator, app = world
    browser.goto(emulator.url + "/")
    browser.wait_for(
        f"document.querySelector('#text-form select').value === {json.dumps(NUMBER)}",
        "the number in the text form",
    )
    assert browser.evaluate("document.querySelector('#numbers').textContent").count(NUMBER) == 1

    # a handset texts the app from the page: typed, then sent with the form's button
    fill(browser, "#text-form [name=From]", HANDSET)
    browser.evaluate("document.querySelector('#text-form [name=Body]').focus()")
    browser.type_text("hello bot")
    click(browser, "#text-form button[type=submit]")
    browser.wait_for(bubble(HANDSET, "Echo: hello bot"), "the reply bubble")
    reply = browser.evaluate(bubble(HANDSET, "Echo: hello bot") + ".dataset.sid")
    assert browser.evaluate(bubble(HANDSET, "Echo: hello bot") + ".dataset.direction") == (
        "outbound-reply"
    )
    assert browser.evaluate(bubble(HANDSET, "hello bot") + ".dataset.direction") == "inbound"

    # the manual clock moves from the page; the reply's timeline reaches delivered
    fill(browser, "#advance-seconds", "5")
    click(browser, "#advance-form button")
    browser.wait_for(
        bubble(HANDSET, "Echo: hello bot") + ".querySelector('[data-status=delivered]')",
        "the reply to be delivered",
    )
    browser.evaluate(bubble(HANDSET, "Echo: hello bot") + ".click()")
    steps = browser.wait_for(
        "[...document.querySelectorAll('#timeline li')].map(li => li.dataset.status)"
        ".filter(() => document.querySelector('#timeline li[data-status=delivered]'))",
        "the timeline in the details",
    )
    assert steps == ["queued", "sending", "sent", "delivered"]
    hooks = browser.wait_for(
        "(h => h.length === 3 && [...h].map(w => w.textContent))"
        "(document.querySelectorAll('#detail .webhook'))",
        "the three status callbacks",
    )
    assert [hook.split(" · ")[1].split("http")[0] for hook in hooks] == [
        "sending",
        "sent",
        "delivered",
    ]
    assert all("statusHTTP 200" in hook and "X-Twilio-Signature" in hook for hook in hooks)

    # the REST JSON is one click away, and is what the REST API answers
    click(browser, "#show-json")
    shown = browser.wait_for(
        "!document.querySelector('#json').hidden && document.querySelector('#json').textContent",
        "the message's JSON",
    )
    rest = requests.get(
        f"{emulator.url}/2010-04-01/Accounts/{emulator.account_sid}/Messages/{reply}.json",
        auth=(emulator.account_sid, emulator.auth_token),
        timeout=10,
    )
    assert json.loads(shown) == rest.json() and rest.json()["status"] == "delivered"

    # chaos from the page: every final callback dropped; the next reply is marked
    fill(browser, "#chaos-form [name=DropFinal]", "1")
    fill(browser, "#chaos-form [name=Reorder]", "0")
    fill(browser, "#chaos-form [name=Duplicate]", "0")
    click(browser, "#chaos-form button")
    browser.wait_for(
        "document.querySelector('#chaos-state').textContent.startsWith('On')", "chaos to be on"
    )
    phone = f'.phone[data-handset="{HANDSET}"]'
    fill(browser, f"{phone} .compose [name=Body]", "second")
    click(browser, f"{phone} .compose button[type=submit]")
    browser.wait_for(bubble(HANDSET, "Echo: second"), "the second reply")
    click(browser, "#advance-form button")
    browser.wait_for(
        bubble(HANDSET, "Echo: second") + ".querySelector('[data-mark=dropped]')",
        "the dropped callback's mark on the bubble",
    )
    browser.evaluate(bubble(HANDSET, "Echo: second") + ".click()")
    browser.wait_for(
        "document.querySelector('#detail .webhook[data-dropped=true]')",
        "the dropped webhook in the details",
    )
    assert emulator.dropped_callbacks == 1
    browser.evaluate("document.querySelector('#chaos-on').click()")
    browser.wait_for(
        "document.querySelector('#chaos-state').textContent.startsWith('Off')", "chaos to be off"
    )
    assert emulator.chaos is None

    # a failure rule for the handset, set from the page: its next reply ends undelivered
    fill(browser, "#rule-form [name=To]", HANDSET)
    fill(browser, "#rule-form [name=ErrorCode]", "30003")
    click(browser, "#rule-form button")
    browser.wait_for("document.querySelector('#rules').textContent.includes('30003')", "the rule")
    fill(browser, f"{phone} .compose [name=Body]", "third")
    click(browser, f"{phone} .compose button[type=submit]")
    browser.wait_for(bubble(HANDSET, "Echo: third"), "the third reply")
    click(browser, "#advance-form button")
    browser.wait_for(
        bubble(HANDSET, "Echo: third") + ".querySelector('[data-status=undelivered]')",
        "the third reply to end undelivered",
    )
    browser.evaluate(bubble(HANDSET, "Echo: third") + ".click()")
    error = browser.wait_for(
        "document.querySelector('#timeline li[data-status=undelivered] .error')?.textContent",
        "the error in the timeline",
    )
    assert error == "Error 30003: Unreachable destination handset"

    # a hostile body, from a second handset with a picture: text, never markup
    fill(browser, "#text-form [name=From]", FRIEND)
    fill(browser, "#text-form [name=Body]", HOSTILE)
    fill(browser, "#text-form [name=MediaUrl]", f"{app}/media/sunset.png")
    click(browser, "#text-form button[type=submit]")
    browser.wait_for(bubble(FRIEND, "Echo: " + HOSTILE), "the hostile reply")
    assert browser.evaluate(bubble(FRIEND, HOSTILE) + ".querySelector('.body').textContent") == (
        HOSTILE
    )
    assert browser.evaluate("document.querySelectorAll('#phones-grid script').length") == 0
    assert browser.evaluate(bubble(FRIEND, HOSTILE) + ".querySelectorAll('img').length") == 1
    assert browser.evaluate("document.title") == "Twilio emulator · webhook_kit"
    assert browser.evaluate("window.pwned === undefined")
    browser.wait_for(
        bubble(FRIEND, HOSTILE) + ".querySelector('img.thumb').naturalWidth === 96",
        "the media thumbnail",
    )
    click(browser, "#advance-form button")
    browser.wait_for(
        bubble(FRIEND, "Echo: " + HOSTILE) + ".querySelector('[data-status=delivered]')",
        "the hostile reply to be delivered",
    )

    # STOP from a phone's own buttons: the handset shows as opted out
    click(browser, f'.phone[data-handset="{FRIEND}"] .compose button.quiet')
    browser.wait_for(
        f"document.querySelector('.phone[data-handset=\"{FRIEND}\"] .optout').textContent"
        ".includes('Opted out')",
        "the opt-out",
    )

    # keyboard: focus a bubble and press Enter to open its details
    browser.evaluate(bubble(HANDSET, "hello bot") + ".focus()")
    browser.press("Enter", "Enter", 13, "\r")
    browser.wait_for(
        "document.querySelector('#detail h2').textContent === 'Message from a handset'",
        "Enter to open the details",
    )
    browser.press("Tab", "Tab", 9)
    assert browser.evaluate("document.activeElement.classList.contains('bubble')")

    # the filter keeps one handset
    browser.evaluate(
        f"(s => {{ s.value = {json.dumps(FRIEND)}; s.dispatchEvent(new Event('change')); }})"
        "(document.querySelector('#filter'))"
    )
    browser.wait_for(
        "document.querySelectorAll('.phone').length === 1", "the filter to keep one handset"
    )
    browser.evaluate(
        "(s => { s.value = ''; s.dispatchEvent(new Event('change')); })"
        "(document.querySelector('#filter'))"
    )
    browser.wait_for("document.querySelectorAll('.phone').length === 2", "both handsets")

    # the reply selected, for the picture: laptop width, then phone width
    browser.evaluate(bubble(HANDSET, "Echo: second") + ".click()")
    browser.wait_for("document.querySelector('#detail .webhook')", "the details")
    in_ledger = browser.evaluate(
        "[...document.querySelectorAll('#detail a')].find(a => a.textContent.includes('ledger'))"
        ".href"
    )
    laptop = browser.screenshot(tmp_path / "inspector.png")
    print(f"inspector screenshot (laptop): {laptop}")
    browser.viewport(390, 844, mobile=True)
    browser.wait_for("window.innerWidth === 390", "the phone width")
    assert browser.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    phone_shot = browser.screenshot(tmp_path / "inspector-phone.png")
    print(f"inspector screenshot (phone): {phone_shot}")
    assert laptop.stat().st_size > 10_000 and phone_shot.stat().st_size > 10_000

    # the ledger's view of the same messages is one link away
    ledger = browser.evaluate("document.querySelector('#ledger-link').href")
    assert ledger == f"{app}/twilio/ledger"
    browser.goto(f"{ledger}/{reply}")
    browser.wait_for(
        "document.querySelectorAll('tr[data-status]').length === 3", "the ledger's callbacks"
    )
    browser.goto(ledger)
    rows = browser.evaluate(
        "[...document.querySelectorAll('tr[data-sid]')].map(r => r.textContent)"
    )
    assert any(HOSTILE in row for row in rows)
    assert browser.evaluate("document.querySelectorAll('tbody script, tbody img').length") == 0
    # the reply whose final callback chaos dropped: the ledger never heard it was delivered
    browser.goto(in_ledger)
    statuses = browser.wait_for(
        "[...document.querySelectorAll('tr[data-status]')].map(r => r.dataset.status)",
        "the dropped reply in the ledger",
    )
    assert statuses == ["sending", "sent"]

    # reset from the page forgets everything
    browser.goto(emulator.url + "/")
    browser.wait_for("document.querySelectorAll('.phone').length === 2", "the handsets again")
    browser.evaluate("window.confirm = () => true")
    click(browser, "#reset")
    browser.wait_for("!document.querySelector('#empty').hidden", "the reset")
    assert emulator.messages() == [] and emulator.rules == []
    assert browser.problems == []


def test_real_clock_updates_arrive_without_a_reload(browser: Browser) -> None:
    with Emulator() as emulator:  # the real clock: statuses move by themselves
        emulator.mount("http://bot.test", bot(emulator))
        emulator.add_number(
            NUMBER,
            sms_url="http://bot.test/twilio/messages",
            status_callback="http://bot.test/twilio/status",
        )
        browser.goto(emulator.url + "/")
        browser.wait_for(
            "document.querySelector('#empty') && !document.querySelector('#empty').hidden",
            "the empty page",
        )
        assert browser.evaluate("document.querySelector('#advance-form').hidden")
        browser.press("Tab", "Tab", 9)  # the first stop skips to the conversations
        assert browser.evaluate("document.activeElement.textContent") == "Skip to conversations"
        browser.press("Enter", "Enter", 13, "\r")
        browser.wait_for("document.activeElement.id === 'phones'", "the skip link to work")
        browser.evaluate("window.sameDocument = true")
        emulator.handset(HANDSET).send(NUMBER, "from a script")  # not from the page
        browser.wait_for(
            bubble(HANDSET, "Echo: from a script") + "?.querySelector('[data-status=delivered]')",
            "the reply, delivered, without a reload",
        )
        assert browser.evaluate("window.sameDocument") is True
    assert browser.problems == []
