"""Run background handlers on the user's own Celery app (``pip install 'webhook_kit[celery]'``).

The job is written to the kit's store first (with the webhook's claim), then its key is
published as a Celery task. The task is idempotent by that key: it runs the job only if the
store says it is due, so a task delivered twice, or redelivered after a worker died
(``acks_late``), never runs a finished job again. Retries are the store's too: a failed job
is published again for its retry time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigurationError
from . import Job
from .execute import Executor

try:
    import celery
except ImportError as error:  # pragma: no cover - exercised without the extra installed
    raise ConfigurationError(
        "the Celery runner needs Celery: pip install 'webhook_kit[celery]'"
    ) from error

#: The task's name: the same in the web app and in the Celery worker.
TASK_NAME = "webhook_kit.run_job"


class CeleryRunner:
    """Publishes each job's key as the task ``webhook_kit.run_job`` on ``app``.

    The task acknowledges late and is rejected when its worker is lost, so a ``kill -9``
    mid-task gives the job to another worker (after the broker's visibility timeout with
    Redis). Consuming is Celery's: ``celery -A yourapp worker``.
    """

    def __init__(self, app: celery.Celery, executor: Executor) -> None:
        self.app = app
        self.executor = executor

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
        """Nothing to start: Celery's own workers consume the tasks."""

    def stop(self) -> None:
        """Nothing to stop: Celery's own workers consume the tasks."""

    def _publish(self, key: str, due: float) -> None:
        self.task.apply_async((key,), countdown=max(0.0, due - time.time()))
