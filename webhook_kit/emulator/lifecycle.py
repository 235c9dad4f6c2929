"""How an outbound message moves through its statuses, and what each status callback carries.

queued (or accepted with a Messaging Service, or scheduled) -> sending -> sent -> delivered,
with ``read`` after delivery on channels that report it. A message's final status is decided
when it is created: by a :class:`Rule` the user registered (per recipient, body pattern, or a
seeded probability), else ``delivered``. :class:`Chaos` reorders, duplicates, delays and drops
the callbacks, never the statuses, so fetching a message always shows the truth.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from .errors import EmulatorError
from .model import API_VERSION, EmulatedMessage, error_title

#: Final statuses a rule may choose, with the status before them.
OUTCOMES: Final = {
    "delivered": "sent",
    "undelivered": "sent",
    "partially_delivered": "sent",
    "failed": "sending",
}
#: Channels whose messages are read after delivery (read receipts).
READ_RECEIPT_CHANNELS: Final = frozenset({"whatsapp", "rcs"})
#: Per-segment prices in USD, as Twilio writes them (negative: a charge).
SMS_PRICE: Final = 0.0079
MMS_PRICE: Final = 0.0200


@dataclass(frozen=True, slots=True)
class Timing:
    """Emulated seconds each step takes; ``read=None`` means messages are never read."""

    accept: float = 0.05
    queue: float = 0.05
    send: float = 0.05
    deliver: float = 0.1
    read: float | None = 0.2


@dataclass(frozen=True, slots=True)
class Rule:
    """Give matching messages a final ``status`` and ``error_code``.

    A rule matches when every condition it sets holds: ``to`` (exact address), ``body`` (a
    regular expression searched in the body), then ``probability`` drawn from the emulator's
    seeded generator. The first matching rule wins.
    """

    status: str
    error_code: int | None = None
    to: str | None = None
    body: str | None = None
    probability: float = 1.0

    def __post_init__(self) -> None:
        if self.status not in OUTCOMES:
            raise EmulatorError(f"status must be one of {sorted(OUTCOMES)}, not {self.status!r}")
        if self.status != "delivered" and self.error_code is None:
            raise EmulatorError(f"a {self.status} rule needs an error_code, e.g. 30003")
        if not 0 <= self.probability <= 1:
            raise EmulatorError(f"probability must be between 0 and 1, not {self.probability}")
        if self.body is not None:
            try:
                re.compile(self.body)
            except re.error as error:
                raise EmulatorError(f"body pattern {self.body!r} is not valid: {error}") from None

    def matches(self, to: str, body: str, rng: random.Random) -> bool:
        if self.to is not None and self.to != to:
            return False
        if self.body is not None and not re.search(self.body, body):
            return False
        return self.probability >= 1 or rng.random() < self.probability


@dataclass(frozen=True, slots=True)
class Chaos:
    """Status callbacks out of order, duplicated, late and dropped, from a seeded generator.

    Each callback is delayed by up to ``jitter`` seconds with probability ``reorder`` (so it
    may overtake or be overtaken), by ``late_by`` more with probability ``late``, sent twice
    with probability ``duplicate``; a callback for a final status is not sent at all with
    probability ``drop_final`` (fetch the message to learn its status).
    """

    seed: int = 0
    reorder: float = 0.5
    jitter: float = 0.3
    duplicate: float = 0.2
    late: float = 0.05
    late_by: float = 2.0
    drop_final: float = 0.0

    def __post_init__(self) -> None:
        for name in ("reorder", "duplicate", "late", "drop_final"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise EmulatorError(f"chaos {name} must be between 0 and 1, not {value}")
        for name in ("jitter", "late_by"):
            value = getattr(self, name)
            if not 0 <= value <= 3600:
                raise EmulatorError(f"chaos {name} must be 0 to 3600 seconds, not {value}")


def next_status(record: EmulatedMessage, timing: Timing) -> tuple[str, float] | None:
    """The status after the current one and how long until it, or None when done."""
    status = record.status
    if status in {"accepted", "scheduled"}:
        return "queued", timing.accept
    if status == "queued":
        return "sending", timing.queue
    if status == "sending":
        return ("failed" if record.outcome == "failed" else "sent"), timing.send
    if status == "sent":
        return record.outcome, timing.deliver
    if status == "delivered" and record.channel in READ_RECEIPT_CHANNELS and timing.read:
        return "read", timing.read
    return None


def price_of(record: EmulatedMessage) -> str:
    """What Twilio would charge, as its ``price`` string (e.g. ``-0.00790``)."""
    per_segment = MMS_PRICE if record.num_media else SMS_PRICE
    return f"{-per_segment * max(record.num_segments, 1):.5f}"


def channel_install_sid(account_sid: str, channel: str) -> str:
    """The account's installed channel (``XE...``) a WhatsApp/RCS message goes through.

    Stable per account and channel, as an installed channel is on Twilio.
    """
    return "XE" + hashlib.sha256(f"{account_sid}:{channel}".encode()).hexdigest()[:32]


def callback_params(record: EmulatedMessage) -> list[tuple[str, str]]:
    """The form of a status callback for the record's current status (documented fields)."""
    params = [
        ("AccountSid", record.account_sid),
        ("ApiVersion", API_VERSION),
        ("MessageSid", record.sid),
        ("MessageStatus", record.status),
        ("SmsSid", record.sid),
        ("SmsStatus", record.status),
        ("To", record.to),
    ]
    if record.from_:
        params.append(("From", record.from_))
    if record.messaging_service_sid:
        params.append(("MessagingServiceSid", record.messaging_service_sid))
    if record.error_code is not None:
        params.append(("ErrorCode", str(record.error_code)))
    channel = record.channel
    if channel:
        params.append(("ChannelPrefix", channel))
        params.append(("ChannelInstallSid", channel_install_sid(record.account_sid, channel)))
        if record.status == "read":
            params.append(("EventType", "READ"))
        if record.status in {"failed", "undelivered"} and record.error_code is not None:
            params.append(("ChannelStatusMessage", error_title(record.error_code)))
    elif record.status in {"delivered", "undelivered"}:
        done = datetime.fromtimestamp(record.date_updated, UTC).strftime("%y%m%d%H%M")
        params.append(("RawDlrDoneDate", done))
    return sorted(params)
