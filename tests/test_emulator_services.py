"""Messaging Services over real HTTP with the official twilio client: the service resource,
its sender pool, how a sender is picked, and the settings a send through it takes."""

from __future__ import annotations

from emulator_support import Receiver, error_of
from twilio.rest import Client

from webhook_kit.emulator import Emulator

HANDSET = "+14155550199"


def pool(client: Client, service: str, *numbers: str) -> None:
    """Provision each number and put it in the service's pool."""
    for number in numbers:
        sid = client.incoming_phone_numbers.create(phone_number=number).sid
        client.messaging.v1.services(service).phone_numbers.create(phone_number_sid=sid)


def sent_from(emulator: Emulator, client: Client, service: str, to: str) -> str:
    sid = client.messages.create(to=to, messaging_service_sid=service, body="hi").sid
    emulator.advance(1)
    record = emulator.message(sid)
    assert record is not None
    return record.from_


def test_service_resource(client: Client) -> None:
    services = client.messaging.v1.services
    created = services.create(
        friendly_name="Alerts", status_callback="https://example.com/s", validity_period=600
    )
    assert created.sid.startswith("MG") and created.friendly_name == "Alerts"
    assert created.sticky_sender is True and created.area_code_geomatch is True
    assert created.validity_period == 600 and created.inbound_method == "POST"
    assert created.links["phone_numbers"].endswith(f"/v1/Services/{created.sid}/PhoneNumbers")
    updated = services(created.sid).update(sticky_sender=False, friendly_name="Renamed")
    assert updated.sticky_sender is False and updated.friendly_name == "Renamed"
    assert updated.date_updated >= created.date_created
    assert [s.sid for s in services.list()] == [created.sid]
    assert services(created.sid).fetch().status_callback == "https://example.com/s"
    assert services(created.sid).delete() is True
    assert error_of(lambda: services(created.sid).fetch()).status == 404
    assert error_of(lambda: services.create(friendly_name="")).status == 400
    assert error_of(lambda: services.create(friendly_name="x", validity_period=0)).code == 21624


def test_paging_of_services(client: Client) -> None:
    for index in range(5):
        client.messaging.v1.services.create(friendly_name=f"s{index}")
    names = [s.friendly_name for s in client.messaging.v1.services.list(page_size=2)]
    assert names == [f"s{index}" for index in range(5)]


def test_sender_pool(client: Client, emulator: Emulator) -> None:
    service = client.messaging.v1.services.create(friendly_name="Pool").sid
    pool(client, service, "+14155550100")
    senders = client.messaging.v1.services(service)
    numbers = senders.phone_numbers.list()
    assert [(n.phone_number, n.country_code) for n in numbers] == [("+14155550100", "US")]
    assert "SMS" in numbers[0].capabilities and numbers[0].sid.startswith("PN")
    short = senders.short_codes.create(short_code_sid=emulator.add_short_code("12345"))
    assert (short.short_code, short.country_code) == ("12345", "US")
    alpha = senders.alpha_senders.create(alpha_sender="Acme")
    assert alpha.alpha_sender == "Acme" and alpha.sid.startswith("AI")
    assert senders.alpha_senders(alpha.sid).fetch().alpha_sender == "Acme"
    assert senders.alpha_senders(alpha.sid).delete() is True
    assert senders.alpha_senders.list() == []
    other = client.messaging.v1.services.create(friendly_name="Other").sid
    number_sid = numbers[0].sid
    again = error_of(
        lambda: client.messaging.v1.services(other).phone_numbers.create(
            phone_number_sid=number_sid
        )
    )
    assert again.code == 21712
    bad_sid = error_of(lambda: senders.phone_numbers.create(phone_number_sid="PN" + "0" * 32))
    assert bad_sid.code == 21421
    assert error_of(lambda: senders.alpha_senders.create(alpha_sender="12345")).code == 21716


def test_area_code_country_and_sticky_sender(client: Client, emulator: Emulator) -> None:
    service = client.messaging.v1.services.create(friendly_name="Geo").sid
    pool(client, service, "+12125550100", "+447700900100", "+14155550100")
    assert sent_from(emulator, client, service, "+14155550123") == "+14155550100"  # area code
    assert sent_from(emulator, client, service, "+447700900555") == "+447700900100"  # country
    first = sent_from(emulator, client, service, "+13105550123")  # no match: a US number
    assert first in {"+12125550100", "+14155550100"}
    pool(client, service, "+13105550100")
    assert sent_from(emulator, client, service, "+13105550123") == first  # sticky
    assert sent_from(emulator, client, service, "+13105550999") == "+13105550100"
    client.messaging.v1.services(service).update(sticky_sender=False)
    assert sent_from(emulator, client, service, "+13105550123") == "+13105550100"


