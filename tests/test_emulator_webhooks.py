"""The emulator's life cycle and webhooks: signed status callbacks, rules, chaos, retries,
and handsets whose messages reach an app and get TwiML replies."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
import requests
from click.testing import CliRunner
from emulator_support import UNTHROTTLED, Receiver
from twilio.base.exceptions import TwilioRestException

from webhook_kit.cli import main
from webhook_kit.emulator import Chaos, Emulator, EmulatorError, Timing
from webhook_kit.emulator.core import MAX_REDIRECTS
from webhook_kit.signature import Verifier
from webhook_kit.standalone import create_app, load_kit
from webhook_kit.status import MessageStatus

FROM = "+15017122661"
TO = "+15558675310"


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A new emulator per test: these tests change its timing, which reset() keeps."""
    with Emulator(clock="manual", throughput=UNTHROTTLED) as running:
        yield running


def statuses(app: Receiver, path: str = "/status") -> list[str]:
    return [form["MessageStatus"] for form in app.forms(path)]


def test_callbacks_follow_the_life_cycle_signed(app: Receiver, emulator: Emulator) -> None:
    url = f"{app.base}/status?c=token"
    sid = emulator.client().messages.create(to=TO, from_=FROM, body="hi", status_callback=url).sid
    assert app.posts == []  # no callback for the initial status
    emulator.advance(1)
    assert statuses(app) == ["sending", "sent", "delivered"]
    verifier = Verifier([emulator.auth_token])
    for path, headers, form in app.posts:
        assert path == "/status?c=token"
        assert verifier.verify(url, form, headers["X-Twilio-Signature"])
        assert headers["User-Agent"] == "TwilioProxy/1.1" and headers["I-Twilio-Idempotency-Token"]
    delivered = app.forms("/status")[-1]
    assert delivered["MessageSid"] == delivered["SmsSid"] == sid
    assert delivered["SmsStatus"] == "delivered" and len(delivered["RawDlrDoneDate"]) == 10
    assert {"AccountSid", "From", "To", "ApiVersion"} <= set(delivered)
    assert "ErrorCode" not in delivered


def test_whatsapp_is_read_after_delivery(app: Receiver, emulator: Emulator) -> None:
    emulator.add_number("whatsapp:" + FROM, sms_url=app.base + "/in")
    emulator.handset("whatsapp:" + TO).send("whatsapp:" + FROM, "hello")  # opens the window
    emulator.client().messages.create(
        to="whatsapp:" + TO, from_="whatsapp:" + FROM, body="hi", status_callback=app.base + "/s"
    )
    emulator.advance(1)
    forms = app.forms("/s")
    assert [f["MessageStatus"] for f in forms] == ["sending", "sent", "delivered", "read"]
    assert forms[-1]["EventType"] == "READ" and forms[-1]["ChannelPrefix"] == "whatsapp"
    assert "RawDlrDoneDate" not in forms[2]


def test_failure_rules(app: Receiver, emulator: Emulator) -> None:
    emulator.add_rule("undelivered", 30003, to="+15550000001")
    emulator.add_rule("failed", 30007, body=r"(?i)spam")
    client = emulator.client()
    callback = app.base + "/status"
    a = client.messages.create(to="+15550000001", from_=FROM, body="x", status_callback=callback)
    b = client.messages.create(to=TO, from_=FROM, body="Buy SPAM", status_callback=callback)
    c = client.messages.create(to=TO, from_=FROM, body="fine", status_callback=callback)
    emulator.advance(1)
    assert (client.messages(a.sid).fetch().status, client.messages(a.sid).fetch().error_code) == (
        "undelivered",
        30003,
    )
    failed = client.messages(b.sid).fetch()
    assert failed.status == "failed" and failed.error_code == 30007 and failed.error_message
    assert client.messages(c.sid).fetch().status == "delivered"
    by_sid = {f["MessageSid"]: f for f in app.forms("/status") if "ErrorCode" in f}
    assert by_sid[a.sid]["ErrorCode"] == "30003" and by_sid[b.sid]["MessageStatus"] == "failed"
    with pytest.raises(EmulatorError):
        emulator.add_rule("failed")  # no error code


