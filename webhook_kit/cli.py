"""The ``webhook-kit`` command: serve the standalone app, poke a running one, check TwiML,
run the Twilio emulator.

Every failure a user can cause (server unreachable, bad URL, missing token, unreadable
file) is one ``error:`` line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import dataclasses
import http.client
import io
import json
import math
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TextIO, TypeVar
from urllib.parse import urlencode

import click

from . import startup, testing
from .encoding import SegmentInfo, analyze, smart_encode
from .errors import TwiMLError, WebhookKitError
from .jobs import JobState
from .ledger import Direction, Ledger, record_json
from .optout import OptOuts
from .pages import is_loopback
from .sending import Sender
from .signature import (
    ALGORITHMS,
    HMAC_SHA256,
    SETTINGS_HEADER,
    SignatureSettings,
    body_sha256,
    compute_signature,
)
from .standalone import config_from_environ, create_app, load_kit
from .status import MessageStatus
from .stores import Store
from .twiml import Message, MessagingResponse, Redirect, lint, parse

DEFAULT_BASE = "http://127.0.0.1:8000/twilio"
T = TypeVar("T")
_PORT = click.IntRange(0, 65535)


@click.group()
@click.version_option(package_name="webhook_kit")
def main() -> None:
    """Receive, test and debug Twilio messaging webhooks."""


@main.command()
@click.option("--host", help="Address to listen on [default: 127.0.0.1].")
@click.option("--port", type=_PORT, help="Port to listen on [default: 8000].")
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
    if handlers:
        os.environ["WEBHOOK_KIT_HANDLERS"] = handlers
    sys.path.insert(0, os.getcwd())  # the handlers module usually lives in the project
    address = f"{host or '127.0.0.1'}:{8000 if port is None else port}"
    if use_gunicorn:
        try:
            create_app()  # a configuration error is one line here, before gunicorn is started
        except WebhookKitError as error:
            _fail(str(error))
        args = [sys.executable, "-m", "gunicorn", "--config", "python:webhook_kit.gunicorn_conf"]
        args += ["webhook_kit.wsgi:app"]
        if host or port is not None:
            args += ["--bind", address]
        if workers:
            args += ["--workers", str(workers)]
        os.execv(sys.executable, args)
    try:
        app = startup.start()
    except WebhookKitError as error:
        _fail(str(error))
    app.run(host=host or "127.0.0.1", port=8000 if port is None else port)


@main.command()
@click.option("--handlers", help="Module defining `kit` (default: WEBHOOK_KIT_HANDLERS).")
@click.option("--number", "numbers", multiple=True, help="Check only this number (repeatable).")
def doctor(*, handlers: str | None, numbers: tuple[str, ...]) -> None:
    """Check that the account's numbers and services call the URLs this app verifies."""
    from .doctor import run

    if handlers:
        os.environ["WEBHOOK_KIT_HANDLERS"] = handlers
    sys.path.insert(0, os.getcwd())  # the handlers module usually lives in the project
    sys.exit(run(numbers))


@main.command()
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
            _fail(str(error))
    with _opened(store) as opened:
        opened.maintain(full=True)
    click.echo("maintained")
    if kit is None:
        return
    environ = {**os.environ, "WEBHOOK_KIT_HANDLERS": str(handlers)}
    if store:
        environ["WEBHOOK_KIT_STORE"] = store
    try:
        ran = kit.run_timeouts(create_app(environ))
    except WebhookKitError as error:
        _fail(str(error))
    click.echo(f"ran {ran} conversation timeout(s)")


_STORE_OPTION = click.option(
    "--store", help="Store URL (default: WEBHOOK_KIT_STORE, else the SQLite default)."
)


@main.group()
def conversations() -> None:
    """Conversations kept in the store."""


@conversations.command("purge")
@click.option("--address", required=True, help="The person's address, e.g. +14155550100.")
@_STORE_OPTION
def conversations_purge(*, address: str, store: str | None) -> None:
    """Remove everything kept about one person (a data-subject request).

    Deletes their conversations (state and history) and every ledger record of a message
    to or from them. Their opt-out records stay, so that they are not texted again.
    """
    if not address.strip():
        _fail("--address is empty: name the person's number, e.g. +14155550100")
    with _opened(store) as opened:
        removed = opened.purge_address(address)
    click.echo(f"removed {removed} conversation(s) and ledger record(s) of {address}")


