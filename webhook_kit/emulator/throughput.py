"""Sender queues: each sender sends at its rate, the rest waits ``queued`` (twilio-more.md §6).

Twilio queues every message per sender and lets it leave at the sender's rate, counted in
message segments per second (a 3-segment SMS from a 1 MPS long code takes 3 seconds). A queue
holds at most 10 hours of sending (4 hours on WhatsApp): a send beyond that is refused with
21611 when it names its ``From``, and fails with 30001 after creation when a Messaging Service
picked the sender. A message whose ``ValidityPeriod`` runs out while it waits fails with 30036
and leaves its place to the next one.

Queues are planned, not polled: a sender's queue is the time it is next free, so a message's
departure is known when it joins (FIFO), and nothing runs until something falls due.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Final

from .errors import EmulatorError
from .model import channel_of

#: US/Canada toll-free area codes.
TOLL_FREE_RE: Final = re.compile(r"^\+18(00|33|44|55|66|77|88)\d{7}$")
SHORT_CODE_RE: Final = re.compile(r"^\d{3,8}$")


#: The rate fields of :class:`Throughput`, and a rate no burst reaches.
RATE_KINDS: Final = (
    "long_code",
    "toll_free",
    "short_code",
    "international",
    "whatsapp",
    "whatsapp_media",
)
UNQUEUED_RATE: Final = 1e6


@dataclass(frozen=True, slots=True)
class Throughput:
    """Segments (WhatsApp: messages) per second by sender type, and the queue limits.

    Defaults are Twilio's documented defaults: a US/Canada long code 1 to US/Canada, toll-free
    3, short code 100, any number or alphanumeric sender 10 to other countries; WhatsApp 10
    (1.5 with media). A queue holds ``queue_hours`` of sending (``whatsapp_queue_hours``).
    """

    long_code: float = 1.0
    toll_free: float = 3.0
    short_code: float = 100.0
    international: float = 10.0
    whatsapp: float = 10.0
    whatsapp_media: float = 1.5
    queue_hours: float = 10.0
    whatsapp_queue_hours: float = 4.0

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < float("inf")):
                raise EmulatorError(f"throughput {name} must be a positive number, not {value!r}")

    @classmethod
    def unqueued(cls) -> Throughput:
        """Senders that never hold a message back: for benches and tests about other things."""
        return cls(**dict.fromkeys(RATE_KINDS, UNQUEUED_RATE))

    def rate(self, sender: str, to: str, media: bool) -> float:
        """Units per second ``sender`` sends to ``to`` at."""
        if channel_of(sender) == "whatsapp":
            return self.whatsapp_media if media else self.whatsapp
        if SHORT_CODE_RE.match(sender):
            return self.short_code
        if TOLL_FREE_RE.match(sender):
            return self.toll_free
        if sender.startswith("+1") and to.rpartition(":")[2].startswith("+1"):
            return self.long_code
        return self.international

    def limit(self, sender: str) -> float:
        """How many seconds of sending a sender's queue holds."""
        hours = self.whatsapp_queue_hours if channel_of(sender) == "whatsapp" else self.queue_hours
        return hours * 3600


@dataclass(frozen=True, slots=True)
class Slot:
    """Where a message stands in its sender's queue."""

    #: When it leaves the queue (``sending``); for an expired one, when it fails.
    departs_at: float
    #: Its ``ValidityPeriod`` runs out before its turn: it fails with 30036 at ``departs_at``.
    expired: bool = False


#: ``webhook-kit emulator`` options that make :meth:`Throughput.unqueued` senders.
UNQUEUED: Final = tuple(
    option for kind in RATE_KINDS for option in ("--throughput", f"{kind}={UNQUEUED_RATE:g}")
)


class Queues:
    """Every sender's queue: the emulated time each sender is next free (thread-safe)."""

    def __init__(self, throughput: Throughput) -> None:
        self.throughput = throughput
        self._free: dict[str, float] = {}
        self._lock = threading.Lock()

    def join(
        self,
        sender: str,
        to: str,
        *,
        now: float,
        ready: float,
        units: int,
        media: bool,
        deadline: float | None,
    ) -> Slot | None:
        """Queue a message of ``units`` segments that may leave from ``ready`` on.

        None: the queue is full (more than its limit of sending ahead). A message that would
        leave after ``deadline`` (its validity) takes no place and fails at the deadline.
        """
        rate = self.throughput.rate(sender, to, media)
        with self._lock:
            free = max(self._free.get(sender, now), ready)
            if free - ready + units / rate > self.throughput.limit(sender):
                return None
            if deadline is not None and free > deadline:
                return Slot(deadline, expired=True)
            self._free[sender] = free + units / rate
            return Slot(free)

    def restore(self, sender: str, free: float) -> None:
        """After a restart: ``sender`` is busy until ``free`` (a queued message's departure)."""
        with self._lock:
            self._free[sender] = max(self._free.get(sender, free), free)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()