def test_probability_rules_are_seeded() -> None:
    def outcomes() -> list[str]:
        with Emulator(clock="manual", throughput=UNTHROTTLED, seed=7) as emulator:
            emulator.add_rule("undelivered", 30005, probability=0.3)
            client = emulator.client()
            sids = [client.messages.create(to=TO, from_=FROM, body="x").sid for _ in range(30)]
            emulator.advance(1)
            return [client.messages(sid).fetch().status for sid in sids]

    first = outcomes()
    assert first == outcomes() and 0 < first.count("undelivered") < 30


def test_validity_period_and_max_price(app: Receiver, emulator: Emulator) -> None:
    emulator.timing = Timing(queue=20)
    client = emulator.client()
    expiring = client.messages.create(to=TO, from_=FROM, body="x", validity_period=10)
    pricey = client.messages.create(to=TO, from_=FROM, body="x" * 400, max_price=0.01)
    emulator.advance(30)
    assert client.messages(expiring.sid).fetch().error_code == 30036
    capped = client.messages(pricey.sid).fetch()
    assert (capped.status, capped.error_code) == ("failed", 30010)


def test_retries_follow_connection_overrides(app: Receiver, emulator: Emulator) -> None:
    client = emulator.client()
    app.answer("/broken", "oops", status=500)
    closed = "http://127.0.0.1:9/status"  # nothing listens on the discard port
    client.messages.create(to=TO, from_=FROM, body="a", status_callback=closed + "#rc=3&ct=200")
    client.messages.create(to=TO, from_=FROM, body="b", status_callback=app.base + "/broken")
    client.messages.create(
        to=TO, from_=FROM, body="c", status_callback=app.base + "/broken#rc=2&rp=5xx"
    )
    emulator.advance(1)
    attempts = Counter()
    for delivery in emulator.deliveries:
        attempts[delivery.url.rsplit("/", 1)[-1], delivery.attempts] += 1
    assert attempts == {("status", 4): 3, ("broken", 1): 3, ("broken", 3): 3}
    refused = [d for d in emulator.deliveries if d.url == closed]
    assert all(d.failure == "ct" and d.response is None for d in refused)
    # 1 + 2 retries for each of the three "c" callbacks, 1 for each "b" callback
    assert len(app.forms("/broken")) == 3 * 3 + 3


def test_chaos_reorders_duplicates_and_drops(app: Receiver) -> None:
    chaos = Chaos(seed=3, reorder=0.8, jitter=0.5, duplicate=0.4, late=0.1, drop_final=0.3)
    with Emulator(
        clock="manual", throughput=UNTHROTTLED, chaos=chaos, timing=Timing(queue=0.01, send=0.01)
    ) as emulator:
        client = emulator.client()
        sids = [
            client.messages.create(
                to=TO, from_=FROM, body=str(i), status_callback=app.base + "/s"
            ).sid
            for i in range(40)
        ]
        emulator.advance(10)
        assert emulator.idle()
        forms = app.forms("/s")
        seen = Counter((f["MessageSid"], f["MessageStatus"]) for f in forms)
        assert any(count > 1 for count in seen.values()), "no duplicate"
        ranks = {}
        out_of_order = 0
        for form in forms:
            rank = MessageStatus(form["MessageStatus"]).rank
            out_of_order += rank < ranks.get(form["MessageSid"], -1)
            ranks[form["MessageSid"]] = max(rank, ranks.get(form["MessageSid"], -1))
        assert out_of_order > 0
        finals = {sid for sid, status in seen if status == "delivered"}
        assert emulator.dropped_callbacks == len(sids) - len(finals) > 0
        # the resource tells the truth even when its final callback was dropped
        assert {client.messages(sid).fetch().status for sid in sids} == {"delivered"}


def test_chaos_is_repeatable(app: Receiver) -> None:
    def order() -> list[tuple[str, str]]:
        with Emulator(
            clock="manual",
            throughput=UNTHROTTLED,
            chaos=Chaos(seed=11),
            account_sid="AC" + "e" * 32,
        ) as em:
            client = em.client()
            bodies = {}
            for i in range(10):
                sid = client.messages.create(
                    to=TO, from_=FROM, body=str(i), status_callback=app.base + "/r"
                ).sid
                bodies[sid] = str(i)
            em.advance(10)
            return [(bodies[d.form["MessageSid"]], d.form["MessageStatus"]) for d in em.deliveries]

    assert order() == order()