def test_short_code_first_and_alpha_sender_abroad(client: Client, emulator: Emulator) -> None:
    service = client.messaging.v1.services.create(friendly_name="Codes").sid
    pool(client, service, "+14155550100")
    senders = client.messaging.v1.services(service)
    senders.short_codes.create(short_code_sid=emulator.add_short_code("24680"))
    senders.alpha_senders.create(alpha_sender="Acme")
    assert sent_from(emulator, client, service, "+14155550123") == "24680"
    assert sent_from(emulator, client, service, "+447700900555") == "Acme"


def test_status_callback_and_validity_period(
    client: Client, emulator: Emulator, app: Receiver
) -> None:
    service = client.messaging.v1.services.create(
        friendly_name="Hooks", status_callback=app.base + "/service", validity_period=60
    ).sid
    pool(client, service, "+14155550100")
    client.messages.create(to=HANDSET, messaging_service_sid=service, body="a")
    client.messages.create(
        to=HANDSET, messaging_service_sid=service, body="b", status_callback=app.base + "/own"
    )
    emulator.advance(2)
    assert [f["MessageStatus"] for f in app.forms("/service")][-1] == "delivered"
    assert [f["MessageStatus"] for f in app.forms("/own")][-1] == "delivered"
    assert {f["MessagingServiceSid"] for f in app.forms("/service")} == {service}
    assert len(app.forms("/service")) == len(app.forms("/own"))  # each message one URL
    record = emulator.messages()[0]
    assert record.validity_period == 60


def test_inbound_goes_to_the_service_unless_the_number_wins(
    client: Client, emulator: Emulator, app: Receiver
) -> None:
    service = client.messaging.v1.services.create(
        friendly_name="Inbound", inbound_request_url=app.base + "/service"
    ).sid
    number = client.incoming_phone_numbers.create(
        phone_number="+14155550100", sms_url=app.base + "/number"
    )
    client.messaging.v1.services(service).phone_numbers.create(phone_number_sid=number.sid)
    emulator.handset(HANDSET).send("+14155550100", "one")
    assert [f["Body"] for f in app.forms("/service")] == ["one"]
    assert app.forms("/service")[0]["MessagingServiceSid"] == service
    app.answer("/service", "down", status=500)
    client.messaging.v1.services(service).update(fallback_url=app.base + "/service-fallback")
    emulator.handset(HANDSET).send("+14155550100", "one more")
    fallback = app.forms("/service-fallback")
    assert [f["Body"] for f in fallback] == ["one more"] and fallback[0]["ErrorCode"] == "11200"
    client.messaging.v1.services(service).update(use_inbound_webhook_on_number=True)
    emulator.handset(HANDSET).send("+14155550100", "two")
    assert [f["Body"] for f in app.forms("/number")] == ["two"]


def test_service_level_opt_out(client: Client, emulator: Emulator, app: Receiver) -> None:
    service = client.messaging.v1.services.create(friendly_name="Opt-out").sid
    for number in ("+14155550100", "+14155550101"):
        sid = client.incoming_phone_numbers.create(phone_number=number, sms_url=app.base).sid
        client.messaging.v1.services(service).phone_numbers.create(phone_number_sid=sid)
    emulator.handset(HANDSET).send("+14155550100", "STOP")
    through = error_of(
        lambda: client.messages.create(to=HANDSET, messaging_service_sid=service, body="x")
    )
    assert (through.status, through.code) == (400, 21610)
    other = error_of(lambda: client.messages.create(to=HANDSET, from_="+14155550101", body="x"))
    assert other.code == 21610  # the other number of the same service
    emulator.handset(HANDSET).send("+14155550101", "START")
    assert client.messages.create(to=HANDSET, messaging_service_sid=service, body="back").sid


def test_unknown_service_and_empty_pool(client: Client, emulator: Emulator) -> None:
    unknown = "MG" + "0" * 32
    failure = error_of(lambda: client.messages.create(to=HANDSET, messaging_service_sid=unknown))
    assert failure.code in {21705, 21619}
    missing = error_of(
        lambda: client.messages.create(to=HANDSET, messaging_service_sid=unknown, body="x")
    )
    assert missing.code == 21705
    empty = client.messaging.v1.services.create(friendly_name="Empty").sid
    sid = client.messages.create(to=HANDSET, messaging_service_sid=empty, body="x").sid
    emulator.advance(1)
    fetched = client.messages(sid).fetch()
    assert (fetched.status, fetched.error_code) == ("failed", 21704)
