"""This process's machinery, in one place: what each serving process starts for itself.

gunicorn forks its workers after loading the app, and a forked child has none of its
parent's threads, and may hold copies of locks that a parent thread held mid-fork. So every
per-process piece of webhook_kit registers with the one :data:`process` object:

- a **reset** (:meth:`Process.at_fork`) runs first thing in each forked child: new claim
  owner tokens, fresh events and locks;
- a **service** (:meth:`Process.service`: housekeeping, a job runner's threads) starts once in
  each process, when first asked (the first request a worker serves asks), and again in
  each forked child; every service started in this process is stopped at exit.

This module holds the package's only ``os.register_at_fork`` and ``atexit`` registrations.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable


class Process:
    """The current process as webhook_kit sees it: its fork generation, resets and services."""

    def __init__(self) -> None:
        #: Bumped in each forked child: comparing it is cheaper than ``os.getpid()`` per request.
        self.forks = 0
        self._lock = threading.Lock()
        self._resets: list[Callable[[], None]] = []
        self._services: list[Service] = []
        os.register_at_fork(after_in_child=self._forked)
        atexit.register(self.stop)

    def at_fork(self, reset: Callable[[], None]) -> None:
        """Run ``reset`` in every process forked from now on, before anything else runs there."""
        self._resets.append(reset)

    def service(self, start: Callable[[], None], stop: Callable[[], None] | None = None) -> Service:
        """A service whose ``start`` runs once per process (see :class:`Service`)."""
        service = Service(self, start, stop)
        with self._lock:
            self._services.append(service)
        return service

    def stop(self) -> None:
        """Stop every service started in this process, the latest first (at exit)."""
        with self._lock:
            services = list(reversed(self._services))
        for service in services:
            service.stop()

    def _forked(self) -> None:
        self.forks += 1
        self._lock = threading.Lock()  # the parent's may have been held mid-fork
        for reset in self._resets:
            reset()


class Service:
    """Starts its threads once per process: once more in a forked child, never twice in one."""

    __slots__ = ("_process", "_start", "_started_in", "_stop")

    def __init__(
        self, process: Process, start: Callable[[], None], stop: Callable[[], None] | None
    ) -> None:
        self._process = process
        self._start = start
        self._stop = stop
        self._started_in = -1  # the fork generation it was started in

    @property
    def running(self) -> bool:
        """Whether it was started in this process (and not stopped)."""
        return self._started_in == self._process.forks

    def __call__(self) -> None:
        """Start it unless it runs in this process already; safe from many threads."""
        if self.running:
            return
        with self._process._lock:
            if not self.running:
                self._started_in = self._process.forks
                self._start()

    def stop(self) -> None:
        """Stop it if it runs in this process; a later call starts it again."""
        if self.running:
            self._started_in = -1
            if self._stop is not None:
                self._stop()


#: The one object of this process (shared by every kit, store and runner in it).
process = Process()