def test_real_clock_delivers_in_the_background(app: Receiver) -> None:
    with Emulator(speed=50, throughput=UNTHROTTLED) as emulator:
        sid = (
            emulator.client()
            .messages.create(to=TO, from_=FROM, body="x", status_callback=app.base + "/s")
            .sid
        )
        for _ in range(200):
            if len(app.forms("/s")) == 3:
                break
            time.sleep(0.02)
        # sped up 50 times, the three callbacks race each other: any order is Twilio's too
        assert sorted(statuses(app, "/s")) == ["delivered", "sending", "sent"]
        assert emulator.message(sid).status == "delivered"  # type: ignore[union-attr]
        with pytest.raises(EmulatorError):
            emulator.advance(1)


# -- inbound ------------------------------------------------------------------------------

NUMBER = "+15017250604"
HANDSET = "+15558675309"


def test_handset_message_reaches_the_app_and_gets_replies(
    app: Receiver, emulator: Emulator
) -> None:
    emulator.add_number(NUMBER, sms_url=app.base + "/sms", status_callback=app.base + "/status")
    app.answer(
        "/sms",
        '<?xml version="1.0"?><Response><Message>First</Message>'
        '<Message statusCallback="/relative">Second<Media>https://e.com/a.png</Media>'
        "</Message></Response>",
    )
    exchange = emulator.handset(HANDSET).send(NUMBER, "HELP", media=["https://e.com/in.jpg"])
    [(_, headers, form)] = app.posts
    params = dict(form)
    assert params["Body"] == "HELP" and params["From"] == HANDSET and params["To"] == NUMBER
    assert params["MessageSid"] == exchange.inbound.sid and exchange.inbound.sid.startswith("MM")
    [media] = emulator.state.media(exchange.inbound.sid)
    assert params["NumMedia"] == "1" and media.url == "https://e.com/in.jpg"
    assert params["MediaUrl0"] == emulator.media_url(exchange.inbound.sid, media.sid)
    assert params["MediaUrl0"].startswith(emulator.url + "/2010-04-01/")
    assert params["MediaContentType0"] == "image/jpeg" and params["SmsStatus"] == "received"
    assert {"FromCountry", "ToCountry", "NumSegments", "SmsSid", "AccountSid"} <= set(params)
    assert Verifier([emulator.auth_token]).verify(
        app.base + "/sms", form, headers["X-Twilio-Signature"]
    )
    assert [r.body for r in exchange.replies] == ["First", "Second"]
    assert {r.direction for r in exchange.replies} == {"outbound-reply"}
    emulator.advance(1)
    conversation = emulator.handset(HANDSET).conversation()
    assert [(m.direction, m.body, m.status) for m in conversation] == [
        ("inbound", "HELP", "received"),
        ("outbound-reply", "First", "delivered"),
        ("outbound-reply", "Second", "delivered"),
    ]
    assert [m.body for m in emulator.handset(HANDSET).received()] == ["First", "Second"]
    assert statuses(app) == ["sending", "sent", "delivered"]  # the number's callback URL
    assert statuses(app, "/relative") == ["sending", "sent", "delivered"]  # the attribute's


def test_fallback_and_redirect(app: Receiver, emulator: Emulator) -> None:
    emulator.add_number(NUMBER, sms_url=app.base + "/down", fallback_url=app.base + "/fallback")
    app.answer("/down", "error", status=503)
    app.answer("/fallback", "<Response><Redirect>/next</Redirect></Response>")
    app.answer("/next", "Plain text reply", kind="text/plain")
    exchange = emulator.handset(HANDSET).send(NUMBER, "hi")
    fallback = app.forms("/fallback")[0]
    assert fallback["ErrorCode"] == "11200" and fallback["ErrorUrl"] == app.base + "/down"
    assert app.forms("/next")[0]["Body"] == "hi"
    assert [r.body for r in exchange.replies] == ["Plain text reply"]
    assert [d.kind for d in exchange.deliveries] == ["inbound", "fallback", "redirect"]


def test_unconfigured_number_and_bad_handset(emulator: Emulator) -> None:
    with pytest.raises(EmulatorError, match="add_number"):
        emulator.handset(HANDSET).send(NUMBER, "hi")
    with pytest.raises(EmulatorError):
        emulator.handset("not a number")


