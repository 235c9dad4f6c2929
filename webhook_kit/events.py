"""Typed, immutable events built from Twilio's form fields.

Twilio adds parameters without notice, so an event keeps every field it received in
``raw`` (a read-only multi-dict) and types the ones it knows. Only the fields that identify
a request are required; anything else that is missing or malformed reads as ``None``.

The fields that identify a request must also have Twilio's shape, because the signature
cannot tell where one field ends: Twilio signs ``name1 + value1 + name2 + value2 ...``, so a
captured request re-split at another boundary (``MessageSid`` = ``SM...MessagingServiceSidMG...``)
carries the same valid signature. Fixed-shape SIDs, statuses and error codes make every such
re-split of an identifying field a ``400`` instead of a second, different event.
"""

from __future__ import annotations

import logging
import re
from collections.abc import ItemsView, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar, overload

from .errors import BadRequestError
from .status import DeliveryFailure, MessageStatus, OpenStrEnum

_T = TypeVar("_T")
log = logging.getLogger("webhook_kit")

#: A SID: two capital letters and 32 hex digits (Twilio's OpenAPI patterns).
_SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")
_MESSAGE_PREFIXES = ("SM", "MM")
#: The three names of a message's own SID (they must agree).
_MESSAGE_SID_FIELDS = ("MessageSid", "SmsMessageSid", "SmsSid")
#: Other SID fields of messaging webhooks, and the prefixes Twilio's API documents for each.
_OTHER_SID_FIELDS = (
    ("AccountSid", ("AC",)),
    ("MessagingServiceSid", ("MG",)),
    ("OriginalRepliedMessageSid", _MESSAGE_PREFIXES),
)
_KNOWN_STATUSES = frozenset(status.value for status in MessageStatus)
_STATUS = re.compile(r"[a-z][a-z_]*")
_EVENT_TYPE = re.compile(r"[A-Z][A-Z_]*")
#: A count or code as Twilio sends one (NumSegments, NumMedia, ErrorCode): 0 to 999999999,
#: what every store keeps as an integer.
NUMBER = re.compile(r"[0-9]{1,9}")


