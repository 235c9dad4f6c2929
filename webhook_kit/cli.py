"""The ``webhook-kit`` command: serve the standalone app, poke a running one, check TwiML.

Every failure a user can cause (server unreachable, bad URL, missing token, unreadable
file) is one ``error:`` line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn, TextIO
from urllib.parse import urlencode, urlsplit

import click

from . import testing
from .config import DEFAULTS, Settings
from .encoding import SegmentInfo, analyze, smart_encode
from .errors import TwiMLError, WebhookKitError
from .optout import OptOuts
from .signature import compute_signature
from .stores import Store, open_store
from .twiml import Message, MessagingResponse, Redirect, lint, parse

DEFAULT_BASE = "http://127.0.0.1:8000/twilio"


@click.group()
@click.version_option(package_name="webhook_kit")
def main() -> None:
    """Receive, test and debug Twilio messaging webhooks."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, help="Port to listen on.")
@click.option("--handlers", help="Module defining `kit` (default: WEBHOOK_KIT_HANDLERS).")
@click.option("--gunicorn", "use_gunicorn", is_flag=True, help="Serve with gunicorn.")
@click.option("--workers", type=int, help="gunicorn worker processes.")
def serve(
    *, host: str, port: int, handlers: str | None, use_gunicorn: bool, workers: int | None
) -> None:
    """Serve the standalone app (development server, or gunicorn with --gunicorn)."""
    if handlers:
        os.environ["WEBHOOK_KIT_HANDLERS"] = handlers
    sys.path.insert(0, os.getcwd())  # the handlers module usually lives in the project
    if use_gunicorn:
        args = [sys.executable, "-m", "gunicorn", "webhook_kit.standalone:create_app()"]
        args += ["--bind", f"{host}:{port}"]
        if workers:
            args += ["--workers", str(workers)]
        os.execv(sys.executable, args)
    from .standalone import create_app

    try:
        app = create_app()
    except WebhookKitError as error:
        _fail(str(error))
    app.run(host=host, port=port)


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
    with _opened(store) as (opened, url):
        opened.maintain(full=True)
    click.echo(f"maintained {url}")
    if not handlers:
        return
    from .standalone import create_app, load_kit

    sys.path.insert(0, os.getcwd())  # the handlers module usually lives in the project
    environ = {**os.environ, "WEBHOOK_KIT_HANDLERS": handlers}
    if store:
        environ["WEBHOOK_KIT_STORE"] = store
    try:
        ran = load_kit(handlers).run_timeouts(create_app(environ))
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
    with _opened(store) as (opened, _):
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
    with _opened(store) as (opened, _):
        OptOuts(opened).export_csv(sys.stdout, sender)


@opt_outs.command("import")
@click.argument("path", type=click.File("r", encoding="utf-8"))
@_STORE_OPTION
def opt_outs_import(*, path: TextIO, store: str | None) -> None:
    """Read opt-out records from CSV (columns sender, address, optionally opted_out)."""
    with _opened(store) as (opened, _):
        count = OptOuts(opened).import_csv(path)
    click.echo(f"imported {count} opt-out record(s)")


@contextmanager
def _opened(url: str | None) -> Iterator[tuple[Store, str]]:
    """The store the environment (or ``url``) names; any WebhookKitError is one error line."""
    config = {key: os.environ[key] for key in DEFAULTS if os.environ.get(key)}
    if url:
        config["WEBHOOK_KIT_STORE"] = url
    try:
        settings = Settings.from_config(config)
        opened = open_store(
            settings.store,
            retention=settings.retention,
            ledger_retention=settings.ledger_retention,
            timeout=settings.store_timeout,
        )
        try:
            yield opened, settings.store
        finally:
            opened.close()
    except WebhookKitError as error:
        _fail(str(error))


@main.group()
def simulate() -> None:
    """Send a signed webhook to a running server, as Twilio would."""


@simulate.command("message")
@click.option("--url", default=f"{DEFAULT_BASE}/messages", show_default=True)
@click.option("--from", "from_", default=testing.CUSTOMER, show_default=True)
@click.option("--to", default=testing.TWILIO_NUMBER, show_default=True)
@click.option("--body", default="Hello", show_default=True)
@click.option("--media", multiple=True, help="A media URL; repeat for several.")
@click.option("--token", envvar="TWILIO_AUTH_TOKEN", help="Auth token [env: TWILIO_AUTH_TOKEN].")
def simulate_message(
    *, url: str, from_: str, to: str, body: str, media: Sequence[str], token: str | None
) -> None:
    """Post an inbound message and print the reply."""
    fields = testing.inbound_sms(body, from_=from_, to=to)
    for index, media_url in enumerate(media):
        fields[f"MediaUrl{index}"] = media_url
        fields[f"MediaContentType{index}"] = "image/jpeg"
    if media:
        fields["NumMedia"] = str(len(media))
    _post(url, fields, token)


@simulate.command("status")
@click.option("--url", default=f"{DEFAULT_BASE}/status", show_default=True)
@click.option("--sid", required=True, help="The MessageSid the callback is about.")
@click.option("--status", "status", default="delivered", show_default=True)
@click.option("--error-code", type=int, help="ErrorCode, for failed/undelivered.")
@click.option("--token", envvar="TWILIO_AUTH_TOKEN", help="Auth token [env: TWILIO_AUTH_TOKEN].")
def simulate_status(
    *, url: str, sid: str, status: str, error_code: int | None, token: str | None
) -> None:
    """Post a status callback and print the answer."""
    _post(url, testing.status_callback(sid, status, error_code=error_code), token)


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
    info = analyze(text, toll_free=toll_free)
    click.echo(_describe(info))
    if info.unicode_chars:
        forced = ", ".join(f"{char!r} U+{ord(char):04X}" for char in info.unicode_chars)
        click.echo(f"forced UCS-2 by: {forced}")
        smart = smart_encode(text, toll_free=toll_free)
        if smart.replacements:
            swaps = ", ".join(f"{old!r}->{new!r}" for old, new in smart.replacements)
            click.echo(f"with Smart Encoding ({swaps}): {_describe(smart.after)}")


def _describe(info: SegmentInfo) -> str:
    unit = "septets" if info.encoding == "GSM-7" else "UTF-16 units"
    sizes = " + ".join(str(size) for size in info.segment_sizes)
    return (
        f"{info.encoding}, {info.units} {unit}, {info.segments} segment(s) "
        f"of up to {info.per_segment} ({sizes})"
    )


def _post(url: str, fields: dict[str, str], token: str | None) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        _fail(f"--url {url!r} is not an http(s) URL, e.g. {DEFAULT_BASE}/messages")
    if not token:
        _fail("no auth token: set TWILIO_AUTH_TOKEN or pass --token (the server's token)")
    request = urllib.request.Request(
        url,
        data=urlencode(fields).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": compute_signature(url, fields, token),
            "User-Agent": "webhook-kit-simulate",
        },
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
        reason = getattr(error, "reason", error)
        _fail(f"cannot reach {url}: {reason}")
    click.echo(f"{status} {reason}")
    _show_body(body, content_type)
    if status >= 400:
        sys.exit(1)


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
        return
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


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


if __name__ == "__main__":
    main()