def test_control_api_and_cli(app: Receiver, emulator: Emulator) -> None:
    auth = (emulator.account_sid, emulator.auth_token)
    control = f"{emulator.url}/_emulator"
    app.answer("/sms", "<Response><Message>pong</Message></Response>")
    credentials = ["--url", emulator.url, "--account-sid", auth[0], "--auth-token", auth[1]]
    service = "MG" + "2" * 32
    added = CliRunner().invoke(
        main,
        [
            "emulator",
            "number",
            NUMBER,
            "--sms-url",
            app.base + "/sms",
            *credentials,
            "--messaging-service-sid",
            service,
        ],
    )
    assert added.output == f"{NUMBER}: incoming messages go to {app.base}/sms\n"
    refused = CliRunner().invoke(main, ["emulator", "number", "555", *credentials])
    assert refused.exit_code == 1 and "not an E.164 number" in refused.output
    sent = requests.post(
        f"{control}/send", data={"From": HANDSET, "To": NUMBER, "Body": "ping"}, auth=auth
    ).json()
    assert [r["body"] for r in sent["replies"]] == ["pong"]
    assert app.forms("/sms")[0]["MessagingServiceSid"] == service
    result = CliRunner().invoke(main, ["emulator", "advance", "2", *credentials])
    assert result.exit_code == 0 and result.output == "ran 3 task(s)\n"
    conversation = requests.get(
        f"{control}/conversation", params={"Address": HANDSET}, auth=auth
    ).json()["messages"]
    assert [(m["body"], m["status"]) for m in conversation] == [
        ("ping", "received"),
        ("pong", "delivered"),
    ]
    rule = requests.post(
        f"{control}/rules", data={"Status": "failed", "ErrorCode": "30008"}, auth=auth
    )
    assert rule.json() == {"rules": 1}
    assert requests.get(f"{control}/requests", auth=auth).json() == {"requests": []}
    [inbound] = requests.get(f"{control}/deliveries", auth=auth).json()["deliveries"]
    assert inbound["kind"] == "inbound" and inbound["status"] == 200
    assert inbound["params"]["Body"] == "ping" and inbound["url"] == app.base + "/sms"
    unauthorised = requests.post(f"{control}/reset", auth=(auth[0], "wrong"))
    assert unauthorised.status_code == 401 and unauthorised.json()["code"] == 20003
    assert requests.post(f"{control}/reset", auth=auth).status_code == 204
    assert emulator.messages() == [] and emulator.rules == []
    bad = requests.post(f"{control}/advance", data={"Seconds": "soon"}, auth=auth)
    assert bad.status_code == 400 and "Seconds" in bad.json()["message"]


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf"), 1e308])
def test_advance_only_forward_and_at_most_a_century(emulator: Emulator, seconds: float) -> None:
    with pytest.raises(EmulatorError, match="seconds must be from 0"):
        emulator.advance(seconds)
    assert emulator.advance(1) == 0  # the clock is unharmed


def test_misuse_is_an_emulator_error(emulator: Emulator) -> None:
    with pytest.raises(EmulatorError, match="speed"):
        Emulator(speed=0)
    with pytest.raises(EmulatorError, match="pattern"):
        emulator.add_rule("failed", 30008, body="(")
    with pytest.raises(EmulatorError, match="probability"):
        emulator.add_rule("failed", 30008, probability=2)
    with pytest.raises(EmulatorError, match="status must be"):
        emulator.add_rule("lost", 30008)
    with pytest.raises(EmulatorError, match="URL"):
        emulator.add_number(NUMBER, sms_url="ftp://x")


@pytest.mark.parametrize(
    ("primary", "code"),
    [
        (("<Response><Message>unclosed", 200, "text/xml"), "12100"),
        (("", 404, "text/html"), "11200"),
        (None, "11205"),  # nothing listens: connection refused
    ],
)
def test_fallback_error_codes(
    app: Receiver, emulator: Emulator, primary: tuple[str, int, str] | None, code: str
) -> None:
    sms_url = app.base + "/primary" if primary else "http://127.0.0.1:9/sms"
    if primary:
        app.answer("/primary", primary[0], status=primary[1], kind=primary[2])
    app.answer("/fallback", "<Response><Message>sorry</Message></Response>")
    emulator.add_number(NUMBER, sms_url=sms_url, fallback_url=app.base + "/fallback")
    exchange = emulator.handset(HANDSET).send(NUMBER, "hi")
    assert app.forms("/fallback")[0]["ErrorCode"] == code
    assert [r.body for r in exchange.replies] == ["sorry"]


