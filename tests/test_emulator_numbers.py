"""IncomingPhoneNumbers, paging rules, Feedback and media bytes, through the official client.

Everything goes over real HTTP to an emulator on loopback ports: the twilio-python client
provisions and configures numbers, hits each paging error, gives feedback and reads media
bytes through the 307 to the media host; a handset's message then reaches the URL the
client configured.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from emulator_support import Receiver, RecordingHttpClient, bot_app, error_of
from flask import Flask
from twilio.base.exceptions import TwilioException
from twilio.rest import Client

from webhook_kit import InboundMedia, WebhookKit
from webhook_kit.emulator import Attachment, Emulator
from webhook_kit.emulator.http.domains import DOMAINS, domain_of
from webhook_kit.errors import SendError
from webhook_kit.events import parse_status

HANDSET = "+15558675310"
PICTURE = b"\x89PNG\r\n\x1a\n" + b"pixels" * 1000


# -- IncomingPhoneNumbers ---------------------------------------------------------------


def test_provision_configure_and_receive(client: Client, emulator: Emulator, app: Receiver) -> None:
    number = client.incoming_phone_numbers.create(
        phone_number="+15017122661", sms_url=app.base + "/sms", friendly_name="Support"
    )
    assert number.sid.startswith("PN") and number.phone_number == "+15017122661"
    assert number.sms_url == app.base + "/sms" and number.sms_method == "POST"
    assert number.friendly_name == "Support" and number.capabilities["sms"] is True
    assert number.date_created is not None and number.status_callback == ""
    emulator.handset(HANDSET).send("+15017122661", "hello")
    assert [f["Body"] for f in app.forms("/sms")] == ["hello"]

    updated = client.incoming_phone_numbers(number.sid).update(
        sms_url=app.base + "/other", status_callback=app.base + "/status"
    )
    assert updated.sms_url == app.base + "/other" and updated.friendly_name == "Support"
    app.answer("/other", "<Response><Message>Hi back</Message></Response>")
    exchange = emulator.handset(HANDSET).send("+15017122661", "again")
    assert [f["Body"] for f in app.forms("/other")] == ["again"]
    emulator.advance(5)
    statuses = [f["MessageStatus"] for f in app.forms("/status")]
    assert exchange.replies and statuses[-1] == "delivered"  # the number's status_callback

    fetched = client.incoming_phone_numbers(number.sid).fetch()
    assert fetched.sms_url == app.base + "/other" and fetched.status_callback.endswith("/status")
    cleared = client.incoming_phone_numbers(number.sid).update(status_callback="")
    assert cleared.status_callback == "" and emulator.state.number("+15017122661") is not None

    client.incoming_phone_numbers(number.sid).delete()
    assert error_of(client.incoming_phone_numbers(number.sid).fetch).status == 404
    assert client.incoming_phone_numbers.list() == []


def test_sms_method_get_sends_the_parameters_in_the_query(
    client: Client, emulator: Emulator, app: Receiver
) -> None:
    number = client.incoming_phone_numbers.create(
        phone_number="+15017122661", sms_url=app.base + "/get?x=1", sms_method="GET"
    )
    assert number.sms_method == "GET"
    emulator.handset(HANDSET).send("+15017122661", "by GET")
    [(method, path, _, form)] = [(m, p, h, f) for m, p, h, f in app.requests if "/get" in p]
    assert method == "GET" and form == []
    assert "x=1" in path and "Body=by+GET" in path


def test_add_number_is_the_same_resource(client: Client, emulator: Emulator) -> None:
    entry = emulator.add_number("+15017122661", sms_url="https://bot.test/sms")
    [listed] = client.incoming_phone_numbers.list()
    assert listed.sid == entry.sid and listed.sms_url == "https://bot.test/sms"
    assert listed.friendly_name == "(501) 712-2661"
    again = emulator.add_number("+15017122661", sms_url="https://bot.test/v2")
    assert again.sid == entry.sid  # reconfigured, not a second number
    emulator.add_number("whatsapp:+15017122661", sms_url="https://bot.test/wa")
    assert len(client.incoming_phone_numbers.list()) == 1  # a channel address is not listed


def test_list_filters_and_area_code(client: Client, emulator: Emulator) -> None:
    client.incoming_phone_numbers.create(phone_number="+15017122661", friendly_name="A")
    client.incoming_phone_numbers.create(phone_number="+14155550123", friendly_name="B")
    picked = client.incoming_phone_numbers.create(area_code="628")
    assert picked.phone_number.startswith("+1628")
    by_number = client.incoming_phone_numbers.list(phone_number="7122661")
    assert [n.phone_number for n in by_number] == ["+15017122661"]
    wildcard = client.incoming_phone_numbers.list(phone_number="+1415555****")
    assert [n.friendly_name for n in wildcard] == ["B"]
    assert [n.phone_number for n in client.incoming_phone_numbers.list(friendly_name="A")] == [
        "+15017122661"
    ]
    assert len(client.incoming_phone_numbers.list(page_size=1)) == 3  # followed two pages


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({}, 21421),
        ({"phone_number": "5017122661"}, 21421),
        ({"area_code": "123"}, 21451),
        ({"phone_number": "+15017122662", "sms_url": "ftp://x"}, 21502),
        ({"phone_number": "+15017122662", "status_callback": "nope"}, 21502),
        ({"phone_number": "+15017122662", "sms_method": "PUT"}, 20001),
        ({"phone_number": "+15017122661"}, 21422),
    ],
)
def test_provisioning_errors(
    client: Client, emulator: Emulator, fields: dict[str, str], code: int
) -> None:
    emulator.add_number("+15017122661")
    error = error_of(lambda: client.incoming_phone_numbers.create(**fields))
    assert error.status == 400 and error.code == code


def test_unknown_number_sid_is_404(client: Client) -> None:
    assert error_of(client.incoming_phone_numbers("PN" + "0" * 32).fetch).code == 20404
    assert error_of(client.incoming_phone_numbers("nope").delete).status == 404


# -- paging ----------------------------------------------------------------------------


def raw_get(emulator: Emulator, path: str, **params: str) -> requests.Response:
    url = f"{emulator.url}/2010-04-01/Accounts/{emulator.account_sid}/{path}"
    return requests.get(url, params=params, auth=(emulator.account_sid, emulator.auth_token))


@pytest.mark.parametrize("path", ["Messages.json", "IncomingPhoneNumbers.json", "MEDIA"])
def test_paging_errors_on_every_list(emulator: Emulator, client: Client, path: str) -> None:
    sent = client.messages.create(
        to=HANDSET, from_="+15017122661", body="x", media_url=["https://e.com/a.png"]
    )
    if path == "MEDIA":
        path = f"Messages/{sent.sid}/Media.json"
    missing_token = raw_get(emulator, path, Page="1")
    assert missing_token.status_code == 400
    assert missing_token.json()["code"] == 20001
    assert missing_token.json()["message"] == "PageToken is required for paging."
    too_large = raw_get(emulator, path, PageSize="1001")
    assert too_large.status_code == 400 and too_large.json()["code"] == 20007
    bad_token = raw_get(emulator, path, PageToken="PA" + "0" * 34, Page="1")
    assert bad_token.status_code == 400 and bad_token.json()["code"] == 21481
    assert raw_get(emulator, path, PageSize="1000", Page="0").status_code == 200


def test_v1_lists_page_the_same_way(emulator: Emulator, client: Client) -> None:
    config = {"destination": "https://bot.test/twilio/events", "method": "POST"}
    created = [
        client.events.v1.sinks.create(
            description=f"sink {i}", sink_configuration=config, sink_type="webhook"
        ).sid
        for i in range(3)
    ]
    assert sorted(s.sid for s in client.events.v1.sinks.list(page_size=2)) == sorted(created)
    first = client.events.v1.sinks.page(page_size=2)
    assert len(list(first)) == 2 and "PageToken=PA" in (first.next_page_url or "")
    auth = (emulator.account_sid, emulator.auth_token)
    for params, code in [({"Page": "1"}, 20001), ({"PageSize": "1001"}, 20007)]:
        answer = requests.get(f"{emulator.url}/v1/Sinks", params=params, auth=auth)
        assert answer.status_code == 400 and answer.json()["code"] == code


def test_paging_errors_reach_the_official_client(client: Client) -> None:
    """twilio-python raises a plain TwilioException("Unable to fetch page") with the answer."""
    for call, code in [
        (lambda: client.messages.page(page_number=1), 20001),
        (lambda: client.messages.page(page_size=1001), 20007),
        (lambda: client.incoming_phone_numbers.page(page_number=2), 20001),
    ]:
        with pytest.raises(TwilioException, match="Unable to fetch page") as caught:
            call()
        response = caught.value.args[1]
        assert response.status_code == 400 and json.loads(response.text)["code"] == code


def test_media_pages_and_date_filters(emulator: Emulator, client: Client) -> None:
    urls = [f"https://e.com/{i}.png" for i in range(5)]
    sent = client.messages.create(to=HANDSET, from_="+15017122661", media_url=urls)
    first = raw_get(emulator, f"Messages/{sent.sid}/Media.json", PageSize="2").json()
    assert len(first["media_list"]) == 2 and first["next_page_uri"] is not None
    assert "PageToken=PA" in first["next_page_uri"]
    listed = client.messages(sent.sid).media.list(page_size=2)
    assert [m.sid for m in listed] == [m.sid for m in emulator.state.media(sent.sid)]
    created = listed[0].date_created
    assert len(client.messages(sent.sid).media.list(date_created_before=created)) == 5
    later = raw_get(emulator, f"Messages/{sent.sid}/Media.json", **{"DateCreated>": "2999-01-01"})
    assert later.json()["media_list"] == [] and later.json()["next_page_uri"] is None
    bad = raw_get(emulator, f"Messages/{sent.sid}/Media.json", DateCreated="yesterday")
    assert bad.status_code == 400 and bad.json()["code"] == 20001


# -- Feedback --------------------------------------------------------------------------


def test_feedback(client: Client, emulator: Emulator) -> None:
    sent = client.messages.create(
        to=HANDSET, from_="+15017122661", body="Your code is 123456", provide_feedback=True
    )
    assert emulator.message(sent.sid).feedback == "unconfirmed"  # type: ignore[union-attr]
    feedback = client.messages(sent.sid).feedback.create(outcome="confirmed")
    assert feedback.outcome == "confirmed" and feedback.message_sid == sent.sid
    assert feedback.date_created is not None
    assert emulator.message(sent.sid).feedback == "confirmed"  # type: ignore[union-attr]
    response = requests.post(
        f"{emulator.url}/2010-04-01/Accounts/{emulator.account_sid}/Messages/{sent.sid}"
        "/Feedback.json",
        data={"Outcome": "unconfirmed"},
        auth=(emulator.account_sid, emulator.auth_token),
    )
    assert response.status_code == 200 and response.json()["outcome"] == "unconfirmed"
    bad = error_of(lambda: client.messages(sent.sid).feedback.create(outcome="maybe"))
    assert bad.status == 400 and bad.code == 20001
    missing = error_of(client.messages("SM" + "0" * 32).feedback.create)
    assert missing.status == 404


# -- media bytes -----------------------------------------------------------------------


def test_media_bytes_redirect_to_the_media_host(client: Client, emulator: Emulator) -> None:
    emulator.add_number("+15017122661", sms_url="https://bot.test/sms")
    emulator.mount("https://bot.test", Flask("bot"))
    exchange = emulator.handset(HANDSET).send(
        "+15017122661", "look", media=[Attachment(PICTURE, "image/png")]
    )
    [media] = emulator.state.media(exchange.inbound.sid)
    url = emulator.media_url(exchange.inbound.sid, media.sid)
    assert requests.get(url, allow_redirects=False).status_code == 401  # Basic auth required
    auth = (emulator.account_sid, emulator.auth_token)
    hop = requests.get(url, auth=auth, allow_redirects=False)
    assert hop.status_code == 307 and hop.headers["Location"].startswith(emulator.media_base)
    assert requests.get(hop.headers["Location"]).content == PICTURE  # no credentials needed
    leaked = requests.get(hop.headers["Location"], auth=auth)
    assert leaked.status_code == 400  # like S3: a signed URL plus credentials is refused
    forged = requests.get(hop.headers["Location"][:-3] + "abc")
    assert forged.status_code == 403
    # the official client's own request follows the redirect and drops the credentials (the
    # media host answers 400 to any that carry them); twilio's Response holds decoded text
    response = client.request("GET", url, allow_redirects=True)
    assert response.status_code == 200 and response.text.endswith("pixels" * 1000)
    client.messages(exchange.inbound.sid).media(media.sid).delete()
    assert requests.get(hop.headers["Location"]).status_code == 404


def test_kit_download_through_the_redirect(emulator: Emulator, tmp_path: Path) -> None:
    emulator.add_number("+15017122661", sms_url="https://bot.test/twilio/messages")
    kit = WebhookKit()
    seen: list[InboundMedia] = []

    @kit.on_message()
    def keep(message: object) -> None:
        seen.extend(message.media)  # type: ignore[attr-defined]

    app = bot_app(kit, emulator)
    emulator.mount("https://bot.test", app)
    emulator.handset(HANDSET).send("+15017122661", "pic", media=[Attachment(PICTURE, "image/png")])
    [media] = seen
    assert media.url.startswith(emulator.url) and media.content_type == "image/png"
    with app.app_context():
        path = kit.download(media, tmp_path)
    assert path.read_bytes() == PICTURE


class Files:
    """A loopback file server for outbound MediaUrl checks (type and size per path)."""

    def __init__(self) -> None:
        files = {
            "/ok.png": ("image/png", PICTURE),
            "/big.png": ("image/png", b"x" * (5 * 1024 * 1024 + 1)),
            "/doc.exe": ("application/x-msdownload", b"MZ"),
            "/empty.png": ("image/png", b""),
            "/big.pdf": ("application/pdf", b"%" * (600 * 1024)),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path not in files:
                    self.send_response(404)
                    self.end_headers()
                    return
                kind, body = files[self.path]
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def files() -> Iterator[Files]:
    served = Files()
    yield served
    served.server.shutdown()
    served.server.server_close()


@pytest.mark.parametrize(
    ("paths", "status", "code"),
    [
        (["/ok.png"], "delivered", None),
        (["/big.png"], "failed", 11751),
        (["/ok.png", "/ok.png", "/big.pdf"], "failed", 11751),
        (["/doc.exe"], "failed", 12300),
        (["/empty.png"], "failed", 63019),
        (["/missing.png"], "failed", 11200),
    ],
)
def test_outbound_media_limits(
    client: Client,
    emulator: Emulator,
    files: Files,
    paths: list[str],
    status: str,
    code: int | None,
) -> None:
    sent = client.messages.create(
        to=HANDSET, from_="+15017122661", media_url=[files.base + p for p in paths]
    )
    assert sent.status == "queued"  # Twilio accepts it, then fails it when it fetches
    emulator.advance(5)
    fetched = client.messages(sent.sid).fetch()
    assert fetched.status == status and fetched.error_code == code
    if status == "delivered":
        [media] = client.messages(sent.sid).media.list()
        assert media.content_type == "image/png"
        bytes_url = emulator.media_url(sent.sid, media.sid)
        auth = (emulator.account_sid, emulator.auth_token)
        assert requests.get(bytes_url, auth=auth).content == PICTURE


# -- the sending side ------------------------------------------------------------------


def test_kit_confirm_and_delete(emulator: Emulator) -> None:
    kit = WebhookKit()
    app = bot_app(kit, emulator, "sender")
    with app.app_context():
        sent = kit.send(HANDSET, "code 1234", from_="+15017122661", provide_feedback=True)
        assert kit.confirm(sent.sid) == "confirmed"
        assert emulator.message(sent.sid).feedback == "confirmed"  # type: ignore[union-attr]
        assert kit.confirm(sent.sid, confirmed=False) == "unconfirmed"
        with pytest.raises(SendError, match="20009"):
            kit.delete(sent.sid)  # still under way
        emulator.advance(5)
        kit.delete(sent.sid)
        assert emulator.message(sent.sid) is None
        assert kit.ledger.get(sent.sid) is not None  # the app's own record stays


# -- every domain on one port ----------------------------------------------------------


def test_every_domain_reaches_the_one_port(emulator: Emulator) -> None:
    """The client's per-product hosts all land on the emulator, each path in its domain."""
    http = RecordingHttpClient(emulator.url)
    client = Client(emulator.account_sid, emulator.auth_token, http_client=http)
    calls = [
        client.messages.list,
        client.incoming_phone_numbers.list,
        client.messaging.v1.services.list,
        client.content.v1.contents.list,
        client.events.v1.sinks.list,
        client.events.v1.subscriptions.list,
    ]
    for call in calls:
        call()
    assert [status for _, _, status, _ in http.seen] == [200] * len(calls)
    for _, url, _, _ in http.seen:
        parts = urlsplit(url)
        host = parts.hostname or ""
        assert host.endswith(".twilio.com") and domain_of(parts.path) == host.split(".")[0]


