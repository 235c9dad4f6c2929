"""WhatsApp over real HTTP with the official twilio client: the 24-hour window a user's
message opens, 63016 outside it, Content templates rendered with their variables."""

from __future__ import annotations

import json

import pytest
from emulator_support import Receiver, bot_app, error_of
from twilio.rest import Client
from twilio.rest.content.v1.content import ContentList

from webhook_kit import Template, WebhookKit
from webhook_kit.emulator import Emulator

BUSINESS = "whatsapp:+14155238886"
USER = "whatsapp:+15558675310"


@pytest.fixture
def emulator(running: Emulator, app: Receiver) -> Emulator:
    running.reset()
    running.add_number(BUSINESS, sms_url=app.base + "/in")
    return running


def template(client: Client, types: dict[str, object], variables: dict[str, str]) -> str:
    request = ContentList.ContentCreateRequest(
        {"friendly_name": "order", "language": "en", "variables": variables, "types": types}
    )
    return str(client.content.v1.contents.create(request).sid)


def test_content_resource(client: Client) -> None:
    sid = template(client, {"twilio/text": {"body": "Hi {{1}}"}}, {"1": "there"})
    assert sid.startswith("HX")
    fetched = client.content.v1.contents(sid).fetch()
    assert fetched.language == "en" and fetched.variables == {"1": "there"}
    assert fetched.types == {"twilio/text": {"body": "Hi {{1}}"}}  # unused types are dropped
    media = template(
        client, {"twilio/media": {"body": "Your {{1}}", "media": ["https://x.test/{{2}}.png"]}}, {}
    )
    assert [c.sid for c in client.content.v1.contents.list(page_size=1)] == [sid, media]
    assert client.content.v1.contents(sid).delete() is True
    assert error_of(lambda: client.content.v1.contents(sid).fetch()).status == 404
    no_body = ContentList.ContentCreateRequest({"language": "en", "types": {"twilio/text": {}}})
    assert error_of(lambda: client.content.v1.contents.create(no_body)).status == 400
    no_types = ContentList.ContentCreateRequest({"language": "en", "types": {}})
    assert error_of(lambda: client.content.v1.contents.create(no_types)).status == 400


def test_free_form_outside_the_window_fails_with_63016(
    client: Client, emulator: Emulator, app: Receiver
) -> None:
    created = client.messages.create(
        to=USER, from_=BUSINESS, body="Hello?", status_callback=app.base + "/status"
    )
    assert created.status == "queued" and created.error_code is None  # created, then fails
    emulator.advance(1)
    fetched = client.messages(created.sid).fetch()
    assert (fetched.status, fetched.error_code) == ("failed", 63016)
    assert fetched.error_message
    final = app.forms("/status")[-1]
    assert (final["MessageStatus"], final["ErrorCode"]) == ("failed", "63016")


def test_the_users_message_opens_the_window_for_24_hours(
    client: Client, emulator: Emulator
) -> None:
    emulator.handset(USER).send(BUSINESS, "hi")
    inside = client.messages.create(to=USER, from_=BUSINESS, body="Inside")
    emulator.advance(23 * 3600)
    still = client.messages.create(to=USER, from_=BUSINESS, body="Still inside")
    emulator.advance(3601)
    outside = client.messages.create(to=USER, from_=BUSINESS, body="Too late")
    emulator.advance(5)
    status = {sid: client.messages(sid).fetch().status for sid in (inside.sid, still.sid)}
    assert set(status.values()) == {"read"}
    assert client.messages(outside.sid).fetch().error_code == 63016
    other = client.messages.create(to="whatsapp:+15550001111", from_=BUSINESS, body="x")
    emulator.advance(1)  # the window is per user
    assert client.messages(other.sid).fetch().error_code == 63016


def test_a_template_is_delivered_outside_the_window(client: Client, emulator: Emulator) -> None:
    sid = template(
        client, {"twilio/text": {"body": "Order {{1}} ships {{day}}"}}, {"1": "#0", "day": "soon"}
    )
    sent = client.messages.create(
        to=USER, from_=BUSINESS, content_sid=sid, content_variables=json.dumps({"1": "#42"})
    )
    assert sent.body == "Order #42 ships soon"  # the default fills {{day}}
    emulator.advance(5)
    assert client.messages(sent.sid).fetch().status == "read"
    assert emulator.handset(USER).received()[-1].body == "Order #42 ships soon"


