"""The emulator's records and their JSON exactly as Twilio's REST API writes it.

A :class:`EmulatedMessage` holds everything the emulator knows about one message, including
what the REST resource never shows (its planned outcome, its callback URL); :func:`message_json`
turns it into the 20 keys of the spec's ``api.v2010.account.message`` schema, with Twilio's
types (``num_segments``/``num_media`` as strings, RFC 2822 dates, integer ``error_code``).
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache
from typing import Any, Final

from ..process import process
from ..status import ERROR_CATALOGUE, MessageStatus

API_VERSION: Final = "2010-04-01"
ERRORS_URL: Final = "https://www.twilio.com/docs/errors/"

#: SID shapes from the spec's patterns.
ACCOUNT_SID_RE: Final = re.compile(r"^AC[0-9a-fA-F]{32}$")
MESSAGE_SID_RE: Final = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")
MEDIA_SID_RE: Final = re.compile(r"^ME[0-9a-fA-F]{32}$")
SERVICE_SID_RE: Final = re.compile(r"^MG[0-9a-fA-F]{32}$")
API_KEY_SID_RE: Final = re.compile(r"^SK[0-9a-fA-F]{32}$")

#: Channel address prefixes Twilio accepts in ``To``/``From`` besides plain numbers.
CHANNELS: Final = ("whatsapp", "messenger", "rcs")

#: Titles for the asynchronous codes the life cycle can set, beyond the kit's catalogue.
_EXTRA_TITLES: Final = {
    30010: "Message price exceeds max price",
    30036: "Validity Period Expired",
}


def whole_number(raw: str | None, digits: int = 9) -> int | None:
    """``raw`` as an int if it is 1 to ``digits`` ASCII digits, else None (``"²"`` is not)."""
    if raw is None or not 0 < len(raw) <= digits or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)


#: SIDs need to be unique, not secret: a generator seeded from the OS (again in a forked
#: child) never releases the GIL, as ``os.urandom`` does on every call.
_sids = random.Random(os.urandom(32))
process.at_fork(lambda: _sids.seed(os.urandom(32)))


def random_hex() -> str:
    """32 random hex digits (SIDs, idempotency tokens)."""
    return f"{_sids.getrandbits(128):032x}"


def new_sid(prefix: str) -> str:
    """A random SID of Twilio's shape: two letters and 32 hex digits."""
    return prefix + random_hex()


def rfc2822(seconds: float | None) -> str | None:
    """Twilio's date format, e.g. ``Thu, 24 Aug 2023 05:01:45 +0000``."""
    return None if seconds is None else _rfc2822_second(int(seconds))


@lru_cache(maxsize=256)
def _rfc2822_second(seconds: int) -> str:
    """Formatting is slow, and a burst of messages shares its seconds."""
    return format_datetime(datetime.fromtimestamp(seconds, UTC))


def iso8601(seconds: float) -> str:
    """The v1 APIs' date format (Messaging Services, Content), e.g. ``2015-07-30T20:00:00Z``."""
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: Country calling codes the emulator names (``FromCountry``, sender geomatching).
COUNTRIES: Final = {
    "+1": "US",
    "+31": "NL",
    "+33": "FR",
    "+34": "ES",
    "+39": "IT",
    "+44": "GB",
    "+49": "DE",
    "+52": "MX",
    "+55": "BR",
    "+61": "AU",
    "+81": "JP",
    "+91": "IN",
}


def country_of(address: str) -> str:
    """The ISO country of an E.164 number (or channel address), "" when unknown."""
    number = address.rpartition(":")[2]
    for length in (4, 3, 2):
        country = COUNTRIES.get(number[:length])
        if country is not None:
            return country
    return ""


def error_title(code: int) -> str:
    """Twilio's short title for an asynchronous error code (the ``error_message`` field)."""
    entry = ERROR_CATALOGUE.get(code)
    if entry:
        return entry[0]
    return _EXTRA_TITLES.get(code, f"Error {code}")


def channel_of(address: str) -> str | None:
    """``whatsapp`` for ``whatsapp:+1...``; None for a plain number or sender ID."""
    prefix, colon, _ = address.partition(":")
    return prefix if colon and prefix in CHANNELS else None


@dataclass(slots=True)
class MediaRecord:
    """One media item of a message (``ME...``), as the Media subresource lists it."""

    sid: str
    message_sid: str
    url: str
    content_type: str
    date_created: float