def test_redirect_loops_stop(app: Receiver, emulator: Emulator) -> None:
    app.answer("/loop", "<Response><Message>again</Message><Redirect>/loop</Redirect></Response>")
    emulator.add_number(NUMBER, sms_url=app.base + "/loop")
    exchange = emulator.handset(HANDSET).send(NUMBER, "hi")
    assert len(app.forms("/loop")) == 1 + MAX_REDIRECTS
    assert len(exchange.replies) == 1 + MAX_REDIRECTS


def test_base_url_way_of_pointing_the_client(emulator: Emulator) -> None:
    from twilio.rest import Client

    client = Client(emulator.account_sid, emulator.auth_token)
    client.api.base_url = emulator.url
    for index in range(3):
        client.messages.create(to=TO, from_=FROM, body=str(index))
    assert [m.body for m in client.messages.list(page_size=1)] == ["2", "1", "0"]


def test_stop_opts_the_handset_out_until_start(app: Receiver, emulator: Emulator) -> None:
    app.answer("/sms", "<Response><Message>bye</Message></Response>")
    emulator.add_number(NUMBER, sms_url=app.base + "/sms")
    handset = emulator.handset(HANDSET)
    stopped = handset.send(NUMBER, " stop ")
    assert app.forms("/sms")[0]["Body"] == " stop "  # the app still hears about it
    assert stopped.replies == ()  # and its reply is not sent to an opted-out handset
    client = emulator.client()
    with pytest.raises(TwilioRestException) as blocked:
        client.messages.create(to=HANDSET, from_=NUMBER, body="x")
    assert blocked.value.code == 21610
    assert client.messages.create(to=HANDSET, from_=FROM, body="other sender").status == "queued"
    other = emulator.handset("+15558675300")
    assert len(other.send(NUMBER, "STOP please").replies) == 1  # only single words count
    handset.send(NUMBER, "start")
    assert client.messages.create(to=HANDSET, from_=NUMBER, body="welcome back").status == "queued"


def test_a_mounted_app_tracks_its_own_sends(emulator: Emulator) -> None:
    """kit.send's status callback URL carries its signed correlation token in the query
    string; the mounted app checks each callback's signature over it, as a served app does."""
    bot = create_app(
        {"WEBHOOK_KIT_HANDLERS": "examples.echo_bot"},
        config={
            "WEBHOOK_KIT_AUTH_TOKEN": emulator.auth_token,
            "WEBHOOK_KIT_ACCOUNT_SID": emulator.account_sid,
            "WEBHOOK_KIT_TWILIO_BASE_URL": emulator.url,
            "WEBHOOK_KIT_PUBLIC_URL": "http://bot.test",
            "WEBHOOK_KIT_STORE": "memory://",
        },
    )
    emulator.mount("http://bot.test", bot)
    kit = load_kit("examples.echo_bot")
    with bot.app_context():
        sent = kit.send(TO, "on its way", from_=FROM)
    emulator.advance(5)
    callbacks = [d for d in emulator.deliveries if d.kind == "status"]
    assert callbacks and all("/twilio/status?" in d.url for d in callbacks)
    assert {d.response.status for d in callbacks if d.response} == {200}
    with bot.app_context():
        record = kit.ledger.get(sent.sid)
    assert record is not None and record.status is MessageStatus.DELIVERED
    assert [event.status for event in record.history][-1] is MessageStatus.DELIVERED


def test_a_mounted_app_gets_webhooks_in_process(emulator: Emulator) -> None:
    bot = create_app(
        {"WEBHOOK_KIT_HANDLERS": "examples.keyword_router"},
        config={"WEBHOOK_KIT_AUTH_TOKEN": emulator.auth_token, "WEBHOOK_KIT_STORE": "memory://"},
    )
    emulator.mount("http://bot.test", bot)
    emulator.add_number(
        NUMBER,
        sms_url="http://bot.test/twilio/messages",
        status_callback="http://bot.test/twilio/status",
    )
    exchange = emulator.handset(HANDSET).send(NUMBER, "help")
    assert [r.body for r in exchange.replies] == [
        "Reply JOIN <name> to subscribe, or send a photo."
    ]
    emulator.advance(1)
    [reply] = exchange.replies
    with bot.app_context():
        assert load_kit("examples.keyword_router").ledger.status(reply.sid) == "delivered"
    assert {d.response.status for d in emulator.deliveries if d.response} == {200}
    with pytest.raises(EmulatorError, match="base URL"):
        emulator.mount("bot.test", bot)
