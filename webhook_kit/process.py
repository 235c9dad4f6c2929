"""Threads that each serving process starts for itself.

gunicorn forks its workers, and a forked child has none of its parent's threads: whoever
needs a background thread starts it on first use in each process, through one
:class:`PerProcess`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable


class PerProcess:
    """Call ``start`` once per process: once more in a forked child, never twice in one."""

    def __init__(self, start: Callable[[], None]) -> None:
        self._start = start
        self._lock = threading.Lock()
        self._pid = 0
        os.register_at_fork(after_in_child=self._forked)

    def __call__(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._start()

    def _forked(self) -> None:
        self._lock = threading.Lock()  # the parent's may have been held mid-fork
