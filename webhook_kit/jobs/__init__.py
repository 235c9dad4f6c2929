"""Slow handlers off the webhook: durable jobs, and the runners that execute them.

A handler registered with ``background=True`` does not run inside the webhook request. The
request writes a :class:`Job` to the kit's store in the same atomic step that completes the
webhook's idempotency claim (``Store.complete(..., jobs=...)``), answers Twilio at once, and a
*runner* executes the job later with the same typed event:

- :class:`~webhook_kit.jobs.embedded.EmbeddedRunner` (the default) polls the store from a
  thread in every gunicorn worker, or from ``webhook-kit worker``;
- :class:`~webhook_kit.jobs.celery.CeleryRunner` hands each job to the user's Celery app.

A runner is anything with the three methods of :class:`Runner`; the store keeps the jobs,
their leases, retries and dead letters (:class:`JobStore`), and :class:`~webhook_kit.jobs.
execute.Executor` runs one leased job. An adapter for RQ or Dramatiq publishes the job's key
in :meth:`Runner.submit` and calls ``executor.run_key(key)`` in its task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class JobState(StrEnum):
    """Where a job is in its life."""

    #: Waiting to run (first run, or a retry whose ``run_at`` is in the future).
    PENDING = "pending"
    #: Leased by a runner until ``expires``; taken over by another after that.
    RUNNING = "running"
    #: Failed ``max_attempts`` times; kept with its error until retried or purged.
    DEAD = "dead"


class JobKind(StrEnum):
    """Which handler family a job belongs to, and so what its payload holds."""

    #: An inbound message (or fallback request): payload is the webhook's form.
    MESSAGE = "message"
    #: A status callback: payload is the callback's form.
    STATUS = "status"
    #: A message that reached a final status: payload is its MessageSid.
    FINAL = "final"


@dataclass(frozen=True, slots=True)
class Job:
    """One background handler call, as the store keeps it."""

    #: Unique for ever: the webhook's idempotency key, plus ``#handler`` for status and
    #: final hooks (several may match one event). A duplicate webhook never makes a second.
    key: str
    kind: JobKind
    #: The handler's registered name (``module.qualname``).
    handler: str
    payload: str
    created: float
    state: JobState = JobState.PENDING
    #: Runs started so far (the current one included while RUNNING).
    attempts: int = 0
    #: Not before this time (epoch seconds): the retry backoff.
    run_at: float = 0.0
    #: The runner holding a RUNNING job, and when its lease ends.
    owner: str = ""
    expires: float = 0.0
    #: The last failure, ``"ExceptionType: message"``.
    error: str | None = None


class JobStore(Protocol):
    """The job operations a store provides, each atomic across processes and hosts.

    Ported to a new backend these are one table (or hash) of :class:`Job` rows keyed by
    ``key``. Jobs are added only by :meth:`~webhook_kit.stores.Store.complete`, which must
    write them in the same transaction that completes the webhook's claim.
    """

    def take_job(self, lease: float, key: str | None = None) -> Job | None:
        """Lease the oldest due job (or the job ``key``) for ``lease`` seconds.

        Due: PENDING with ``run_at`` passed, or RUNNING with its lease ended (its runner
        died). The job comes back RUNNING, with a new ``owner`` and ``attempts`` counted.
        """

    def get_job(self, key: str) -> Job | None:
        """The job ``key`` as stored now, or None (finished, purged, or never enqueued)."""

    def renew_job(self, key: str, owner: str, lease: float) -> bool:
        """Extend ``owner``'s lease on ``key``; False if the job is no longer its own."""

    def finish_job(
        self, key: str, owner: str, state: JobState | None, run_at: float = 0.0, error: str = ""
    ) -> bool:
        """End ``owner``'s run: ``None`` deletes the job (it succeeded), PENDING schedules a
        retry at ``run_at``, DEAD keeps it with ``error``. False if not ``owner``'s any more."""

    def list_jobs(self, state: JobState | None = None, limit: int = 100) -> list[Job]:
        """Up to ``limit`` jobs (in ``state``), oldest first."""

    def retry_job(self, key: str) -> bool:
        """Make a DEAD job PENDING again, due now, attempts reset; False if no such dead job."""

    def purge_jobs(self, state: JobState = JobState.DEAD) -> int:
        """Delete every job in ``state``; how many were deleted."""


class Runner(Protocol):
    """What the request path and the kit need from a runner; see the module docstring."""

    def submit(self, jobs: Sequence[Job]) -> None:
        """Called after ``jobs`` are durably in the store: get them run soon."""

    def start(self) -> None:
        """Called in each serving process (idempotent): start consuming, if this runner does."""

    def stop(self) -> None:
        """Stop consuming in this process (tests, shutdown)."""


#: The columns of a stored job, in the order :meth:`Job.row` gives and :func:`job_from_row` reads.
JOB_COLUMNS = (
    "key", "kind", "handler", "payload", "created", "state", "attempts", "run_at", "owner",
    "expires", "error",
)  # fmt: skip


def job_row(job: Job) -> tuple[str, str, str, str, float, str, int, float, str, float, str | None]:
    """``job`` as a row of :data:`JOB_COLUMNS`."""
    return (
        job.key, job.kind.value, job.handler, job.payload, job.created, job.state.value,
        job.attempts, job.run_at, job.owner, job.expires, job.error,
    )  # fmt: skip


def job_from_row(row: Sequence[object]) -> Job:
    """The job a row of :data:`JOB_COLUMNS` holds (text as ``str`` or ``bytes``)."""
    text = [
        value.decode() if isinstance(value, bytes) else "" if value is None else str(value)
        for value in row
    ]
    key, kind, handler, payload, created, state, attempts, run_at, owner, expires, error = text
    return Job(
        key,
        JobKind(kind),
        handler,
        payload,
        float(created),
        JobState(state),
        int(attempts),
        float(run_at),
        owner,
        float(expires),
        error or None,
    )
