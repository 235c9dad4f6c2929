from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook_kit import (
    Channel,
    DeliveryFailure,
    FallbackRequest,
    InboundMedia,
    InboundMessage,
    Location,
    MessageStatus,
    OptOutType,
    Place,
    Referral,
    RepliedMessage,
    StatusCallback,
)
from webhook_kit.errors import BadRequestError
from webhook_kit.events import Fields, parse_fallback, parse_inbound, parse_status
from webhook_kit.testing import (
    ACCOUNT_SID,
    MESSAGING_SERVICE_SID,
    fallback_request,
    inbound_mms,
    inbound_sms,
    opt_out_message,
    status_callback,
    whatsapp_message,
)


def inbound(fields: dict[str, str]) -> InboundMessage:
    return parse_inbound(Fields(fields.items()))


def test_core_fields_of_an_sms() -> None:
    fields = inbound_sms("Ahoy!", from_="+14017122661", to="+15558675310")
    message = inbound(fields)
    assert message.message_sid == fields["MessageSid"]
    assert message.account_sid == ACCOUNT_SID
    assert message.messaging_service_sid == MESSAGING_SERVICE_SID
    assert message.from_ == "+14017122661" and message.to == "+15558675310"
    assert message.body == "Ahoy!"
    assert message.num_segments == 1
    assert message.num_media == 0 and message.media == ()
    assert message.channel is Channel.SMS
    assert message.opt_out_type is None
    assert message.sms_status == "received" and message.api_version == "2010-04-01"
    assert message.match is None


def test_geographic_fields_for_both_ends() -> None:
    message = inbound(inbound_sms(FromCity="Trezzo Sull'Adda", FromCountry="IT"))
    assert message.from_place == Place("Trezzo Sull'Adda", "CA", "94103", "IT")
    assert message.to_place == Place("SAUSALITO", "CA", "94965", "US")
    bare = inbound(inbound_sms(ToCity=None, ToState=None, ToZip=None, ToCountry=None))
    assert bare.to_place == Place(None, None, None, None)


def test_media_items_are_zero_based_and_typed() -> None:
    fields = inbound_mms(3, content_type="image/png")
    message = inbound(fields)
    assert message.num_media == 3
    assert message.channel is Channel.MMS
    assert message.media[0] == InboundMedia(fields["MediaUrl0"], "image/png")
    assert [m.url for m in message.media] == [fields[f"MediaUrl{i}"] for i in range(3)]
    assert message.message_sid.startswith("MM")


def test_media_without_content_type_keeps_the_url() -> None:
    message = inbound(inbound_sms(MediaUrl0="https://x/1", NumMedia="1"))
    assert message.media == (InboundMedia("https://x/1", ""),)


@pytest.mark.parametrize(
    ("address", "channel"),
    [
        ("whatsapp:+14155550100", Channel.WHATSAPP),
        ("messenger:1234567890", Channel.MESSENGER),
        ("rcs:+14155550100", Channel.RCS),
        ("+14155550100", Channel.SMS),
        ("ALPHA", Channel.SMS),
    ],
)
def test_channel_comes_from_the_address(address: str, channel: Channel) -> None:
    assert inbound(inbound_sms(from_=address)).channel is channel


def test_unknown_channel_prefix_is_kept() -> None:
    channel = inbound(inbound_sms(from_="line:U123")).channel
    assert isinstance(channel, Channel) and channel == "line"


def test_whatsapp_fields() -> None:
    fields = whatsapp_message(
        "Cancel",
        button=("Cancel Appointment", "cancel-42"),
        Forwarded="true",
        FrequentlyForwarded="true",
        OriginalRepliedMessageSender="whatsapp:+14017122661",
        OriginalRepliedMessageSid="SM" + "1" * 32,
    )
    message = inbound(fields)
    assert message.channel is Channel.WHATSAPP
    assert message.profile_name == "Ada Lovelace"
    assert message.wa_id == "14155550100"
    assert message.forwarded and message.frequently_forwarded
    assert message.button_text == "Cancel Appointment"
    assert message.button_payload == "cancel-42"
    assert message.message_type == "button"
    assert message.replied_to == RepliedMessage("SM" + "1" * 32, "whatsapp:+14017122661")
    assert message.location is None and message.referral is None


def test_whatsapp_location() -> None:
    location = (51.51322977399644, -0.2197976373036567, "187 Freston Road", "The Harrow Club")
    message = inbound(whatsapp_message("", location=location))
    assert message.location == Location(*location)