def test_a_list_picker_cannot_open_a_conversation(client: Client, emulator: Emulator) -> None:
    picker = {"twilio/list-picker": {"body": "Pick one", "button": "Menu", "items": []}}
    sid = template(client, picker, {})
    sent = client.messages.create(to=USER, from_=BUSINESS, content_sid=sid)
    emulator.advance(5)
    assert client.messages(sent.sid).fetch().error_code == 63016
    emulator.handset(USER).send(BUSINESS, "menu please")
    inside = client.messages.create(to=USER, from_=BUSINESS, content_sid=sid)
    emulator.advance(5)
    assert client.messages(inside.sid).fetch().status == "read"


def test_a_media_template_sends_its_media(client: Client, emulator: Emulator) -> None:
    sid = template(
        client,
        {"twilio/media": {"body": "Receipt {{1}}", "media": ["https://example.com/{{1}}.pdf"]}},
        {"1": "r1"},
    )
    sent = client.messages.create(to=USER, from_=BUSINESS, content_sid=sid)
    assert sent.body == "Receipt r1" and sent.num_media == "1" and sent.sid.startswith("MM")
    media = client.messages(sent.sid).media.list()
    assert len(media) == 1


def test_template_errors(client: Client) -> None:
    sid = template(client, {"twilio/text": {"body": "Hi {{name}}"}}, {})
    missing = error_of(lambda: client.messages.create(to=USER, from_=BUSINESS, content_sid=sid))
    assert missing.code == 21656  # no value and no default for {{name}}
    empty = error_of(
        lambda: client.messages.create(
            to=USER, from_=BUSINESS, content_sid=sid, content_variables='{"name": ""}'
        )
    )
    assert empty.code == 21656
    unknown = error_of(
        lambda: client.messages.create(to=USER, from_=BUSINESS, content_sid="HX" + "1" * 32)
    )
    assert unknown.code == 21655
    alone = error_of(
        lambda: client.messages.create(
            to=USER, from_=BUSINESS, body="x", content_variables='{"1": "a"}'
        )
    )
    assert alone.code == 21654


def test_service_send_to_whatsapp_checks_the_window(client: Client, emulator: Emulator) -> None:
    service = emulator.add_service()
    emulator.outbound.add_sender(service, "phone_number", "PN" + "7" * 32, BUSINESS)
    blocked = client.messages.create(to=USER, messaging_service_sid=service, body="x")
    emulator.advance(1)
    assert client.messages(blocked.sid).fetch().error_code == 63016
    emulator.handset(USER).send(BUSINESS, "hello")
    allowed = client.messages.create(to=USER, messaging_service_sid=service, body="y")
    emulator.advance(1)
    fetched = client.messages(allowed.sid).fetch()
    assert fetched.status == "read" and fetched.from_ == BUSINESS


def test_kit_send_falls_back_to_the_template_outside_the_window(emulator: Emulator) -> None:
    emulator.add_number(BUSINESS, sms_url="https://bot.test/twilio/messages")
    kit = WebhookKit()

    @kit.on_message()
    def ignore(message: object) -> None:
        return None

    app = bot_app(kit, emulator)
    emulator.mount("https://bot.test", app)
    emulator.handset(USER).send(BUSINESS, "hi")  # the ledger sees the user write
    reminder = Template(
        emulator.add_template({"twilio/text": {"body": "Reminder for {{1}}"}}), {"1": "Ann"}
    )
    stranger = "whatsapp:+15550002222"
    with app.app_context():
        assert kit.window_open(USER, BUSINESS) and not kit.window_open(stranger, BUSINESS)
        inside = kit.send(USER, "Free text", from_=BUSINESS, fallback_template=reminder)
        outside = kit.send(stranger, "Free text", from_=BUSINESS, fallback_template=reminder)
        plain = kit.send(stranger, "No fallback", from_=BUSINESS)
    emulator.advance(5)
    assert [emulator.message(s.sid).body for s in (inside, outside)] == [  # type: ignore[union-attr]
        "Free text",
        "Reminder for Ann",
    ]
    assert emulator.message(outside.sid).status == "read"  # type: ignore[union-attr]
    assert emulator.message(plain.sid).error_code == 63016  # type: ignore[union-attr]
