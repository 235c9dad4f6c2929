"""Run one leased job: rebuild its event, call the handler, send the reply, settle the job.

Every runner ends up here, so retries, dead letters and the exactly-once reply behave the same
on the embedded runner and on Celery. A job's reply is sent with an idempotency key derived
from the job (``<job key>#reply<n>``): a job run again after its runner died mid-way sends
only what the first run did not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

from ..errors import StoreError, UnsubscribedRecipientError
from ..events import Fields, InboundMessage, parse_inbound, parse_status
from ..registry import Registry
from ..routing import as_twiml
from ..twiml import Message
from . import Job, JobKind, JobState

if TYPE_CHECKING:
    from flask import Flask

    from ..stores import Store

log = logging.getLogger("webhook_kit")


@dataclass(frozen=True, slots=True)
class JobSettings:
    """How jobs are leased and retried (``WEBHOOK_KIT_JOB_*``)."""

    #: Seconds a runner holds a job before another may take it over; renewed while it runs.
    lease: float = 30.0
    #: Runs before a failing job is dead.
    attempts: int = 5
    #: Seconds before the first retry; doubled for each one after.
    backoff: float = 2.0


class ReplySender(Protocol):
    """Sends one ``<Message>`` of a background reply: ``kit.send(..., in_reply_to=message)``."""

    def __call__(self, message: InboundMessage, reply: Message, key: str) -> None: ...


class Executor:
    """Runs leased jobs for one app: its registry, store and reply sender."""

    def __init__(
        self,
        app: Flask,
        registry: Registry,
        store: Store,
        settings: JobSettings,
        send_reply: ReplySender,
        *,
        metrics: bool = False,
    ) -> None:
        self.app = app
        self.registry = registry
        self.store = store
        self.settings = settings
        self.send_reply = send_reply
        #: Counts each run by kind and outcome (metrics on); None, and nothing imported, if off.
        self._count: Callable[[str, str], None] | None = None
        if metrics:
            from ..metrics import count_job

            self._count = count_job

    def run_next(self) -> bool:
        """Take the oldest due job and run it; False if none was due."""
        job = self.store.take_job(self.settings.lease)
        if job is None:
            return False
        self.run(job)
        return True

    def run_key(self, key: str) -> float | None:
        """Run the job ``key`` if it is due (a task queue's delivery of it).

        Returns when the job should be tried again: its retry time after a failure, or the
        end of another runner's lease (it may have died) or of its backoff if it was not
        due; None once nothing is left to do (done, dead, or no such job).
        """
        job = self.store.take_job(self.settings.lease, key)
        if job is not None:
            return self.run(job)
        waiting = self.store.get_job(key)
        if waiting is None or waiting.state is JobState.DEAD:
            return None
        return waiting.expires if waiting.state is JobState.RUNNING else waiting.run_at

    def run(self, job: Job) -> float | None:
        """Run a job this process has leased and settle it; its retry time, if it has one."""
        try:
            with self._renewing(job), self.app.app_context():
                self._call(job)
        except Exception as error:
            retry_at = self._failed(job, error)
            self._counted(job, "dead" if retry_at is None else "retried")
            return retry_at
        if not self.store.finish_job(job.key, job.owner, None):
            log.warning("job %s: finished after its lease was taken over", job.key)
        self._counted(job, "done")
        return None

    def _counted(self, job: Job, outcome: str) -> None:
        if self._count is not None:
            self._count(job.kind.value, outcome)

    def _call(self, job: Job) -> None:
        spec = self.registry.background.get(job.handler)
        if spec is None:
            raise LookupError(
                f"no background handler named {job.handler!r} in this app: was it renamed, or "
                "does the worker load a different WEBHOOK_KIT_HANDLERS module?"
            )
        if job.kind is JobKind.FINAL:
            record = self.store.get_message(job.payload)
            if record is not None:
                spec.handler(record)
            return
        fields = Fields(parse_qsl(job.payload, keep_blank_values=True))
        if job.kind is JobKind.STATUS:
            spec.handler(parse_status(fields))
            return
        message = parse_inbound(fields)
        if spec.route is not None and spec.route.pattern is not None:
            message = replace(message, match=spec.route.pattern.search(message.body))
        reply = as_twiml(spec.handler(message), spec.handler)
        for index, verb in enumerate(reply.messages):
            try:
                self.send_reply(message, verb, f"{job.key}#reply{index}")
            except UnsubscribedRecipientError as refused:  # final: a retry is refused again
                log.warning("job %s: reply %d dropped: %s", job.key, index, refused)

    def _failed(self, job: Job, error: Exception) -> float | None:
        reason = f"{type(error).__name__}: {error}"
        # An opted-out recipient stays opted out until they reply START: retrying is futile.
        final = isinstance(error, UnsubscribedRecipientError)
        if job.attempts < self.settings.attempts and not final:
            delay = self.settings.backoff * 2.0 ** (job.attempts - 1)
            run_at = time.time() + delay
            log.warning(
                "job %s failed (attempt %d of %d), retried in %.1f s: %s",
                job.key,
                job.attempts,
                self.settings.attempts,
                delay,
                reason,
            )
            self._settle(job, JobState.PENDING, run_at, reason)
            return run_at
        log.error("job %s is dead after %d attempt(s)", job.key, job.attempts, exc_info=error)
        self._settle(job, JobState.DEAD, 0.0, reason)
        self._report(job, error)
        return None

    def _settle(self, job: Job, state: JobState, run_at: float, reason: str) -> None:
        try:
            self.store.finish_job(job.key, job.owner, state, run_at, reason)
        except StoreError as failure:  # the lease ends by itself: the job runs again then
            log.warning("job %s: could not record its failure: %s", job.key, failure)

    def _report(self, job: Job, error: Exception) -> None:
        """Pass a dead job's error to the ``on_error`` hooks, with its event when it has one."""
        event: Any = job.payload
        if job.kind is not JobKind.FINAL:
            fields = Fields(parse_qsl(job.payload, keep_blank_values=True))
            with _quietly():
                event = (parse_status if job.kind is JobKind.STATUS else parse_inbound)(fields)
        for hook in self.registry.errors:
            with _quietly(), self.app.app_context():
                hook(error, event)

    @contextmanager
    def _renewing(self, job: Job) -> Iterator[None]:
        """Keep the lease while the handler runs, however long it takes."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.settings.lease / 3):
                try:
                    if not self.store.renew_job(job.key, job.owner, self.settings.lease):
                        return
                except StoreError as error:
                    log.warning("job %s: could not renew its lease: %s", job.key, error)

        thread = threading.Thread(target=renew, name=f"webhook_kit-lease-{job.key}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()


@contextmanager
def _quietly() -> Iterator[None]:
    """Log and swallow a failure of an error hook: the job's own error is what matters."""
    try:
        yield
    except Exception:
        log.exception("an on_error hook failed while reporting a dead job")
