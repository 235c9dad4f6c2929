"""Messaging Services (``/v1/Services``): settings, sender pools, and how a sender is picked.

A service groups senders (phone numbers, short codes, alphanumeric sender IDs) and the
settings they share: the inbound URL and fallback, the status callback, the validity period.
A send through the service gets a sender from the pool (twilio-more.md §3.3): a short code
that reaches the recipient's country first; then the sender this recipient got before (sticky
sender); an alphanumeric ID outside the US and Canada; a number with the recipient's area code
(area-code geomatch, US/Canada); one in the recipient's country; a US number; any number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Final

from .model import country_of, iso8601
from .resource import bad, generic, is_url

SERVICE_BASE: Final = "/v1/Services"
SHORT_CODE_SID_RE: Final = re.compile(r"^SC[0-9a-fA-F]{32}$")
ALPHA_SENDER_SID_RE: Final = re.compile(r"^AI[0-9a-fA-F]{32}$")
ALPHA_SENDER_RE: Final = re.compile(r"^(?![0-9]+$)[A-Za-z0-9 +\-_&]{1,11}$")
METHODS: Final = ("GET", "POST")
USECASES: Final = ("notifications", "marketing", "verification", "discussion", "poll", "undeclared")
SCAN: Final = ("inherit", "enable", "disable")
#: Sender kinds, the subresource each is listed under, and its list key.
KINDS: Final = {
    "phone_number": ("PhoneNumbers", "phone_numbers"),
    "short_code": ("ShortCodes", "short_codes"),
    "alpha_sender": ("AlphaSenders", "alpha_senders"),
}
#: Form field -> service attribute, by type.
_URLS: Final = {
    "InboundRequestUrl": "inbound_request_url",
    "FallbackUrl": "fallback_url",
    "StatusCallback": "status_callback",
}
_METHODS: Final = {"InboundMethod": "inbound_method", "FallbackMethod": "fallback_method"}
_FLAGS: Final = {
    "StickySender": "sticky_sender",
    "MmsConverter": "mms_converter",
    "SmartEncoding": "smart_encoding",
    "FallbackToLongCode": "fallback_to_long_code",
    "AreaCodeGeomatch": "area_code_geomatch",
    "SynchronousValidation": "synchronous_validation",
    "UseInboundWebhookOnNumber": "use_inbound_webhook_on_number",
}


@dataclass(frozen=True, slots=True)
class MessagingService:
    """A Messaging Service's settings (``MG...``); defaults are Twilio's."""

    sid: str
    friendly_name: str
    date_created: float
    date_updated: float
    inbound_request_url: str | None = None
    inbound_method: str = "POST"
    fallback_url: str | None = None
    fallback_method: str = "POST"
    status_callback: str | None = None
    sticky_sender: bool = True
    mms_converter: bool = True
    smart_encoding: bool = True
    scan_message_content: str = "inherit"
    fallback_to_long_code: bool = True
    area_code_geomatch: bool = True
    validity_period: int = 36000
    synchronous_validation: bool = True
    usecase: str = "undeclared"
    use_inbound_webhook_on_number: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PoolSender:
    """One sender in a service's pool: a phone number, short code or alphanumeric ID."""

    sid: str
    service_sid: str
    kind: str
    address: str
    date_created: float
    #: ISO country it sends from ("" for an alphanumeric ID, which has none).
    country: str = ""

    def reaches(self, to: str) -> bool:
        """Whether this sender can send to ``to`` at all (alphanumeric IDs: not US/Canada)."""
        if self.kind == "alpha_sender":
            return not to.rpartition(":")[2].startswith("+1")
        if self.kind == "short_code":
            return self.country == country_of(to)
        return True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_service(form: Mapping[str, str], current: MessagingService) -> MessagingService:
    """``current`` with the settings ``form`` names changed (create and update alike)."""
    changes: dict[str, Any] = {}
    name = form.get("FriendlyName")
    if name is not None:
        if not name or len(name) > 64:
            raise generic("FriendlyName", name[:20], "1 to 64 characters")
        changes["friendly_name"] = name
    for field, attribute in _URLS.items():
        value = form.get(field)
        if value is not None:
            if value and not is_url(value):
                raise generic(field, value[:100], "an http(s) URL with a valid host")
            changes[attribute] = value or None
    for field, attribute in _METHODS.items():
        value = form.get(field)
        if value is not None:
            if value.upper() not in METHODS:
                raise generic(field, value, "GET or POST")
            changes[attribute] = value.upper()
    for field, attribute in _FLAGS.items():
        value = form.get(field)
        if value is not None:
            if value.lower() not in {"true", "false"}:
                raise generic(field, value, "true or false")
            changes[attribute] = value.lower() == "true"
    validity = form.get("ValidityPeriod")
    if validity is not None:
        seconds = int(validity) if validity.isascii() and validity.isdigit() else 0
        if not 1 <= seconds <= 36000:
            raise bad(21624, "Validity period can only be set to integers between 1 and 36,000")
        changes["validity_period"] = seconds
    for field, attribute, allowed in (
        ("Usecase", "usecase", USECASES),
        ("ScanMessageContent", "scan_message_content", SCAN),
    ):
        value = form.get(field)
        if value is not None:
            if value not in allowed:
                raise generic(field, value, " or ".join(allowed))
            changes[attribute] = value
    return replace(current, **changes)


