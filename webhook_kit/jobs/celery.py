"""Run background handlers on the user's own Celery app (``pip install 'webhook_kit[celery]'``).

The job is written to the kit's store first (with the webhook's claim), then its key is
published as a Celery task. The task is idempotent by that key: it runs the job only if the
store says it is due, so a task delivered twice, or redelivered after a worker died
(``acks_late``), never runs a finished job again. Retries are the store's too: a failed job
is published again for its retry time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigurationError
from ..process import process
from . import Job, JobState
from .execute import Executor

try:
    import celery
except ImportError as error:  # pragma: no cover - exercised without the extra installed
    raise ConfigurationError(
        "the Celery runner needs Celery: pip install 'webhook_kit[celery]'"
    ) from error

#: The task's name: the same in the web app and in the Celery worker.
TASK_NAME = "webhook_kit.run_job"

log = logging.getLogger("webhook_kit")


class CeleryRunner:
    """Publishes each job's key as the task ``webhook_kit.run_job`` on ``app``.

    The task acknowledges late and is rejected when its worker is lost, so a ``kill -9``
    mid-task gives the job to another worker (after the broker's visibility timeout with
    Redis). Consuming is Celery's: ``celery -A yourapp worker``. Each serving process also
    sweeps the store once a lease for jobs the broker lost (a publish that failed, a task
    dropped) and publishes them again.
    """

    def __init__(self, app: celery.Celery, executor: Executor) -> None:
        self.app = app
        self.executor = executor
        self._stop = threading.Event()
        self._started = process.service(self._start, self.stop)
        process.at_fork(self._after_fork)

        @app.task(  # type: ignore[untyped-decorator]
            name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True
        )
        def run_job(key: str) -> None:
            again = executor.run_key(key)
            if again is not None:
                self._publish(key, again)

        self.task: Any = run_job

    def submit(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self._publish(job.key, job.run_at)

    def start(self) -> None:
        """Start this process's sweep (Celery's own workers consume the tasks)."""
        self._started()

    def _start(self) -> None:
        self._stop.clear()
        name = "webhook_kit-celery-sweep"
        threading.Thread(target=self._sweep_forever, name=name, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def sweep(self) -> int:
        """Publish again every job overdue by a whole lease; how many there were."""
        horizon = time.time() - self.executor.settings.lease
        stale = [
            job
            for job in self.executor.store.list_jobs(limit=1000)
            if (job.state is JobState.PENDING and job.run_at < horizon)
            or (job.state is JobState.RUNNING and job.expires < horizon)
        ]
        for job in stale:
            self._publish(job.key, 0.0)
        return len(stale)

    def _sweep_forever(self) -> None:
        while not self._stop.wait(self.executor.settings.lease):
            try:
                self.sweep()
            except Exception:  # the store or the broker is down: the next sweep tries again
                log.exception("celery runner: the sweep for lost jobs failed")

    def _after_fork(self) -> None:
        # The parent's sweep thread is gone; its event's lock may have been held at the fork.
        self._stop = threading.Event()

    def _publish(self, key: str, due: float) -> None:
        self.task.apply_async((key,), countdown=max(0.0, due - time.time()))
