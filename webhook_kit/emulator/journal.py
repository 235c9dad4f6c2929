"""A counter of the changes someone watching the emulator could see, to wait on.

Every change (a message saved, a webhook posted, a number, a rule, the clock, chaos, a
reset) moves the counter on, and :meth:`Journal.wait` lets a reader (the inspector's live
stream) sleep until it does. What changed is read from the account itself: each message
keeps its own status history.
"""

from __future__ import annotations

import threading


class Journal:
    """A change counter and the condition its readers wait on (thread-safe)."""

    def __init__(self) -> None:
        self._changes = 0
        self._closed = False
        self._cond = threading.Condition()

    @property
    def changes(self) -> int:
        """How many changes happened so far (only ever grows)."""
        with self._cond:
            return self._changes

    def touch(self) -> None:
        """Something a watcher shows changed."""
        with self._cond:
            self._changes += 1
            self._cond.notify_all()

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