def test_whatsapp_location_with_a_bad_number_reads_none() -> None:
    message = inbound(whatsapp_message("", Latitude="north", Longitude="1.5"))
    assert message.location == Location(None, 1.5, None, None)


def test_click_to_whatsapp_referral() -> None:
    message = inbound(
        whatsapp_message(
            ReferralBody="Learn more",
            ReferralHeadline="Send us a message",
            ReferralSourceId="118588094077142",
            ReferralSourceType="post",
            ReferralSourceUrl="https://fb.me/xyz123",
            ReferralMediaId="e420b130",
            ReferralMediaContentType="image/jpeg",
            ReferralMediaUrl="https://api.twilio.com/media",
            ReferralNumMedia="0",
            ReferralCtwaClid="ARAkLkA8",
        )
    )
    assert message.referral == Referral(
        "Learn more", "Send us a message", "118588094077142", "post", "https://fb.me/xyz123",
        "e420b130", "image/jpeg", "https://api.twilio.com/media", 0, "ARAkLkA8",
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["STOP", "START", "HELP"])
def test_opt_out_type(kind: str) -> None:
    assert inbound(opt_out_message(kind)).opt_out_type is OptOutType(kind)


def test_every_field_stays_in_raw_even_unknown_and_repeated() -> None:
    pairs = [*inbound_sms().items(), ("BrandNewParam", "x"), ("Tag", "a"), ("Tag", "b")]
    message = parse_inbound(Fields(pairs))
    assert message.raw["BrandNewParam"] == "x"
    assert message.raw.getlist("Tag") == ["a", "b"]
    assert message.raw["Tag"] == message.raw.get("Tag") == "a"
    assert message.raw.items(multi=True) == tuple(pairs)
    assert list(message.raw) == list(dict.fromkeys(name for name, _ in pairs))
    with pytest.raises(TypeError):
        message.raw["Body"] = "changed"  # type: ignore[index]


def test_fields_read_like_a_multidict() -> None:
    fields = Fields([("A", "1"), ("B", "2"), ("A", "3")])
    assert fields["A"] == "1" and fields.get("A") == "1" and fields.get("Z") is None
    assert fields.get("Z", "default") == "default"
    assert fields.getlist("A") == ["1", "3"] and fields.getlist("Z") == []
    assert len(fields) == 2 and "B" in fields and "Z" not in fields
    assert dict(fields.items()) == fields.to_dict() == {"A": "1", "B": "2"}
    assert fields == {"A": "1", "B": "2"}
    assert repr(fields) == "Fields([('A', '1'), ('B', '2'), ('A', '3')])"
    with pytest.raises(KeyError):
        fields["Z"]


def test_events_are_immutable() -> None:
    message = inbound(inbound_sms())
    with pytest.raises(AttributeError):
        message.body = "x"  # type: ignore[misc]


@pytest.mark.parametrize("missing", ["MessageSid", "From", "To"])
def test_missing_identity_field_is_a_bad_request(missing: str) -> None:
    fields = inbound_sms(SmsMessageSid=None, SmsSid=None)
    del fields[missing]
    with pytest.raises(BadRequestError, match=missing):
        inbound(fields)


def test_legacy_sms_sid_is_accepted() -> None:
    fields = inbound_sms()
    sid = fields.pop("MessageSid")
    assert inbound(fields).message_sid == sid


@pytest.mark.parametrize("value", ["many", "99999999999999999999", "-1", "1_000", " 2", "٣"])
def test_malformed_optional_numbers_read_none(value: str) -> None:
    """Only digits a store can keep are a number: a huge count would overflow its column."""
    message = inbound(inbound_sms(NumSegments=value))
    assert message.num_segments is None


def test_status_callback_fields() -> None:
    fields = status_callback(
        "SM" + "a" * 32,
        "undelivered",
        error_code=30003,
        ErrorMessage="Unreachable destination handset",
        ChannelInstallSid="XE" + "b" * 32,
        ChannelStatusMessage="device off",
        ChannelPrefix="whatsapp",
        EventType="READ",
    )
    update = parse_status(Fields(fields.items()))
    assert isinstance(update, StatusCallback)
    assert update.message_sid == "SM" + "a" * 32
    assert update.status is MessageStatus.UNDELIVERED
    assert update.error == DeliveryFailure(30003, "Unreachable destination handset")
    assert update.error is not None and update.error.title == "Unreachable destination handset"
    assert update.raw_dlr_done_date == datetime(2026, 11, 23, 15, 30)
    assert update.channel_install_sid == "XE" + "b" * 32
    assert update.channel_status_message == "device off"
    assert update.channel_prefix == "whatsapp"
    assert update.channel is Channel.WHATSAPP
    assert update.event_type == "READ"
    assert update.account_sid == ACCOUNT_SID
    assert update.messaging_service_sid == MESSAGING_SERVICE_SID