@main.group("opt-outs")
def opt_outs() -> None:
    """The opt-out registry: who replied STOP to which sender."""


@opt_outs.command("export")
@click.option("--sender", help="Only this number or Messaging Service SID.")
@_STORE_OPTION
def opt_outs_export(*, sender: str | None, store: str | None) -> None:
    """Write every opt-out record as CSV to standard output."""
    with _opened(store) as opened:
        OptOuts(opened).export_csv(sys.stdout, sender)


@opt_outs.command("import")
@click.argument("path", type=click.File("r", encoding="utf-8-sig"))
@_STORE_OPTION
def opt_outs_import(*, path: TextIO, store: str | None) -> None:
    """Read opt-out records from CSV (columns sender, address, optionally opted_out)."""
    try:
        text = io.StringIO(path.read())
    except UnicodeDecodeError as error:
        _fail(f"{path.name} is not UTF-8 text ({error.reason} at byte {error.start})")
    with _opened(store, create=True) as opened:
        count = OptOuts(opened).import_csv(text)
    click.echo(f"imported {count} opt-out record(s)")


@contextmanager
def _opened(url: str | None, *, create: bool = False) -> Iterator[Store]:
    """The store the server uses (or ``url``); any WebhookKitError is one error line."""
    try:
        opened = _store(url, create=create)
        try:
            yield opened
        finally:
            opened.close()
    except WebhookKitError as error:
        _fail(str(error))


@main.group()
def simulate() -> None:
    """Send a signed webhook to a running server, as Twilio would."""


def _signing(command: Callable[..., None]) -> Callable[..., None]:
    """The options saying how ``simulate`` signs: auth token, or a shared key."""
    for option in reversed(
        (
            click.option(
                "--token", envvar="TWILIO_AUTH_TOKEN", help="Auth token [env: TWILIO_AUTH_TOKEN]."
            ),
            click.option(
                "--shared-key",
                metavar="KEY_ID:SECRET",
                help="Sign with this shared key (Webhooks configuration API) instead.",
            ),
            click.option(
                "--algorithm",
                type=click.Choice(sorted(ALGORITHMS), case_sensitive=False),
                default=HMAC_SHA256,
                show_default=True,
                help="The shared key's algorithm.",
            ),
        )
    ):
        command = option(command)
    return command


@simulate.command("message")
@click.option("--url", default=f"{DEFAULT_BASE}/messages", show_default=True)
@click.option("--from", "from_", default=testing.CUSTOMER, show_default=True)
@click.option("--to", default=testing.TWILIO_NUMBER, show_default=True)
@click.option("--body", default="Hello", show_default=True)
@click.option("--media", multiple=True, help="A media URL; repeat for several.")
@_signing
def simulate_message(
    *,
    url: str,
    from_: str,
    to: str,
    body: str,
    media: Sequence[str],
    token: str | None,
    shared_key: str | None,
    algorithm: str,
) -> None:
    """Post an inbound message and print the reply."""
    fields = testing.inbound_sms(body, from_=from_, to=to)
    for index, media_url in enumerate(media):
        fields[f"MediaUrl{index}"] = media_url
        fields[f"MediaContentType{index}"] = "image/jpeg"
    if media:
        fields["NumMedia"] = str(len(media))
    _post(url, fields, _signer(token, shared_key, algorithm))


@simulate.command("status")
@click.option("--url", default=f"{DEFAULT_BASE}/status", show_default=True)
@click.option("--sid", required=True, help="The MessageSid the callback is about.")
@click.option("--status", "status", default="delivered", show_default=True)
@click.option("--error-code", type=int, help="ErrorCode, for failed/undelivered.")
@_signing
def simulate_status(
    *,
    url: str,
    sid: str,
    status: str,
    error_code: int | None,
    token: str | None,
    shared_key: str | None,
    algorithm: str,
) -> None:
    """Post a status callback and print the answer."""
    fields = testing.status_callback(sid, status, error_code=error_code)
    _post(url, fields, _signer(token, shared_key, algorithm))