def pick(
    service: MessagingService, pool: Sequence[PoolSender], to: str, sticky: str | None
) -> PoolSender | None:
    """The sender a send to ``to`` goes out from (see the module's order), or None."""
    usable = [s for s in pool if s.reaches(to)]
    country = country_of(to)
    for sender in usable:
        if sender.kind == "short_code":
            return sender
    if service.sticky_sender and sticky is not None:
        for sender in usable:
            if sender.address == sticky:
                return sender
    numbers = [s for s in usable if s.kind == "phone_number"]
    if not to.rpartition(":")[2].startswith("+1"):
        for sender in usable:
            if sender.kind == "alpha_sender":
                return sender
    if service.area_code_geomatch and country == "US":
        area = to.rpartition(":")[2][2:5]
        for sender in numbers:
            if sender.address.startswith("+1" + area):
                return sender
    for wanted in (country, "US"):
        for sender in numbers:
            if sender.country == wanted:
                return sender
    return numbers[0] if numbers else None


def service_json(service: MessagingService, account_sid: str, base: str) -> dict[str, Any]:
    """The Service resource (messaging v1) with the keys the official clients read."""
    url = f"{base}{SERVICE_BASE}/{service.sid}"
    data = service.to_dict()
    for key in ("sid", "date_created", "date_updated"):
        data.pop(key)
    return {
        "account_sid": account_sid,
        "sid": service.sid,
        "date_created": iso8601(service.date_created),
        "date_updated": iso8601(service.date_updated),
        **data,
        "us_app_to_person_registered": False,
        "url": url,
        "links": {
            "phone_numbers": f"{url}/PhoneNumbers",
            "short_codes": f"{url}/ShortCodes",
            "alpha_senders": f"{url}/AlphaSenders",
            "messages": f"{url}/Messages",
            "us_app_to_person": f"{url}/Compliance/Usa2p",
            "us_app_to_person_usecases": f"{url}/Compliance/Usa2p/Usecases",
            "channel_senders": f"{url}/ChannelSenders",
            "destination_alpha_senders": f"{url}/DestinationAlphaSenders",
        },
    }


def sender_json(sender: PoolSender, account_sid: str, base: str) -> dict[str, Any]:
    """A PhoneNumber, ShortCode or AlphaSender of a service's pool."""
    path, _ = KINDS[sender.kind]
    stamp = iso8601(sender.date_created)
    data: dict[str, Any] = {
        "sid": sender.sid,
        "account_sid": account_sid,
        "service_sid": sender.service_sid,
        "date_created": stamp,
        "date_updated": stamp,
        "url": f"{base}{SERVICE_BASE}/{sender.service_sid}/{path}/{sender.sid}",
    }
    if sender.kind == "alpha_sender":
        return {**data, "alpha_sender": sender.address, "capabilities": ["SMS"]}
    key = "phone_number" if sender.kind == "phone_number" else "short_code"
    capabilities = ["SMS", "MMS", "Voice"] if sender.kind == "phone_number" else ["SMS", "MMS"]
    return {
        **data,
        key: sender.address,
        "country_code": sender.country,
        "capabilities": capabilities,
    }