def test_no_path_belongs_to_two_domains() -> None:
    owners: dict[tuple[str, str], str] = {}
    for domain, prefixes in DOMAINS.items():
        for prefix in prefixes:
            assert owners.setdefault(prefix, domain) == domain, prefix
    assert domain_of("/_emulator/health") is None


# -- Channel* callback fields ----------------------------------------------------------


def test_whatsapp_callbacks_carry_the_channel_fields(
    client: Client, emulator: Emulator, app: Receiver
) -> None:
    emulator.add_rule("undelivered", 63024, to="whatsapp:+15550000001")
    emulator.add_number("whatsapp:+15017122661", sms_url=app.base + "/in")
    for to in ("whatsapp:" + HANDSET, "whatsapp:+15550000001"):
        emulator.handset(to).send("whatsapp:+15017122661", "hi")  # opens the 24-hour window
        client.messages.create(
            to=to, from_="whatsapp:+15017122661", body="hi", status_callback=app.base + "/s"
        )
    client.messages.create(
        to=HANDSET, from_="+15017122661", body="sms", status_callback=app.base + "/sms-status"
    )
    emulator.advance(5)
    forms = app.forms("/s")
    installs = {f["ChannelInstallSid"] for f in forms}
    assert len(installs) == 1 and next(iter(installs)).startswith("XE")  # one installed channel
    failed = [parse_status(f) for f in forms if f["MessageStatus"] == "undelivered"]
    assert [u.error.code for u in failed] == [63024]
    assert failed[0].channel_status_message and failed[0].channel_install_sid in installs
    assert all(
        "ChannelStatusMessage" not in f for f in forms if f["MessageStatus"] != "undelivered"
    )
    assert all("ChannelInstallSid" not in f for f in app.forms("/sms-status"))  # SMS has none