def test_status_without_error_has_none() -> None:
    update = parse_status(Fields(status_callback(status="sent").items()))
    assert update.error is None and update.raw_dlr_done_date is None
    assert update.channel is Channel.SMS


@pytest.mark.parametrize("value", ["", "26112315", "2613011530", "abcdefghij"])
def test_bad_dlr_dates_read_none(value: str) -> None:
    update = parse_status(Fields(status_callback(RawDlrDoneDate=value).items()))
    assert update.raw_dlr_done_date is None


def test_unknown_status_is_kept() -> None:
    update = parse_status(Fields(status_callback(status="quantum").items()))
    assert update.status == "quantum" and not update.status.known


@pytest.mark.parametrize("missing", ["MessageSid", "MessageStatus"])
def test_status_missing_identity_is_a_bad_request(missing: str) -> None:
    fields = status_callback(SmsSid=None, SmsStatus=None)
    del fields[missing]
    with pytest.raises(BadRequestError, match=missing):
        parse_status(Fields(fields.items()))


def test_fallback_request_is_an_inbound_message_with_the_error() -> None:
    request = parse_fallback(Fields(fallback_request("hi", error_code=11205).items()))
    assert isinstance(request, FallbackRequest) and isinstance(request, InboundMessage)
    assert request.body == "hi"
    assert request.error_code == 11205
    assert request.error_url == "https://example.com/twilio/messages"


names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)


@given(st.lists(st.tuples(names, st.text(max_size=50)), max_size=30))
def test_unknown_fields_never_raise(extra: list[tuple[str, str]]) -> None:
    message = parse_inbound(Fields([*inbound_sms().items(), *extra]))
    for name, value in extra:
        assert value in message.raw.getlist(name)
    # every typed accessor copes with whatever arrived
    _ = (message.location, message.referral, message.replied_to, message.from_place)


SID_FIELDS = ["MessageSid", "SmsSid", "SmsMessageSid", "AccountSid", "MessagingServiceSid"]


@pytest.mark.parametrize("name", SID_FIELDS)
@pytest.mark.parametrize("value", ["SM1", "SM" + "g" * 32, "sm" + "0" * 32, "SM" + "0" * 33])
def test_a_sid_without_twilios_shape_is_a_bad_request(name: str, value: str) -> None:
    with pytest.raises(BadRequestError, match=name):  # a bad shape, or aliases that differ
        inbound(inbound_sms(**{name: value}))


def test_the_re_split_replay_is_a_bad_request() -> None:
    """``MessageSid`` + ``MessagingServiceSid`` joined into one value keeps the signature."""
    fields = inbound_sms()
    fields["MessageSid"] += "MessagingServiceSid" + fields.pop("MessagingServiceSid")
    with pytest.raises(BadRequestError, match="MessageSid"):
        inbound(fields)


def test_message_sid_aliases_must_agree() -> None:
    with pytest.raises(BadRequestError, match="differ"):
        inbound(inbound_sms(SmsSid="SM" + "f" * 32))


def test_an_unknown_sid_prefix_is_accepted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    sid = "XY" + "0" * 32
    with caplog.at_level("INFO", "webhook_kit"):
        message = inbound(inbound_sms(MessageSid=sid, SmsSid=sid, SmsMessageSid=sid))
    assert message.message_sid == sid
    assert f"MessageSid {sid} with a prefix Twilio does not document" in caplog.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("MessageStatus", "deliveredRawDlrDoneDate2611231530"),
        ("MessageStatus", "Delivered"),
        ("ErrorCode", "30003ErrorMessagex"),
        ("ErrorCode", "9" * 5000),
        ("EventType", "READFrom+15005550006"),
    ],
)
def test_status_key_fields_must_have_their_shape(field: str, value: str) -> None:
    """Each is part of the idempotency key: a re-split value would be a new event."""
    with pytest.raises(BadRequestError, match=field):
        parse_status(Fields(status_callback(**{field: value}).items()))
