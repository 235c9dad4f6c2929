"""The IncomingPhoneNumber resource: a number's webhook settings, checked as Twilio does.

A :class:`~webhook_kit.emulator.state.Number` is what the emulator posts to when a handset
texts it (``sms_url`` with ``sms_method``, ``sms_fallback_url``) and where the status
callbacks of its replies go (``status_callback``). The REST resource, the control API, the
CLI and :meth:`Account.add_number` all write it through :func:`parse_settings`, so each
setting is checked in one place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from .model import API_VERSION, rfc2822
from .resource import E164_RE, bad, generic, is_url
from .state import Number

PHONE_NUMBER_SID_RE: Final = re.compile(r"^PN[0-9a-fA-F]{32}$")
METHODS: Final = ("GET", "POST")
#: Form field -> Number attribute, for the URLs (checked with :func:`is_url`).
URL_FIELDS: Final = {
    "SmsUrl": "sms_url",
    "SmsFallbackUrl": "fallback_url",
    "StatusCallback": "status_callback",
}
#: Form field -> Number attribute, for the methods (GET or POST).
METHOD_FIELDS: Final = {
    "SmsMethod": "sms_method",
    "SmsFallbackMethod": "sms_fallback_method",
    "StatusCallbackMethod": "status_callback_method",
}
MAX_FRIENDLY_NAME: Final = 64
#: North American toll-free area codes.
TOLL_FREE_AREAS: Final = frozenset({"800", "833", "844", "855", "866", "877", "888"})
#: The subresources that provision one type of number: path segment -> ``type``.
KINDS: Final = {"Local": "local", "Mobile": "mobile", "TollFree": "tollfree"}
#: Twilio's "21502 Invalid callback url", for any URL of a number it would never call.
BAD_URL: Final = 21502


def friendly(number: str) -> str:
    """Twilio's default friendly name: ``(808) 925-5327`` for a NANP number, else E.164."""
    digits = number[2:]
    if number.startswith("+1") and len(digits) == 10:
        return f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
    return number


def number_type(number: str) -> str:
    """``tollfree`` for a North American toll-free number, else ``local``."""
    return "tollfree" if number.startswith("+1") and number[2:5] in TOLL_FREE_AREAS else "local"


def parse_settings(form: Mapping[str, str], current: Number) -> Number:
    """``current`` with the settings ``form`` names changed; an empty URL clears it.

    Only the parameters present change (Twilio's partial update). Raises :class:`ApiError`
    with Twilio's code for the first bad value.
    """
    changes: dict[str, Any] = {}
    for field, attribute in URL_FIELDS.items():
        value = form.get(field)
        if value is None:
            continue
        if value and not is_url(value):
            raise bad(
                BAD_URL, f"Invalid {field}: {value[:100]!r} is not an http(s) URL with a valid host"
            )
        changes[attribute] = value or None
    for field, attribute in METHOD_FIELDS.items():
        value = form.get(field)
        if value is None:
            continue
        method = value.upper()
        if method not in METHODS:
            raise generic(field, value, "GET or POST")
        changes[attribute] = method
    name = form.get("FriendlyName")
    if name is not None:
        if len(name) > MAX_FRIENDLY_NAME:
            raise generic("FriendlyName", name[:20] + "...", "at most 64 characters")
        changes["friendly_name"] = name or friendly(current.number)
    return replace(current, **changes)


def check_number(value: str) -> str:
    """A ``PhoneNumber`` to provision: E.164 or Twilio's 21421."""
    number = value.strip()
    if not E164_RE.match(number):
        raise bad(21421, f"PhoneNumber {value!r} is invalid: give it in E.164, e.g. +15017122661")
    return number


def check_area_code(value: str) -> str:
    """A US/Canada area code (``NXX``) or Twilio's 21451."""
    if not re.fullmatch(r"[2-9]\d\d", value.strip()):
        raise bad(21451, f"Invalid area code {value!r}: give a three-digit US or Canada area code")
    return value.strip()


def matches(number: Number, phone_number: str | None, friendly_name: str | None) -> bool:
    """The list filters: ``PhoneNumber`` is partial, ``*`` any one digit; names are exact."""
    if friendly_name is not None and number.friendly_name != friendly_name:
        return False
    if phone_number is None:
        return True
    pattern = "".join(r"\d" if c == "*" else re.escape(c) for c in phone_number.strip())
    return re.search(pattern, number.number) is not None


def number_json(account_sid: str, number: Number) -> dict[str, Any]:
    """The IncomingPhoneNumber resource with the keys the official clients read."""
    return {
        "account_sid": account_sid,
        "address_requirements": "none",
        "address_sid": None,
        "api_version": API_VERSION,
        "beta": False,
        "bundle_sid": None,
        "capabilities": {"fax": False, "mms": True, "sms": True, "voice": True},
        "date_created": rfc2822(number.date_created),
        "date_updated": rfc2822(number.date_updated),
        "emergency_address_sid": None,
        "emergency_address_status": "unregistered",
        "emergency_status": "Inactive",
        "friendly_name": number.friendly_name,
        "identity_sid": None,
        "origin": "twilio",
        "phone_number": number.number,
        "sid": number.sid,
        "sms_application_sid": "",
        "sms_fallback_method": number.sms_fallback_method,
        "sms_fallback_url": number.fallback_url or "",
        "sms_method": number.sms_method,
        "sms_url": number.sms_url or "",
        "status": "in-use",
        "status_callback": number.status_callback or "",
        "status_callback_method": number.status_callback_method,
        "subresource_uris": {
            "assigned_add_ons": (
                f"/{API_VERSION}/Accounts/{account_sid}/IncomingPhoneNumbers/{number.sid}"
                "/AssignedAddOns.json"
            )
        },
        "trunk_sid": None,
        "type": number_type(number.number),
        "uri": f"/{API_VERSION}/Accounts/{account_sid}/IncomingPhoneNumbers/{number.sid}.json",
        "voice_application_sid": None,
        "voice_caller_id_lookup": False,
        "voice_fallback_method": "POST",
        "voice_fallback_url": None,
        "voice_method": "POST",
        "voice_receive_mode": "voice",
        "voice_url": None,
    }