@simulate.command("event")
@click.option("--url", default=f"{DEFAULT_BASE}/events", show_default=True)
@click.option("--sid", required=True, help="The MessageSid the event is about.")
@click.option("--status", "status", default="delivered", show_default=True)
@click.option("--error-code", type=click.IntRange(0), help="errorCode, for failed/undelivered.")
@_signing
def simulate_event(
    *,
    url: str,
    sid: str,
    status: str,
    error_code: int | None,
    token: str | None,
    shared_key: str | None,
    algorithm: str,
) -> None:
    """Post an Event Streams batch of one message status event and print the answer."""
    event = testing.message_event(sid, status, error_code=error_code)
    _post(url, [event], _signer(token, shared_key, algorithm))


Signer = Callable[[str, "dict[str, str] | None"], dict[str, str]]


def _signer(token: str | None, shared_key: str | None, algorithm: str) -> Signer:
    """``(url, fields or None for JSON) -> headers``: signed with the shared key if given."""
    if shared_key is not None:
        key, colon, secret = shared_key.partition(":")
        if not colon or not key or not secret:
            _fail("--shared-key must be KEY_ID:SECRET")
        settings = str(SignatureSettings(key, algorithm.upper()))

        def keyed(url: str, fields: dict[str, str] | None) -> dict[str, str]:
            signature = compute_signature(url, fields, secret, algorithm)
            return {"X-Twilio-Signature": signature, SETTINGS_HEADER: settings}

        return keyed
    if not token:
        _fail("no auth token: set TWILIO_AUTH_TOKEN or pass --token (the server's token)")
    secret_token = token

    def tokened(url: str, fields: dict[str, str] | None) -> dict[str, str]:
        return {"X-Twilio-Signature": compute_signature(url, fields, secret_token)}

    return tokened


@main.group()
def twiml() -> None:
    """Work with TwiML documents."""


@twiml.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, readable=True))
def twiml_check(path: str) -> None:
    """Lint a TwiML file: exit 1 and list the problems if Twilio would reject it."""
    with open(path, "rb") as file:
        problems = lint(file.read())
    if not problems:
        click.echo(f"{path}: ok")
        return
    for problem in problems:
        where = f"{path}:{problem.line}" if problem.line else path
        click.echo(f"{where}: {problem.message}")
    sys.exit(1)


@main.command()
@click.argument("text")
@click.option("--toll-free", is_flag=True, help="US/Canada toll-free segment sizes (152/66).")
def segments(text: str, toll_free: bool) -> None:
    """Show the encoding and SMS segments TEXT would cost."""
    _utf8(text, "TEXT")
    info = analyze(text, toll_free=toll_free)
    click.echo(_describe(info))
    if info.unicode_chars:
        forced = ", ".join(f"{char!r} U+{ord(char):04X}" for char in info.unicode_chars)
        click.echo(f"forced UCS-2 by: {forced}")
        smart = smart_encode(text, toll_free=toll_free)
        if smart.replacements:
            swaps = ", ".join(f"{old!r}->{new!r}" for old, new in smart.replacements)
            click.echo(f"with Smart Encoding ({swaps}): {_describe(smart.after)}")


@main.group()
def ledger() -> None:
    """Query the delivery ledger (the store named by WEBHOOK_KIT_STORE, as the server uses)."""


_JSON = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@ledger.command("show")
@click.argument("sid")
@_JSON
def ledger_show(sid: str, as_json: bool) -> None:
    """Show one message and its callback history."""
    record = _ledger(lambda book: book.get(sid))
    if record is None:
        _fail(f"{sid} is not in the ledger")
    if as_json:
        click.echo(json.dumps(record_json(record), indent=2))
        return
    for name, value in record_json(record).items():
        if name != "history":
            click.echo(f"{name:<13} {'' if value is None else value}")
    click.echo(f"history       {len(record.history)} callback(s)")
    for event in record.history:
        how = {"reconcile": " (reconciled)", "event-streams": " (event streams)"}.get(
            event.source, ""
        )
        code = f" error {event.error_code}" if event.error_code else ""
        click.echo(f"  {event.received_at.isoformat()}  {event.status.value}{code}{how}")


