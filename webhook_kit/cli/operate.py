"""The operator's commands: ``serve`` and ``worker``, ``doctor``, ``maintenance``,
``reconcile`` and ``jobs``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from .. import startup
from ..errors import WebhookKitError
from ..jobs import JobState
from ..sending import Sender
from ..standalone import config_from_environ, create_app, load_kit
from ..stores import Store
from .common import (
    JSON_OPTION,
    PORT,
    T,
    duration,
    environment,
    fail,
    open_store,
    table,
    using_store,
)


@click.command()
@click.option("--host", help="Address to listen on [default: 127.0.0.1].")
@click.option("--port", type=PORT, help="Port to listen on [default: 8000].")
@click.option("--handlers", help="Module defining `kit` (default: WEBHOOK_KIT_HANDLERS).")
@click.option("--gunicorn", "use_gunicorn", is_flag=True, help="Serve with gunicorn.")
@click.option("--workers", type=click.IntRange(min=1), help="gunicorn worker processes.")
def serve(
    *,
    host: str | None,
    port: int | None,
    handlers: str | None,
    use_gunicorn: bool,
    workers: int | None,
) -> None:
    """Serve the standalone app (development server, or gunicorn with --gunicorn).

    With --gunicorn the settings are webhook_kit.gunicorn_conf's, as for `gunicorn -c
    python:webhook_kit.gunicorn_conf webhook_kit.wsgi:app`: without --host and --port it
    listens on WEBHOOK_KIT_BIND, else 0.0.0.0:$PORT when PORT is set, else 127.0.0.1:8000.
    """
    environ = environment(handlers)
    sys.path.insert(0, os.getcwd())  # the handlers module usually lives in the project
    address = f"{host or '127.0.0.1'}:{8000 if port is None else port}"
    if use_gunicorn:
        try:
            create_app(environ)  # a configuration error is one line here, before gunicorn starts
        except WebhookKitError as error:
            fail(str(error))
        args = [sys.executable, "-m", "gunicorn", "--config", "python:webhook_kit.gunicorn_conf"]
        args += ["webhook_kit.wsgi:app"]
        if host or port is not None:
            args += ["--bind", address]
        if workers:
            args += ["--workers", str(workers)]
        os.execve(sys.executable, args, environ)
    try:
        app = startup.start(environ)
    except WebhookKitError as error:
        fail(str(error))
    app.run(host=host or "127.0.0.1", port=8000 if port is None else port)


@click.command()
@click.option("--handlers", help="Module defining `kit` (default: WEBHOOK_KIT_HANDLERS).")
@click.option("--number", "numbers", multiple=True, help="Check only this number (repeatable).")
def doctor(*, handlers: str | None, numbers: tuple[str, ...]) -> None:
    """Check that the account's numbers and services call the URLs this app verifies."""
    from ..doctor import run

    sys.path.insert(0, os.getcwd())  # the handlers module usually lives in the project
    sys.exit(run(numbers, environment(handlers)))


@click.command()
@click.option("--store", help="Store URL (default: WEBHOOK_KIT_STORE, else the SQLite default).")
@click.option(
    "--handlers",
    envvar="WEBHOOK_KIT_HANDLERS",
    help="Module defining `kit`: also run its due on_timeout hooks [env: WEBHOOK_KIT_HANDLERS].",
)
def maintenance(*, store: str | None, handlers: str | None) -> None:
    """Expire old idempotency keys and ledger records, compact the store, and exit.

    Every server process already does this in a background thread; run this from cron for
    a store no server is using, or to compact at a quiet hour. Retention periods come from
    WEBHOOK_KIT_RETENTION and WEBHOOK_KIT_LEDGER_RETENTION, as for the server. With
    --handlers, also run the kit's on_timeout hooks of conversations whose timeout is due.
    """
    kit = None
    if handlers:  # a module that cannot load fails before the store is touched
        sys.path.insert(0, os.getcwd())  # the handlers module usually lives in the project
        try:
            kit = load_kit(handlers)
        except WebhookKitError as error:
            fail(str(error))
    with using_store(store) as opened:
        opened.maintain(full=True)
    click.echo("maintained")
    if kit is None:
        return
    environ = environment(handlers)
    if store:
        environ["WEBHOOK_KIT_STORE"] = store
    try:
        ran = kit.run_timeouts(create_app(environ))
    except WebhookKitError as error:
        fail(str(error))
    click.echo(f"ran {ran} conversation timeout(s)")


@click.command()
@click.option("--older-than", default="10m", show_default=True, help="Age: 90s, 10m, 1h, 2d.")
@JSON_OPTION
def reconcile(older_than: str, as_json: bool) -> None:
    """Fetch every ledger message not final after --older-than from Twilio; apply its status."""
    age = duration(older_than, "--older-than")
    try:
        store = open_store(None)
        report = Sender.from_config(config_from_environ(), store).reconcile(older_than=age)
    except WebhookKitError as error:
        fail(str(error))
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report)))
        return
    click.echo(f"checked {report.checked}, updated {report.updated}")
    for sid in report.missing:
        click.echo(f"not found on Twilio: {sid}")


@click.command()
@click.option("--handlers", help="Module defining `kit` (default: WEBHOOK_KIT_HANDLERS).")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="Jobs run at once (default: WEBHOOK_KIT_JOB_THREADS).",
)
def worker(*, handlers: str | None, threads: int | None) -> None:
    """Run background=True handlers from the store until stopped (SIGTERM or Ctrl-C).

    Serves no HTTP: start as many as you like, on any host that shares the store. Jobs a
    killed worker held are taken over once their lease (WEBHOOK_KIT_JOB_LEASE) ends.
    """
    sys.path.insert(0, os.getcwd())
    config: dict[str, Any] = {"WEBHOOK_KIT_RUNNER": "embedded"}
    if threads is not None:
        config["WEBHOOK_KIT_JOB_THREADS"] = threads
    try:
        app = create_app(environment(handlers), config=config)
        app.extensions["webhook_kit"].executor(app)  # fails clearly without background handlers
    except WebhookKitError as error:
        fail(str(error))
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    store = startup.describe_store(app.config["WEBHOOK_KIT_STORE"])
    click.echo(f"webhook-kit worker running jobs from {store}")
    stop.wait()


@click.group()
def jobs() -> None:
    """Show, retry and purge the background jobs in the store (WEBHOOK_KIT_STORE)."""


@jobs.command("list")
@click.option(
    "--state", type=click.Choice([state.value for state in JobState]), help="Only these jobs."
)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def jobs_list(*, state: str | None, limit: int, as_json: bool) -> None:
    """Jobs waiting, running or dead, oldest first, with their last error."""
    found = _jobs(lambda store: store.list_jobs(JobState(state) if state else None, limit))
    if as_json:
        for job in found:
            click.echo(json.dumps({**dataclasses.asdict(job), "kind": job.kind.value,
                                   "state": job.state.value}))  # fmt: skip
        return
    if not found:
        click.echo("no jobs")
        return
    rows = [
        [job.key, job.state.value, str(job.attempts), _when(job.created), job.error or ""]
        for job in found
    ]
    table(["KEY", "STATE", "ATTEMPTS", "CREATED", "LAST ERROR"], rows)


@jobs.command("retry")
@click.argument("keys", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every dead job.")
def jobs_retry(*, keys: tuple[str, ...], every: bool) -> None:
    """Run dead jobs again (attempts start over); the runners pick them up."""
    if not any(key.strip() for key in keys) and not every:
        fail("name the jobs to retry (see webhook-kit jobs list --state dead), or pass --all")

    def retry(store: Store) -> list[str]:
        chosen = list(keys) or [job.key for job in store.list_jobs(JobState.DEAD, 100_000)]
        return [key for key in chosen if store.retry_job(key)]

    retried = _jobs(retry)
    missing = sorted(set(keys) - set(retried))
    click.echo(f"retried {len(retried)} job(s)")
    if missing:
        fail(f"not dead jobs (nothing done): {', '.join(missing)}")


@jobs.command("purge")
@click.option(
    "--state", type=click.Choice([state.value for state in JobState]), default="dead",
    show_default=True,
)  # fmt: skip
def jobs_purge(*, state: str) -> None:
    """Delete every job in a state (dead, by default) for good."""
    click.echo(f"purged {_jobs(lambda store: store.purge_jobs(JobState(state)))} job(s)")


def _jobs(operation: Callable[[Store], T]) -> T:
    try:
        store = open_store(None)
        try:
            return operation(store)
        finally:
            store.close()
    except WebhookKitError as error:
        fail(str(error))


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