@dataclass(slots=True)
class EmulatedMessage:
    """A message and the emulator's private plan for it (outcome, callback URL, limits)."""

    sid: str
    account_sid: str
    direction: str
    from_: str
    to: str
    body: str
    status: str
    date_created: float
    date_updated: float
    date_sent: float | None = None
    num_segments: int = 1
    num_media: int = 0
    messaging_service_sid: str | None = None
    error_code: int | None = None
    price: str | None = None
    status_callback: str | None = None
    #: Final status the life cycle will reach, and its error code.
    outcome: str = "delivered"
    outcome_error: int | None = None
    validity_period: int | None = None
    max_price: float | None = None
    send_at: float | None = None
    #: Message Feedback: ``unconfirmed`` once sent with ProvideFeedback, then as reported.
    feedback: str | None = None
    feedback_at: float | None = None
    #: When it leaves its sender's queue; ``expired``: its validity runs out first (30036).
    departs_at: float | None = None
    expired: bool = False
    #: The template it was rendered from (a WhatsApp template may open a conversation).
    content_sid: str | None = None
    #: Every status the message took, with when: ``[[status, epoch seconds], ...]``.
    history: list[list[Any]] = field(default_factory=list)

    def set_status(self, status: str, at: float) -> None:
        """Move to ``status`` at ``at``, keeping the step in :attr:`history`."""
        self.status = status
        self.date_updated = at
        self.history.append([status, at])

    @property
    def channel(self) -> str | None:
        """The channel prefix (``whatsapp``...) of the handset side, or None for SMS/MMS."""
        return channel_of(self.to) or channel_of(self.from_)

    @property
    def is_final(self) -> bool:
        """True once the life cycle has nothing left to do but a read receipt."""
        return MessageStatus(self.status).is_final

    def copy(self) -> EmulatedMessage:
        """An independent copy (records are mutated in place, then saved)."""
        return EmulatedMessage.from_dict(self.to_dict(), copy=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the SQLite state (flat but for the history, so no deep copy)."""
        return {name: getattr(self, name) for name in _RECORD_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, copy: bool = False) -> EmulatedMessage:
        """The record of ``data``; ``copy``: sharing no list with it (the history)."""
        if copy:
            data = {**data, "history": [list(step) for step in data["history"]]}
        return cls(**data)


_RECORD_FIELDS = tuple(f.name for f in fields(EmulatedMessage))


def message_json(record: EmulatedMessage) -> dict[str, Any]:
    """The Message resource as Twilio returns it: exactly the spec's keys and types."""
    base = f"/{API_VERSION}/Accounts/{record.account_sid}/Messages/{record.sid}"
    error = record.error_code
    return {
        "account_sid": record.account_sid,
        "api_version": API_VERSION,
        "body": record.body,
        "date_created": rfc2822(record.date_created),
        "date_sent": rfc2822(record.date_sent),
        "date_updated": rfc2822(record.date_updated),
        "direction": record.direction,
        "error_code": error,
        "error_message": error_title(error) if error is not None else None,
        "from": record.from_ or None,  # a Messaging Service picks its sender when queued
        "messaging_service_sid": record.messaging_service_sid,
        "num_media": str(record.num_media),
        "num_segments": str(record.num_segments),
        "price": record.price,
        "price_unit": "USD" if record.price is not None else None,
        "sid": record.sid,
        "status": record.status,
        "subresource_uris": {"media": f"{base}/Media.json", "feedback": f"{base}/Feedback.json"},
        "to": record.to,
        "uri": f"{base}.json",
    }


def feedback_json(record: EmulatedMessage) -> dict[str, Any]:
    """The Message Feedback resource (twilio-more.md §8): answered with 200, not 201."""
    at = record.feedback_at if record.feedback_at is not None else record.date_created
    return {
        "account_sid": record.account_sid,
        "date_created": rfc2822(at),
        "date_updated": rfc2822(at),
        "message_sid": record.sid,
        "outcome": record.feedback or "unconfirmed",
        "uri": f"/{API_VERSION}/Accounts/{record.account_sid}/Messages/{record.sid}/Feedback.json",
    }


def media_json(account_sid: str, media: MediaRecord) -> dict[str, Any]:
    """The Media resource: the spec's 7 keys."""
    return {
        "account_sid": account_sid,
        "content_type": media.content_type,
        "date_created": rfc2822(media.date_created),
        "date_updated": rfc2822(media.date_created),
        "parent_sid": media.message_sid,
        "sid": media.sid,
        "uri": (
            f"/{API_VERSION}/Accounts/{account_sid}/Messages/{media.message_sid}"
            f"/Media/{media.sid}.json"
        ),
    }
