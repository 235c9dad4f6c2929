"""The emulator's time: a real clock (optionally sped up) or a manual one that tests advance.

Everything that happens later (a status transition, a callback, a retry) is a task on the
:class:`Scheduler`. On a real clock a thread runs tasks when they fall due; on a manual clock
nothing moves until :meth:`Scheduler.advance`, which runs every task due in the window in
time order, in the caller's thread, so a test sees the whole effect when the call returns.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable

from .errors import EmulatorError

Task = Callable[[], None]
_LONGEST_STEP = 100 * 365 * 86400.0
#: Shortest wait of the real-clock thread, in real seconds.
GRAIN = 0.001
logger = logging.getLogger("webhook_kit.emulator")


class Clock:
    """Real time; ``speed`` > 1 makes emulated seconds pass faster (delays shrink with it)."""

    manual = False

    def __init__(self, speed: float = 1.0) -> None:
        if not (speed > 0 and math.isfinite(speed)):
            raise EmulatorError(f"speed must be a positive number, not {speed}")
        self.speed = speed
        self._origin = time.time()
        self._start = time.monotonic()

    def now(self) -> float:
        return self._origin + (time.monotonic() - self._start) * self.speed

    def wall_seconds(self, emulated: float) -> float:
        """How long a real thread waits for ``emulated`` seconds to pass."""
        return emulated / self.speed


class ManualClock(Clock):
    """Time stands still until advanced; starts at the real time of creation."""

    manual = True

    def __init__(self, start: float | None = None) -> None:
        super().__init__()
        self._now = time.time() if start is None else start

    def now(self) -> float:
        return self._now

    def set(self, when: float) -> None:
        self._now = max(self._now, when)


class Scheduler:
    """Tasks ordered by due time; run by a thread (real clock) or by :meth:`advance`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, Task]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._advance_lock = threading.Lock()

    def after(self, delay: float, task: Task) -> None:
        """Run ``task`` ``delay`` emulated seconds from now."""
        self.at(self.clock.now() + max(0.0, delay), task)

    def at(self, when: float, task: Task) -> None:
        with self._cond:
            heap = self._heap
            heapq.heappush(heap, (when, next(self._order), task))
            if heap[0][0] == when:  # a new first task: the thread must wake earlier
                self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def clear(self) -> None:
        with self._cond:
            self._heap.clear()

    # -- manual clock ---------------------------------------------------------------------

    def advance(self, seconds: float) -> int:
        """Move a manual clock forward, running every task that falls due; returns how many."""
        if not isinstance(self.clock, ManualClock):
            raise EmulatorError("advance() needs the manual clock: Emulator(clock='manual')")
        if not 0 <= seconds <= _LONGEST_STEP:  # also refuses nan and inf
            raise EmulatorError(
                f"seconds must be from 0 (time only moves forward) to {_LONGEST_STEP:.0f}"
                f" (100 years: dates must stay printable), not {seconds}"
            )
        with self._advance_lock:
            target = self.clock.now() + seconds
            ran = 0
            while True:
                with self._cond:
                    if not self._heap or self._heap[0][0] > target:
                        break
                    when, _, task = heapq.heappop(self._heap)
                self.clock.set(when)
                task()
                ran += 1
            self.clock.set(target)
            return ran

    # -- real clock -----------------------------------------------------------------------

    def start(self) -> None:
        if self.clock.manual or self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="emulator-clock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    wait = self._heap[0][0] - self.clock.now() if self._heap else None
                    if wait is not None and wait <= 0:
                        break
                    # At least a millisecond: a sped-up clock's many near tasks run in batches
                    # instead of waking this thread once each.
                    self._cond.wait(
                        None if wait is None else max(self.clock.wall_seconds(wait), GRAIN)
                    )
                if self._stopping:
                    return
                _, _, task = heapq.heappop(self._heap)
            try:
                task()
            except Exception:  # a broken task must not stop the clock for every other one
                logger.exception("emulator task failed")
