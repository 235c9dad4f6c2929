"""What the emulator remembers for people watching it: status timelines and a change counter.

A message record holds only its current status; the :class:`Journal` keeps every status it
went through, with the emulated time of each. Every change anyone could watch (a status, a
webhook, a number, a rule, the clock, chaos, a reset) moves its counter on, and
:meth:`Journal.wait` lets a reader (the inspector's live stream) sleep until it does.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from .model import MessageRecord

#: Messages whose timelines are kept: a long-running emulator must not grow forever.
TIMELINE_LIMIT: Final = 100_000


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One status a message reached, at emulated time ``at`` (epoch seconds)."""

    status: str
    at: float
    error_code: int | None = None


class Journal:
    """Status timelines by message SID, and a counter of changes to wait on (thread-safe)."""

    def __init__(self) -> None:
        self._timelines: OrderedDict[str, list[StatusChange]] = OrderedDict()
        self._changes = 0
        self._closed = False
        self._cond = threading.Condition()

    @property
    def changes(self) -> int:
        """How many changes happened so far (only ever grows)."""
        with self._cond:
            return self._changes

    def status(self, record: MessageRecord) -> None:
        """Note the record's current status, unless it is the one noted last."""
        with self._cond:
            line = self._timelines.get(record.sid)
            if line is None:
                line = self._timelines[record.sid] = []
                if len(self._timelines) > TIMELINE_LIMIT:
                    self._timelines.popitem(last=False)
            if not line or line[-1].status != record.status:
                line.append(StatusChange(record.status, record.date_updated, record.error_code))
            self._touch()

    def timeline(self, sid: str) -> list[StatusChange]:
        """The statuses message ``sid`` went through, oldest first (empty if unknown)."""
        with self._cond:
            return list(self._timelines.get(sid, ()))

    def touch(self) -> None:
        """Something a watcher shows changed."""
        with self._cond:
            self._touch()

    def _touch(self) -> None:
        self._changes += 1
        self._cond.notify_all()

    def clear(self) -> None:
        """Forget every timeline (a reset); watchers see a change."""
        with self._cond:
            self._timelines.clear()
            self._touch()

    def wait(self, seen: int, timeout: float) -> int:
        """Block until the counter passes ``seen``, ``timeout`` passes or the journal closes."""
        with self._cond:
            self._cond.wait_for(lambda: self._changes != seen or self._closed, timeout)
            return self._changes

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def close(self) -> None:
        """Wake every waiter for good (the emulator is stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False