class Fields(Mapping[str, str]):
    """Every field of a request, read-only, in the order received.

    ``fields[name]`` and ``fields.get(name)`` give the first value, ``getlist(name)`` every
    value, and ``items(multi=True)`` every pair, as werkzeug's ``MultiDict`` does. Built on
    every request, so it only wraps the pairs and a dict of first values.
    """

    __slots__ = ("_first", "_pairs")

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._pairs = tuple(pairs)
        first = dict(self._pairs)  # keeps first-seen order, but the *last* value of a name
        if len(first) != len(self._pairs):
            for name, value in reversed(self._pairs):
                first[name] = value
        self._first = first

    def __getitem__(self, name: str) -> str:
        return self._first[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def __contains__(self, name: object) -> bool:
        return name in self._first

    @overload
    def get(self, name: str, /) -> str | None: ...
    @overload
    def get(self, name: str, default: str, /) -> str: ...
    @overload
    def get(self, name: str, default: _T, /) -> str | _T: ...
    def get(self, name: str, default: object = None, /) -> object:
        return self._first.get(name, default)

    def getlist(self, name: str) -> list[str]:
        """Every value of ``name``, in order (empty if absent)."""
        return [value for key, value in self._pairs if key == name]

    @overload
    def items(self, multi: Literal[False] = False) -> ItemsView[str, str]: ...
    @overload
    def items(self, multi: Literal[True]) -> tuple[tuple[str, str], ...]: ...
    def items(self, multi: bool = False) -> ItemsView[str, str] | tuple[tuple[str, str], ...]:
        """First values by name, or with ``multi=True`` every pair as received."""
        return self._pairs if multi else self._first.items()

    def to_dict(self) -> dict[str, str]:
        return dict(self._first)

    def __repr__(self) -> str:
        return f"Fields({list(self._pairs)!r})"


class Channel(OpenStrEnum):
    """The channel a message travelled on, derived from its address prefix."""

    SMS = "sms"
    MMS = "mms"
    WHATSAPP = "whatsapp"
    MESSENGER = "messenger"
    RCS = "rcs"


class OptOutType(OpenStrEnum):
    """What Advanced Opt-Out matched; Twilio has already answered such a message."""

    STOP = "STOP"
    START = "START"
    HELP = "HELP"


@dataclass(frozen=True, slots=True)
class InboundMedia:
    """One attachment of an inbound message: ``MediaUrl{N}`` with its ``MediaContentType{N}``.

    (The ``<Media>`` noun of a TwiML reply is :class:`webhook_kit.twiml.Media`.)
    """

    url: str
    content_type: str


@dataclass(frozen=True, slots=True)
class Place:
    """What Twilio could look up about one end's number; every part may be missing."""

    city: str | None
    state: str | None
    zip: str | None
    country: str | None


@dataclass(frozen=True, slots=True)
class Location:
    """A location shared on WhatsApp."""

    latitude: float | None
    longitude: float | None
    address: str | None
    label: str | None


@dataclass(frozen=True, slots=True)
class Referral:
    """The Click-to-WhatsApp advertisement a conversation started from."""

    body: str | None
    headline: str | None
    source_id: str | None
    source_type: str | None
    source_url: str | None
    media_id: str | None
    media_content_type: str | None
    media_url: str | None
    num_media: int | None
    ctwa_clid: str | None


@dataclass(frozen=True, slots=True)
class RepliedMessage:
    """The earlier message a WhatsApp user replied to."""

    sid: str | None
    sender: str | None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message someone sent to one of your numbers or senders.

    Grouped extras (``from_place``, ``location``, ``referral``, ...) are computed from
    ``raw`` when read, which keeps building the event cheap on every request.
    """

    raw: Fields
    message_sid: str
    from_: str
    to: str
    body: str
    account_sid: str | None
    messaging_service_sid: str | None
    num_segments: int | None
    media: tuple[InboundMedia, ...]
    channel: Channel
    opt_out_type: OptOutType | None
    #: The regex match of the ``pattern`` route that picked the handler, else None.
    match: re.Match[str] | None = None

    @property
    def num_media(self) -> int:
        return len(self.media)

    @property
    def sms_status(self) -> str | None:
        return self.raw.get("SmsStatus")

    @property
    def api_version(self) -> str | None:
        return self.raw.get("ApiVersion")

    @property
    def from_place(self) -> Place:
        return _place(self.raw, "From")

    @property
    def to_place(self) -> Place:
        return _place(self.raw, "To")

    @property
    def profile_name(self) -> str | None:
        return self.raw.get("ProfileName")

    @property
    def wa_id(self) -> str | None:
        return self.raw.get("WaId")

    @property
    def forwarded(self) -> bool:
        return self.raw.get("Forwarded") == "true"

    @property
    def frequently_forwarded(self) -> bool:
        return self.raw.get("FrequentlyForwarded") == "true"

    @property
    def button_text(self) -> str | None:
        return self.raw.get("ButtonText")

    @property
    def button_payload(self) -> str | None:
        return self.raw.get("ButtonPayload")

    @property
    def message_type(self) -> str | None:
        return self.raw.get("MessageType")

    @property
    def location(self) -> Location | None:
        raw = self.raw
        if not any(name in raw for name in ("Latitude", "Longitude", "Address", "Label")):
            return None
        return Location(
            _float(raw.get("Latitude")),
            _float(raw.get("Longitude")),
            raw.get("Address"),
            raw.get("Label"),
        )

    @property
    def referral(self) -> Referral | None:
        raw = self.raw
        if not any(name.startswith("Referral") for name in raw):
            return None
        return Referral(
            raw.get("ReferralBody"),
            raw.get("ReferralHeadline"),
            raw.get("ReferralSourceId"),
            raw.get("ReferralSourceType"),
            raw.get("ReferralSourceUrl"),
            raw.get("ReferralMediaId"),
            raw.get("ReferralMediaContentType"),
            raw.get("ReferralMediaUrl"),
            _int(raw.get("ReferralNumMedia")),
            raw.get("ReferralCtwaClid"),
        )

    @property
    def replied_to(self) -> RepliedMessage | None:
        sid = self.raw.get("OriginalRepliedMessageSid")
        sender = self.raw.get("OriginalRepliedMessageSender")
        if sid is None and sender is None:
            return None
        return RepliedMessage(sid, sender)


@dataclass(frozen=True, slots=True)
class FallbackRequest(InboundMessage):
    """An inbound message sent to the fallback URL because the primary URL failed."""

    error_code: int | None = None
    error_url: str | None = None


@dataclass(frozen=True, slots=True)
class StatusCallback:
    """A delivery status update for a message you sent."""

    raw: Fields
    message_sid: str
    status: MessageStatus
    account_sid: str | None
    from_: str | None
    to: str | None
    error: DeliveryFailure | None
    #: ``EventType``: ``READ`` for read receipts on channels that send them.
    event_type: str | None
    channel: Channel | None

    @property
    def messaging_service_sid(self) -> str | None:
        return self.raw.get("MessagingServiceSid")

    @property
    def raw_dlr_done_date(self) -> datetime | None:
        """The carrier's Done Date (``YYMMDDhhmm``); it carries no time zone, so none is set."""
        return _dlr_date(self.raw.get("RawDlrDoneDate"))

    @property
    def channel_install_sid(self) -> str | None:
        return self.raw.get("ChannelInstallSid")

    @property
    def channel_status_message(self) -> str | None:
        return self.raw.get("ChannelStatusMessage")

    @property
    def channel_prefix(self) -> str | None:
        return self.raw.get("ChannelPrefix")

    @property
    def api_version(self) -> str | None:
        return self.raw.get("ApiVersion")


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One CloudEvent of an Event Streams batch, as ``@kit.on_event`` handlers receive it.

    The envelope's attributes are typed; ``data`` is the payload and ``raw`` the whole
    event, each exactly as sent (read-only at the top level).
    """

    id: str
    #: e.g. ``com.twilio.messaging.message.delivered``.
    type: str
    source: str
    #: When Twilio says the event happened; None when absent or not ISO 8601.
    time: datetime | None
    dataschema: str | None
    data: Mapping[str, Any]
    raw: Mapping[str, Any]

    @property
    def message_sid(self) -> str | None:
        """``data.messageSid`` of messaging events."""
        sid = self.data.get("messageSid")
        return sid if isinstance(sid, str) else None


Event = InboundMessage | StatusCallback


def parse_inbound(raw: Fields) -> InboundMessage:
    """Build an :class:`InboundMessage`; ``BadRequestError`` if an identifying field is missing."""
    return InboundMessage(*_inbound_fields(raw))


def parse_fallback(raw: Fields) -> FallbackRequest:
    """Build a :class:`FallbackRequest` (the inbound fields plus ``ErrorCode``/``ErrorUrl``)."""
    return FallbackRequest(
        *_inbound_fields(raw),
        error_code=_int(raw.get("ErrorCode")),
        error_url=raw.get("ErrorUrl"),
    )


def parse_status(raw: Fields) -> StatusCallback:
    """Build a :class:`StatusCallback`; ``BadRequestError`` without MessageSid/MessageStatus.

    Also ``BadRequestError`` when a field of its idempotency key has the wrong shape: a SID,
    ``MessageStatus`` (lower-case word), ``EventType`` (upper-case word), ``ErrorCode``
    (digits).
    """
    sid = _message_sid(raw)
    status = raw.get("MessageStatus") or raw.get("SmsStatus")
    if not sid or not status:
        missing = "MessageSid" if not sid else "MessageStatus"
        raise BadRequestError(f"missing {missing}: not a Twilio status callback")
    if status not in _KNOWN_STATUSES:  # the common case needs no pattern
        _check_shape("MessageStatus", _STATUS, status, "a lower-case word")
    _check_shape("EventType", _EVENT_TYPE, raw.get("EventType"), "an upper-case word")
    _check_shape("ErrorCode", NUMBER, raw.get("ErrorCode"), "a number")
    code = _int(raw.get("ErrorCode"))
    from_, to = raw.get("From"), raw.get("To")
    prefix = raw.get("ChannelPrefix")
    return StatusCallback(
        raw,
        sid,
        MessageStatus(status),
        raw.get("AccountSid"),
        from_,
        to,
        DeliveryFailure(code, raw.get("ErrorMessage")) if code else None,
        raw.get("EventType"),
        Channel(prefix.lower()) if prefix else _channel(from_ or to or "", 0),
    )


def _inbound_fields(
    raw: Fields,
) -> tuple[
    Fields,
    str,
    str,
    str,
    str,
    str | None,
    str | None,
    int | None,
    tuple[InboundMedia, ...],
    Channel,
    OptOutType | None,
]:
    sid = _message_sid(raw)
    from_ = raw.get("From")
    to = raw.get("To")
    if not sid or not from_ or not to:
        missing = "MessageSid" if not sid else "From" if not from_ else "To"
        raise BadRequestError(f"missing {missing}: not a Twilio message webhook")
    media = _media(raw)
    opt_out = raw.get("OptOutType")
    return (
        raw,
        sid,
        from_,
        to,
        raw.get("Body", ""),
        raw.get("AccountSid"),
        raw.get("MessagingServiceSid"),
        _int(raw.get("NumSegments")),
        media,
        _channel(from_, len(media)),
        OptOutType(opt_out.upper()) if opt_out else None,
    )


def _message_sid(raw: Fields) -> str | None:
    """The message's SID, after checking every SID field's shape and that the aliases agree."""
    sid = None
    for name in _MESSAGE_SID_FIELDS:
        value = raw.get(name)
        if not value:
            continue
        if sid is None:
            _check_sid(name, value, _MESSAGE_PREFIXES)
            sid = value
        elif value != sid:
            raise BadRequestError("MessageSid, SmsMessageSid and SmsSid differ: not from Twilio")
    for name, prefixes in _OTHER_SID_FIELDS:
        value = raw.get(name)
        if value:
            _check_sid(name, value, prefixes)
    return sid


def _check_sid(name: str, value: str, prefixes: tuple[str, ...]) -> None:
    if not _SID.fullmatch(value):
        raise BadRequestError(
            f"{name} {value[:40]!r} is not a Twilio SID (two capital letters and 32 hex digits)"
        )
    if value[:2] not in prefixes:
        log.info("accepted %s %s with a prefix Twilio does not document", name, value)


def _check_shape(name: str, shape: re.Pattern[str], value: str | None, what: str) -> None:
    if value and not shape.fullmatch(value):
        raise BadRequestError(f"{name} {value[:40]!r} is not {what}: not from Twilio")


def _media(raw: Fields) -> tuple[InboundMedia, ...]:
    # Trust the MediaUrl{N} fields over NumMedia: they are what the handler can fetch.
    if "MediaUrl0" not in raw:
        return ()
    items = []
    index = 0
    while (url := raw.get(f"MediaUrl{index}")) is not None:
        items.append(InboundMedia(url, raw.get(f"MediaContentType{index}", "")))
        index += 1
    return tuple(items)


def _channel(address: str, num_media: int) -> Channel:
    prefix, colon, _ = address.partition(":")
    if colon and prefix and not prefix.startswith("+"):
        return Channel(prefix.lower())
    return Channel.MMS if num_media else Channel.SMS


def _place(raw: Fields, end: str) -> Place:
    return Place(
        raw.get(f"{end}City"),
        raw.get(f"{end}State"),
        raw.get(f"{end}Zip"),
        raw.get(f"{end}Country"),
    )


def _int(value: str | None) -> int | None:
    """A :data:`NUMBER`; anything else (absent, not digits, too large to store) is unknown."""
    return int(value) if value is not None and NUMBER.fullmatch(value) else None


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _dlr_date(value: str | None) -> datetime | None:
    if value is None or len(value) != 10 or not value.isdigit():
        return None
    try:
        return datetime.strptime(value, "%y%m%d%H%M")
    except ValueError:
        return None
