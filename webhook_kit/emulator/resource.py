"""The Message resource's parameters, checked the way Twilio checks them.

Each bad input gets the code Twilio documents for it (``https://www.twilio.com/docs/errors/``),
and the test credentials' magic numbers (``+15005550001``...) fail exactly as they do there,
so an app moves between the emulator and test credentials without changes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import urlsplit

from .errors import ApiError
from .model import CHANNELS, SERVICE_SID_RE, whole_number
from .state import Filters

E164_RE: Final = re.compile(r"^\+[1-9]\d{1,14}$")
SHORT_CODE_RE: Final = re.compile(r"^\d{3,8}$")
ALPHANUMERIC_RE: Final = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
CONTENT_SID_RE: Final = re.compile(r"^HX[0-9a-fA-F]{32}$")
APPLICATION_SID_RE: Final = re.compile(r"^AP[0-9a-fA-F]{32}$")
_CHANNEL_ADDRESS_RE: Final = re.compile(r"^[A-Za-z0-9_.+-]{1,100}$")

#: Test credentials' magic ``From`` numbers and ``To`` numbers: (code, message).
MAGIC_FROM: Final = {
    "+15005550001": (21212, "The 'From' number +15005550001 is not a valid phone number."),
    "+15005550007": (
        21606,
        "The From phone number +15005550007 is not a valid, SMS-capable inbound phone number "
        "or short code for your account.",
    ),
    "+15005550008": (
        21611,
        "This 'From' number has exceeded the maximum number of queued messages",
    ),
}
MAGIC_TO: Final = {
    "+15005550001": (21211, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550002": (21612, "The 'To' phone number: +15005550002, is not currently reachable."),
    "+15005550003": (
        21408,
        "Permission to send an SMS has not been enabled for the region indicated by the "
        "'To' number: +15005550003.",
    ),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
}

MAX_BODY: Final = 1600
MAX_MEDIA: Final = 10
MAX_URL: Final = 4000
#: Twilio's scheduling window for ``SendAt``: more than 5 minutes, at most 35 days ahead.
SCHEDULE_MIN: Final = 300
SCHEDULE_MAX: Final = 35 * 24 * 3600
_BOOLEANS: Final = {"true": True, "false": False}
_ENUMS: Final = {
    "ContentRetention": ("retain", "discard"),
    "AddressRetention": ("retain", "obfuscate"),
    "TrafficType": ("free",),
    "RiskCheck": ("enable", "disable"),
}
_FLAGS: Final = ("ProvideFeedback", "ForceDelivery", "SmartEncoded", "SendAsMms", "ShortenUrls")


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A checked ``POST Messages.json``."""

    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    media_urls: tuple[str, ...]
    status_callback: str | None
    validity_period: int | None
    max_price: float | None
    send_at: float | None
    smart_encoded: bool
    provide_feedback: bool = False
    #: A template to render (``HX...``) and its variables.
    content_sid: str | None = None
    content_variables: tuple[tuple[str, str], ...] = ()


def bad(code: int, message: str) -> ApiError:
    return ApiError(code, message, 400)


def generic(name: str, value: str, expected: str) -> ApiError:
    return bad(20001, f"Invalid parameter {name}: {value!r} is not {expected}")


def is_address(value: str) -> bool:
    """E.164, or a channel address (``whatsapp:+1...``, ``messenger:<id>``, ``rcs:...``)."""
    if E164_RE.match(value):
        return True
    prefix, colon, rest = value.partition(":")
    if not colon or prefix not in CHANNELS:
        return False
    return bool(E164_RE.match(rest) if prefix != "messenger" else _CHANNEL_ADDRESS_RE.match(rest))


def is_sender(value: str) -> bool:
    """An address, a short code or an alphanumeric sender ID."""
    return is_address(value) or bool(SHORT_CODE_RE.match(value) or ALPHANUMERIC_RE.match(value))


def is_url(value: str) -> bool:
    """An absolute http(s) URL Twilio would call: a host without underscores, a valid port."""
    if len(value) > MAX_URL:
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return False
    host = parts.hostname or ""
    return parts.scheme in {"http", "https"} and bool(host) and "_" not in host


def parse_create(form: Mapping[str, str], media: Sequence[str], now: float) -> CreateRequest:
    """Check a create form the way Twilio does: the first problem found is the answer."""
    to = form.get("To", "").strip()
    if not to:
        raise bad(21604, "A 'To' phone number is required.")
    from_ = form.get("From", "").strip() or None
    service = form.get("MessagingServiceSid", "").strip() or None
    if from_ is not None and from_.startswith("MG"):
        service, from_ = from_, None  # Twilio takes a Messaging Service SID in From too
    if from_ is None and service is None:
        raise bad(21603, "A 'From' or 'MessagingServiceSid' parameter is required")
    if service is not None and not SERVICE_SID_RE.match(service):
        raise bad(21705, f"The Messaging Service Sid {service} is invalid.")
    if from_ is not None:
        if from_ in MAGIC_FROM:
            raise bad(*MAGIC_FROM[from_])
        if not is_sender(from_):
            raise bad(21212, f"The 'From' number {from_} is not a valid phone number.")
    if to in MAGIC_TO:
        raise bad(*MAGIC_TO[to])
    if not is_address(to):
        raise bad(21211, f"The 'To' number {to} is not a valid phone number.")
    if from_ == to:
        raise bad(21266, "'To' and 'From' number cannot be the same")
    body = form.get("Body", "")
    content_sid = form.get("ContentSid", "")
    if content_sid and not CONTENT_SID_RE.match(content_sid):
        raise bad(21655, f"The ContentSid {content_sid[:40]!r} is Invalid: it is HX + 32 hex")
    variables = _content_variables(form.get("ContentVariables"))
    if form.get("ContentVariables") is not None and not content_sid:
        raise bad(21654, "ContentVariables is only valid with a ContentSid")
    if not body and not media and not content_sid:
        if service is not None and from_ is None:
            raise bad(21619, "A text message body, media URL or Content SID is required")
        raise bad(21602, "Message body is required.")
    if len(body) > MAX_BODY:
        raise bad(21617, "The concatenated message body exceeds the 1600 character limit.")
    if len(media) > MAX_MEDIA:
        raise bad(21623, "Number of media files exceeds allowed limit (10).")
    for url in media:
        if not is_url(url):
            raise bad(21620, f"Invalid media URL(s): {url}")
    callback = form.get("StatusCallback") or None
    if callback is not None and not is_url(callback):
        raise bad(21609, "The StatusCallback URL is not a valid URL.")
    _check_misc(form)
    return CreateRequest(
        to=to,
        from_=from_,
        messaging_service_sid=service,
        body=body,
        media_urls=tuple(media),
        status_callback=callback,
        validity_period=_validity(form.get("ValidityPeriod")),
        max_price=_max_price(form.get("MaxPrice")),
        send_at=_send_at(form, service, now),
        smart_encoded=form.get("SmartEncoded", "").lower() == "true",
        provide_feedback=form.get("ProvideFeedback", "").lower() == "true",
        content_sid=content_sid or None,
        content_variables=variables,
    )