# -- receiving -------------------------------------------------------------------------


def test_long_inbound_messages_pass_through_receiving(
    client: Client, emulator: Emulator, app: Receiver
) -> None:
    emulator.add_number("+15017122661", sms_url=app.base + "/sms")
    long = emulator.handset(HANDSET).send("+15017122661", "x" * 200).inbound  # two segments
    short = emulator.handset(HANDSET).send("+15017122661", "hi").inbound
    assert [s for s, _ in emulator.history(long.sid)] == ["receiving", "received"]
    assert [s for s, _ in emulator.history(short.sid)] == ["received"]
    assert client.messages(long.sid).fetch().status == "received"
    assert [f["SmsStatus"] for f in app.forms("/sms")] == ["received", "received"]
    assert app.forms("/sms")[0]["NumSegments"] == "2"
    sent = client.messages.create(to=HANDSET, from_="+15017122661", body="out")
    emulator.advance(5)
    assert [s for s, _ in emulator.history(sent.sid)] == ["queued", "sending", "sent", "delivered"]


def test_local_and_toll_free_subresources(client: Client, emulator: Emulator) -> None:
    local = client.incoming_phone_numbers.local.create(phone_number="+15017122661")
    free = client.incoming_phone_numbers.toll_free.create(phone_number="+18005550100")
    assert local.sid.startswith("PN") and free.phone_number == "+18005550100"
    assert [n.phone_number for n in client.incoming_phone_numbers.toll_free.list()] == [
        "+18005550100"
    ]
    assert [n.phone_number for n in client.incoming_phone_numbers.local.list()] == ["+15017122661"]
    assert client.incoming_phone_numbers(free.sid).fetch().phone_number == "+18005550100"
    mismatch = error_of(
        lambda: client.incoming_phone_numbers.local.create(phone_number="+18885550100")
    )
    assert mismatch.code == 21458
    area = requests.post(  # the clients do not even offer AreaCode here
        f"{emulator.url}/2010-04-01/Accounts/{emulator.account_sid}/IncomingPhoneNumbers"
        "/TollFree.json",
        data={"AreaCode": "800"},
        auth=(emulator.account_sid, emulator.auth_token),
    )
    assert area.status_code == 400 and area.json()["code"] == 21457