@ledger.command("find")
@click.option("--ref", help="Your reference given to send(ref=...).")
@click.option("--to", help="Recipient address.")
@click.option("--from", "from_", help="Sender address.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([status.value for status in MessageStatus], case_sensitive=False),
    help="Status; repeat for several.",
)
@click.option(
    "--direction",
    type=click.Choice([direction.value for direction in Direction], case_sensitive=False),
)
@click.option("--since", help="Created at or after: 1h, 30m, 2d, or an ISO time.")
@click.option("--until", help="Created before: 1h, 30m, 2d, or an ISO time.")
@click.option("--limit", default=50, show_default=True, help="Records per page.")
@click.option("--cursor", help="The cursor printed after the previous page.")
@_JSON
def ledger_find(
    *,
    ref: str | None,
    to: str | None,
    from_: str | None,
    statuses: Sequence[str],
    direction: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List messages matching every given filter, newest first."""
    start, end = _moment(since, "--since"), _moment(until, "--until")
    page = _ledger(
        lambda book: book.find(
            ref=ref,
            to=to,
            from_=from_,
            status=list(statuses),
            direction=direction,
            since=start,
            until=end,
            limit=limit,
            cursor=cursor,
        )
    )
    if as_json:
        records = [record_json(record) for record in page]
        click.echo(json.dumps({"records": records, "cursor": page.cursor}, indent=2))
        return
    rows = [
        (
            record.message_sid,
            record.direction.value if record.direction else "",
            record.status.value if record.status else "",
            str(record.error_code or ""),
            record.to or "",
            record.from_ or "",
            record.created_at.strftime("%Y-%m-%d %H:%M:%S") if record.created_at else "",
            record.ref or "",
        )
        for record in page
    ]
    _table(("SID", "DIRECTION", "STATUS", "ERROR", "TO", "FROM", "CREATED (UTC)", "REF"), rows)
    if page.cursor:
        click.echo(f"more: --cursor {page.cursor}")


@ledger.command("stats")
@click.option("--since", default="1h", show_default=True, help="1h, 30m, 2d, or an ISO time.")
@_JSON
def ledger_stats(since: str, as_json: bool) -> None:
    """Counts by status and error code, delivery rate and sent->delivered latency."""
    start = _moment(since, "--since")
    stats = _ledger(lambda book: book.stats(since=start))
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(stats), indent=2))
        return
    click.echo(f"messages       {stats.total} since {since}")
    rate = "-" if stats.delivery_rate is None else f"{stats.delivery_rate:.1%}"
    click.echo(f"delivery rate  {rate} of the messages that reached a final status")
    if stats.latency:
        figures = ", ".join(f"{name} {value:.2f}s" for name, value in stats.latency.items())
        click.echo(f"sent->delivered {figures}")
    _table(("STATUS", "COUNT"), [(name, str(count)) for name, count in stats.by_status.items()])
    if stats.by_error_code:
        errors = [(str(code), str(count)) for code, count in stats.by_error_code.items()]
        _table(("ERROR", "COUNT"), errors)


@main.command()
@click.option("--older-than", default="10m", show_default=True, help="Age: 90s, 10m, 1h, 2d.")
@_JSON
def reconcile(older_than: str, as_json: bool) -> None:
    """Fetch every ledger message not final after --older-than from Twilio; apply its status."""
    age = _duration(older_than, "--older-than")
    try:
        store = _store(None)
        report = Sender.from_config(config_from_environ(), store).reconcile(older_than=age)
    except WebhookKitError as error:
        _fail(str(error))
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report)))
        return
    click.echo(f"checked {report.checked}, updated {report.updated}")
    for sid in report.missing:
        click.echo(f"not found on Twilio: {sid}")


@main.command()
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
    from .standalone import create_app

    if handlers:
        os.environ["WEBHOOK_KIT_HANDLERS"] = handlers
    sys.path.insert(0, os.getcwd())
    config: dict[str, Any] = {"WEBHOOK_KIT_RUNNER": "embedded"}
    if threads is not None:
        config["WEBHOOK_KIT_JOB_THREADS"] = threads
    try:
        app = create_app(config=config)
        app.extensions["webhook_kit"].executor(app)  # fails clearly without background handlers
    except WebhookKitError as error:
        _fail(str(error))
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    store = startup.describe_store(app.config["WEBHOOK_KIT_STORE"])
    click.echo(f"webhook-kit worker running jobs from {store}")
    stop.wait()


@main.group()
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
    _table(["KEY", "STATE", "ATTEMPTS", "CREATED", "LAST ERROR"], rows)


@jobs.command("retry")
@click.argument("keys", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every dead job.")
def jobs_retry(*, keys: tuple[str, ...], every: bool) -> None:
    """Run dead jobs again (attempts start over); the runners pick them up."""
    if not any(key.strip() for key in keys) and not every:
        _fail("name the jobs to retry (see webhook-kit jobs list --state dead), or pass --all")

    def retry(store: Store) -> list[str]:
        chosen = list(keys) or [job.key for job in store.list_jobs(JobState.DEAD, 100_000)]
        return [key for key in chosen if store.retry_job(key)]

    retried = _jobs(retry)
    missing = sorted(set(keys) - set(retried))
    click.echo(f"retried {len(retried)} job(s)")
    if missing:
        _fail(f"not dead jobs (nothing done): {', '.join(missing)}")


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
        store = _store(None)
        try:
            return operation(store)
        finally:
            store.close()
    except WebhookKitError as error:
        _fail(str(error))


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _store(url: str | None, *, create: bool = False) -> Store:
    """The server's store (or ``url``), resolved as the server resolves it; says which."""
    for mistake in startup.misspelt():
        click.echo(f"warning: {mistake}", err=True)
    store, described = startup.open_for_command(url, create=create)
    click.echo(f"store: {described}", err=True)
    return store


def _ledger(query: Callable[[Ledger], T]) -> T:
    try:
        return query(Ledger(_store(None)))
    except WebhookKitError as error:
        _fail(str(error))


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LONGEST = 100 * 365 * 86400.0


def _duration(text: str, option: str) -> float:
    """``90``, ``90s``, ``10m``, ``1h``, ``2d`` -> seconds (at most 100 years)."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= _LONGEST:  # also refuses nan and inf
        _fail(f"{option} {text!r} is not a duration like 90s, 10m, 1h or 2d (up to 100 years)")
    return seconds


def _moment(text: str | None, option: str) -> datetime | None:
    """A duration ago, or an ISO 8601 time (UTC unless it says otherwise)."""
    if text is None:
        return None
    if text[:1].isdigit() and not text[-1:].isdigit() and text[-1:] in _UNITS:
        return datetime.now(UTC) - timedelta(seconds=_duration(text, option))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"{option} {text!r} is neither a duration (1h) nor an ISO time")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        click.echo("  ".join(cells).rstrip())


@main.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8010, show_default=True, type=_PORT, help="Port to listen on.")
@click.option("--state", default="memory://", show_default=True, help="sqlite:///emulator.db")
@click.option("--account-sid", envvar="TWILIO_ACCOUNT_SID", help="[env: TWILIO_ACCOUNT_SID]")
@click.option("--auth-token", envvar="TWILIO_AUTH_TOKEN", help="[env: TWILIO_AUTH_TOKEN]")
@click.option(
    "--api-key", "api_keys", multiple=True, metavar="SK...:SECRET", help="An API key; repeatable."
)
@click.option("--chaos", is_flag=True, help="Status callbacks out of order, duplicated, late.")
@click.option(
    "--drop-final",
    default=0.0,
    type=click.FloatRange(0, 1),
    help="With --chaos: share of final callbacks dropped.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of chaos and probability rules.")
@click.option("--clock", type=click.Choice(["real", "manual"]), default="real", show_default=True)
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0, 1e6, min_open=True),
    help="Real clock: emulated s per s.",
)
@click.option(
    "--rate-limit",
    type=click.FloatRange(0, min_open=True),
    help="REST requests per second before 429s.",
)
@click.option(
    "--number",
    "numbers",
    multiple=True,
    metavar="NUMBER=URL",
    help="A number and its incoming-message URL; repeat for several.",
)
@click.option(
    "--ledger-url",
    metavar="URL",
    help="The app's ledger page (WEBHOOK_KIT_LEDGER_PAGE=1), linked from the inspector.",
)
@click.option(
    "--throughput",
    "rates",
    multiple=True,
    metavar="KIND=RATE",
    help="A sender rate (long_code, toll_free, short_code, international, whatsapp, "
    "whatsapp_media: per second; queue_hours, whatsapp_queue_hours); repeatable.",
)
@click.option(
    "--sink",
    "sinks",
    multiple=True,
    metavar="URL",
    help="An Event Streams webhook sink subscribed to every messaging event; repeatable.",
)
@click.pass_context
def emulator(
    context: click.Context,
    *,
    host: str,
    port: int,
    state: str,
    account_sid: str | None,
    auth_token: str | None,
    api_keys: Sequence[str],
    chaos: bool,
    drop_final: float,
    seed: int,
    clock: str,
    speed: float,
    rate_limit: float | None,
    numbers: Sequence[str],
    ledger_url: str | None,
    rates: Sequence[str],
    sinks: Sequence[str],
) -> None:
    """Run the offline Twilio Messaging emulator (REST API, life cycle, webhooks).

    Its inspector page is at the base URL: open http://127.0.0.1:8010/ in a browser.
    """
    if context.invoked_subcommand is not None:
        return
    from .emulator import Chaos
    from .emulator.core import Account
    from .emulator.serve import AccountServer, listen
    from .emulator.throughput import Throughput

    if ledger_url is not None:
        _check_url(ledger_url, "http://127.0.0.1:8000/twilio/ledger", "--ledger-url")

    def build(account: str | None, token: str | None) -> Account:
        built = Account(
            account_sid=account,
            auth_token=token,
            api_keys=dict(key.partition(":")[::2] for key in api_keys),
            state=state,
            clock="manual" if clock == "manual" else "real",
            speed=speed,
            chaos=Chaos(seed=seed, drop_final=drop_final) if chaos else None,
            seed=seed,
            rate_limit=rate_limit,
            throughput=_throughput(Throughput, rates),
        )
        for entry in numbers:
            number, _, url = entry.partition("=")
            built.add_number(number, sms_url=url or None)
        built.ledger_url = ledger_url
        for sink in sinks:
            built.streams.add_sink(sink)
        return built

    try:  # every bad option fails here, in one line, before gunicorn starts
        checked = build(account_sid, auth_token)
        checked.state.close()
        api = listen(host, port)
        media = listen(host, 0)
    except (WebhookKitError, OSError) as error:
        _fail(str(error))
    account, token = checked.account_sid, checked.auth_token
    server = AccountServer(lambda: build(account, token), api, media)
    click.echo(f"Twilio emulator on {server.url} ({clock} clock, state {state})")
    click.echo(f"TWILIO_ACCOUNT_SID={account}")
    click.echo(f"TWILIO_AUTH_TOKEN={token}", nl=True)
    access = "no credentials on loopback" if is_loopback(host) else "Basic auth: SID and token"
    click.echo(f"Inspector: {server.url}/ ({access})")
    server.run()


def _throughput(kind: Callable[..., T], rates: Sequence[str]) -> T:
    """``--throughput long_code=5 ...`` as the emulator's Throughput (checked by it)."""
    values: dict[str, float] = {}
    for entry in rates:
        name, _, raw = entry.partition("=")
        try:
            values[name.strip()] = float(raw)
        except ValueError:
            _fail(f"--throughput {entry!r}: give KIND=RATE, e.g. long_code=10")
    try:
        return kind(**values)
    except TypeError:
        _fail(f"--throughput: unknown kind in {', '.join(values)}")


@emulator.command("send")
@click.option("--url", default="http://127.0.0.1:8010", show_default=True, help="The emulator.")
@click.option("--from", "from_", required=True, help="The handset, e.g. +15558675309.")
@click.option("--to", required=True, help="A number of the emulated account.")
@click.option("--body", default="", help="The text.")
@click.option("--media", multiple=True, help="A media URL; repeat for several.")
@click.option("--account-sid", envvar="TWILIO_ACCOUNT_SID", required=True)
@click.option("--auth-token", envvar="TWILIO_AUTH_TOKEN", required=True)
def emulator_send(
    *,
    url: str,
    from_: str,
    to: str,
    body: str,
    media: Sequence[str],
    account_sid: str,
    auth_token: str,
) -> None:
    """Text one of the emulator's numbers from a handset; print the replies."""
    fields = [("From", from_), ("To", to), ("Body", body), *(("MediaUrl", m) for m in media)]
    answer = _control(url, "/_emulator/send", fields, account_sid, auth_token)
    click.echo(f"sent {answer['inbound']['sid']}")
    for reply in answer["replies"]:
        click.echo(f"reply {reply['sid']} to {reply['to']}: {reply['body']}")
    if not answer["replies"]:
        click.echo("(no reply)")
    failed = [d for d in answer["deliveries"] if not 200 <= (d["status"] or 0) < 300]
    for delivery in failed:
        how = f"answered {delivery['status']}" if delivery["status"] else "got no answer"
        click.echo(f"{delivery['kind']} webhook {delivery['url']} {how}", err=True)
    if failed and not answer["replies"]:
        _fail("the app did not answer the message; see its log")


@emulator.command("number")
@click.argument("number")
@click.option("--sms-url", help="Incoming-message webhook URL.")
@click.option("--fallback-url", help="Used when the incoming-message URL fails.")
@click.option("--status-callback", help="Status callbacks of the replies sent from it.")
@click.option("--messaging-service-sid", help="The Messaging Service (MG...) it belongs to.")
@click.option("--url", default="http://127.0.0.1:8010", show_default=True, help="The emulator.")
@click.option("--account-sid", envvar="TWILIO_ACCOUNT_SID", required=True)
@click.option("--auth-token", envvar="TWILIO_AUTH_TOKEN", required=True)
def emulator_number(
    *,
    number: str,
    sms_url: str | None,
    fallback_url: str | None,
    status_callback: str | None,
    messaging_service_sid: str | None,
    url: str,
    account_sid: str,
    auth_token: str,
) -> None:
    """Give the running emulator's account NUMBER, with its webhook URLs."""
    fields = [("Number", number)]
    for name, value in (
        ("SmsUrl", sms_url),
        ("SmsFallbackUrl", fallback_url),
        ("StatusCallback", status_callback),
        ("MessagingServiceSid", messaging_service_sid),
    ):
        if value:
            fields.append((name, value))
    answer = _control(url, "/_emulator/numbers", fields, account_sid, auth_token)
    click.echo(f"{answer['number']}: incoming messages go to {answer['sms_url'] or '(nowhere)'}")


@emulator.command("advance")
@click.argument("seconds", type=float)
@click.option("--url", default="http://127.0.0.1:8010", show_default=True, help="The emulator.")
@click.option("--account-sid", envvar="TWILIO_ACCOUNT_SID", required=True)
@click.option("--auth-token", envvar="TWILIO_AUTH_TOKEN", required=True)
def emulator_advance(*, seconds: float, url: str, account_sid: str, auth_token: str) -> None:
    """Move a --clock manual emulator forward SECONDS, running what falls due."""
    answer = _control(
        url, "/_emulator/advance", [("Seconds", str(seconds))], account_sid, auth_token
    )
    click.echo(f"ran {answer['ran']} task(s)")


def _control(
    base: str, path: str, fields: Sequence[tuple[str, str]], account_sid: str, auth_token: str
) -> dict[str, Any]:
    """POST to the emulator's control API; any failure is one ``error:`` line."""
    _check_url(base, "http://127.0.0.1:8010")
    credentials = b64encode(f"{account_sid}:{auth_token}".encode()).decode()
    request = urllib.request.Request(
        base.rstrip("/") + path,
        data=urlencode(list(fields)).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": f"Basic {credentials}",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except json.JSONDecodeError:
        _fail(f"the server at {base} did not answer JSON: is it the emulator?")
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read()).get("message", error.reason)
        except ValueError:
            message = error.reason
        hint = " (check --account-sid and --auth-token)" if error.code == 401 else ""
        _fail(f"the emulator answered {error.code}: {message}{hint}")
    except (urllib.error.URLError, OSError) as error:
        _fail(f"cannot reach the emulator at {base}: {getattr(error, 'reason', error)}")
    except (http.client.HTTPException, ValueError) as error:
        _fail(f"no HTTP answer from {base}: is it the emulator? ({error!r})")
    return answer


def _describe(info: SegmentInfo) -> str:
    unit = "septets" if info.encoding == "GSM-7" else "UTF-16 units"
    sizes = " + ".join(str(size) for size in info.segment_sizes)
    return (
        f"{info.encoding}, {info.units} {unit}, {info.segments} segment(s) "
        f"of up to {info.per_segment} ({sizes})"
    )


def _post(url: str, payload: dict[str, str] | list[dict[str, Any]], sign: Signer) -> None:
    """POST a form (a dict) or an Event Streams batch (a list, sent as signed JSON)."""
    _check_url(url, f"{DEFAULT_BASE}/messages")
    if isinstance(payload, dict):
        for name, value in payload.items():
            _utf8(value, name)
        data = urlencode(payload).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(url, payload)}
    else:
        data = json.dumps(payload).encode()
        url += ("&" if "?" in url else "?") + "bodySHA256=" + body_sha256(data)
        headers = {"Content-Type": "application/json", **sign(url, None)}
    request = urllib.request.Request(
        url,
        data=data,
        headers={**headers, "User-Agent": "webhook-kit-simulate"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            status, reason, body = response.status, response.reason, response.read()
            content_type = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        status, reason, body = error.code, error.reason, error.read()
        content_type = error.headers.get("Content-Type", "")
    except (urllib.error.URLError, OSError) as error:
        _fail(f"cannot reach {url}: {getattr(error, 'reason', error)}")
    except (http.client.HTTPException, ValueError) as error:
        _fail(f"no HTTP answer from {url}: {error!r}")
    click.echo(f"{status} {reason}")
    _show_body(body, content_type)
    if status >= 400:
        sys.exit(1)


def _check_url(url: str, example: str, option: str = "--url") -> None:
    """``--url`` must be a URL Twilio would call (the emulator's own rule, imported lazily)."""
    from .emulator.resource import is_url

    if not is_url(url):
        _fail(f"{option} {url!r} is not an http(s) URL, e.g. {example}")


def _show_body(body: bytes, content_type: str) -> None:
    if "xml" not in content_type:
        text = body.decode(errors="replace").strip()
        if text:
            click.echo(text)
        return
    try:
        response = parse(body)
    except TwiMLError as error:
        click.echo(f"(not valid TwiML: {error})")
        click.echo(body.decode(errors="replace"))
        sys.exit(1)
    _show_twiml(response)


def _show_twiml(response: MessagingResponse) -> None:
    if not response.verbs:
        click.echo("(no reply)")
    for verb in response.verbs:
        if isinstance(verb, Message):
            attributes = "".join(f" {name}={value!r}" for name, value in verb.attrs.items())
            click.echo(f"Message{attributes}: {verb.body}")
            for media_url in verb.media_urls:
                click.echo(f"  media: {media_url}")
        elif isinstance(verb, Redirect):
            click.echo(f"Redirect ({verb.method or 'POST'}): {verb.url}")


def _utf8(text: str, what: str) -> None:
    """Refuse text the shell passed as bytes that are not UTF-8 (surrogate escapes)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        _fail(f"{what} is not valid UTF-8 text")


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


if __name__ == "__main__":
    main()