def _content_variables(raw: str | None) -> tuple[tuple[str, str], ...]:
    """``ContentVariables``: a JSON object of non-empty text (numbers taken as text), or 21656."""
    if raw is None:
        return ()
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):  # deeply nested arrays exhaust the parser
        parsed = None
    if not isinstance(parsed, dict) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) and str(v) != ""
        for v in parsed.values()
    ):
        raise bad(21656, "The ContentVariables Parameter is invalid: send a JSON object of text")
    return tuple((str(k), str(v)) for k, v in parsed.items())


def _check_misc(form: Mapping[str, str]) -> None:
    for name in _FLAGS:
        value = form.get(name)
        if value is not None and value.lower() not in _BOOLEANS:
            raise generic(name, value, "true or false")
    for name, allowed in _ENUMS.items():
        value = form.get(name)
        if value is not None and value not in allowed:
            if name == "ContentRetention":
                raise bad(30029, f"Invalid ContentRetention {value!r}: use retain or discard")
            raise generic(name, value, " or ".join(allowed))
    attempt = form.get("Attempt")
    if attempt is not None and whole_number(attempt) is None:
        raise generic("Attempt", attempt, "a whole number")
    application = form.get("ApplicationSid")
    if application is not None and not APPLICATION_SID_RE.match(application):
        raise generic("ApplicationSid", application, "an Application SID (AP...)")


def _validity(value: str | None) -> int | None:
    if value is None:
        return None
    seconds = whole_number(value)
    if seconds is None or not 1 <= seconds <= 36000:
        raise bad(21624, "Validity period can only be set to integers between 1 and 36,000 seconds")
    return seconds


def _max_price(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        price = float(value)
    except ValueError:
        raise generic("MaxPrice", value, "a number") from None
    if not 0 <= price < float("inf"):
        raise generic("MaxPrice", value, "a positive number")
    return price


def _send_at(form: Mapping[str, str], service: str | None, now: float) -> float | None:
    schedule = form.get("ScheduleType")
    if schedule is None:
        return None
    if schedule != "fixed":
        raise generic("ScheduleType", schedule, "fixed")
    if service is None:
        raise bad(35118, "MessagingServiceSid is required to schedule a message")
    raw = form.get("SendAt")
    if not raw:
        raise bad(35111, "SendAt timestamp is missing")
    when = parse_datetime(raw)
    if when is None or not SCHEDULE_MIN < when - now <= SCHEDULE_MAX:
        raise bad(
            35115,
            "Scheduling does not support this timestamp: SendAt must be an ISO 8601 time more "
            "than 5 minutes and at most 35 days ahead",
        )
    return when


def parse_datetime(value: str) -> float | None:
    """Epoch seconds of an ISO 8601 date-time (UTC when it has no offset), else None."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def date_bounds(query: Mapping[str, str], name: str) -> tuple[float | None, float | None]:
    """Inclusive epoch bounds from ``name``, ``name<`` and ``name>`` (date or date-time).

    A date alone covers that whole day: ``DateSent=2026-01-02`` is that day, ``DateSent<`` on
    or before it, ``DateSent>`` on or after it. A date-time bound is inclusive to the second.
    """
    lower: float | None = None
    upper: float | None = None
    for key in (name, f"{name}<", f"{name}>"):
        raw = query.get(key)
        if raw is None:
            continue
        start, end = _day_or_instant(key, raw)
        if key != f"{name}<":
            lower = start if lower is None else max(lower, start)
        if key != f"{name}>":
            upper = end if upper is None else min(upper, end)
    return lower, upper


def parse_filters(query: Mapping[str, str]) -> Filters:
    """The Messages list filters: ``To``, ``From`` and ``DateSent`` / ``<`` / ``>``."""
    lower, upper = date_bounds(query, "DateSent")
    return Filters(
        to=query.get("To") or None,
        from_=query.get("From") or None,
        sent_from=lower,
        sent_until=upper,
    )


def _day_or_instant(name: str, raw: str) -> tuple[float, float]:
    value = raw.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise generic(name, raw, "a date (YYYY-MM-DD) or date-time") from None
        return day.timestamp(), (day + timedelta(days=1)).timestamp() - 1e-6
    instant = parse_datetime(value)
    if instant is None:
        raise generic(name, raw, "a date (YYYY-MM-DD) or date-time")
    return instant, instant + 0.999999
