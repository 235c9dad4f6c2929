"""The default runner: threads in each serving process poll the kit's store for due jobs.

No other service is needed: jobs live in the store (the SQLite file by default), so any
gunicorn worker of any host sharing the store, or a ``webhook-kit worker`` process, runs
them. A job whose runner was killed is taken over by another once its lease ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from ..errors import StoreError
from ..process import process
from . import Job
from .execute import Executor

log = logging.getLogger("webhook_kit")


class EmbeddedRunner:
    """``threads`` daemon threads per process, each running one job at a time.

    A job submitted in this process wakes a thread at once; jobs enqueued by other
    processes are found by polling every ``poll`` seconds (an idle poll is one read).
    Threads start lazily in each process (a fork never inherits them). :meth:`stop` lets the
    jobs being run finish, for up to ``grace`` seconds: a worker stopped by SIGTERM does not
    leave a finished job leased, to run again once its lease ends.
    """

    def __init__(
        self, executor: Executor, *, threads: int = 4, poll: float = 0.5, grace: float = 30.0
    ) -> None:
        self.executor = executor
        self.threads = threads
        self.poll = poll
        self.grace = grace
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._running: list[threading.Thread] = []
        self._started = process.service(self._start, self.stop)
        process.at_fork(self._after_fork)

    def submit(self, jobs: Sequence[Job]) -> None:
        self.start()
        self._wake.set()

    def start(self) -> None:
        self._started()

    def _start(self) -> None:
        self._stop.clear()
        self._running = [
            threading.Thread(target=self.run_forever, name=f"webhook_kit-jobs-{index}", daemon=True)
            for index in range(self.threads)
        ]
        for thread in self._running:
            thread.start()

    def stop(self) -> None:
        """Take no more jobs; wait up to ``grace`` seconds for the ones running to settle."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + self.grace
        for thread in self._running:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def run_forever(self) -> None:
        """Run due jobs until :meth:`stop`; ``webhook-kit worker`` calls this directly."""
        failing = False
        while not self._stop.is_set():
            try:
                ran = self.executor.run_next()
                failing = False
            except StoreError as error:  # the store is down: try again after a poll
                if not failing:
                    log.warning("job runner: %s", error)
                failing, ran = True, False
            except Exception:  # a bug (in a custom store, say): logged, and the thread lives on
                if not failing:
                    log.exception("job runner: taking or running a job failed")
                failing, ran = True, False
            if not ran:
                self._wake.wait(self.poll)
                self._wake.clear()

    def _after_fork(self) -> None:
        # The parent's threads are gone; its events' locks may have been held at the fork.
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._running = []
