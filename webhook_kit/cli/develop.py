"""The developer's commands: ``simulate`` signed webhooks against a running app, check
``twiml``, count ``segments``, and run or drive the Twilio ``emulator``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

import click

from .. import testing
from ..encoding import SegmentInfo, analyze, smart_encode
from ..errors import TwiMLError, WebhookKitError
from ..pages import is_loopback
from ..signature import (
    ALGORITHMS,
    HMAC_SHA256,
    SETTINGS_HEADER,
    SignatureSettings,
    body_sha256,
    compute_signature,
)
from ..twiml import Message, MessagingResponse, Redirect, lint, parse
from .common import PORT, T, check_url, fail, utf8
from .http import control, post

DEFAULT_BASE = "http://127.0.0.1:8000/twilio"


@click.group()
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
            fail("--shared-key must be KEY_ID:SECRET")
        settings = str(SignatureSettings(key, algorithm.upper()))

        def keyed(url: str, fields: dict[str, str] | None) -> dict[str, str]:
            signature = compute_signature(url, fields, secret, algorithm)
            return {"X-Twilio-Signature": signature, SETTINGS_HEADER: settings}

        return keyed
    if not token:
        fail("no auth token: set TWILIO_AUTH_TOKEN or pass --token (the server's token)")
    secret_token = token

    def tokened(url: str, fields: dict[str, str] | None) -> dict[str, str]:
        return {"X-Twilio-Signature": compute_signature(url, fields, secret_token)}

    return tokened


@click.group()
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


@click.command()
@click.argument("text")
@click.option("--toll-free", is_flag=True, help="US/Canada toll-free segment sizes (152/66).")
def segments(text: str, toll_free: bool) -> None:
    """Show the encoding and SMS segments TEXT would cost."""
    utf8(text, "TEXT")
    info = analyze(text, toll_free=toll_free)
    click.echo(_describe(info))
    if info.unicode_chars:
        forced = ", ".join(f"{char!r} U+{ord(char):04X}" for char in info.unicode_chars)
        click.echo(f"forced UCS-2 by: {forced}")
        smart = smart_encode(text, toll_free=toll_free)
        if smart.replacements:
            swaps = ", ".join(f"{old!r}->{new!r}" for old, new in smart.replacements)
            click.echo(f"with Smart Encoding ({swaps}): {_describe(smart.after)}")


@click.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8010, show_default=True, type=PORT, help="Port to listen on.")
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
    from ..emulator import Chaos
    from ..emulator.core import Account
    from ..emulator.serve import AccountServer, listen
    from ..emulator.throughput import Throughput

    if ledger_url is not None:
        check_url(ledger_url, "http://127.0.0.1:8000/twilio/ledger", "--ledger-url")

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
        fail(str(error))
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
            fail(f"--throughput {entry!r}: give KIND=RATE, e.g. long_code=10")
    try:
        return kind(**values)
    except TypeError:
        fail(f"--throughput: unknown kind in {', '.join(values)}")


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
    answer = control(url, "/_emulator/send", fields, account_sid, auth_token)
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
        fail("the app did not answer the message; see its log")


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
    answer = control(url, "/_emulator/numbers", fields, account_sid, auth_token)
    click.echo(f"{answer['number']}: incoming messages go to {answer['sms_url'] or '(nowhere)'}")


@emulator.command("advance")
@click.argument("seconds", type=float)
@click.option("--url", default="http://127.0.0.1:8010", show_default=True, help="The emulator.")
@click.option("--account-sid", envvar="TWILIO_ACCOUNT_SID", required=True)
@click.option("--auth-token", envvar="TWILIO_AUTH_TOKEN", required=True)
def emulator_advance(*, seconds: float, url: str, account_sid: str, auth_token: str) -> None:
    """Move a --clock manual emulator forward SECONDS, running what falls due."""
    answer = control(
        url, "/_emulator/advance", [("Seconds", str(seconds))], account_sid, auth_token
    )
    click.echo(f"ran {answer['ran']} task(s)")


def _describe(info: SegmentInfo) -> str:
    unit = "septets" if info.encoding == "GSM-7" else "UTF-16 units"
    sizes = " + ".join(str(size) for size in info.segment_sizes)
    return (
        f"{info.encoding}, {info.units} {unit}, {info.segments} segment(s) "
        f"of up to {info.per_segment} ({sizes})"
    )


def _post(url: str, payload: dict[str, str] | list[dict[str, Any]], sign: Signer) -> None:
    """POST a form (a dict) or an Event Streams batch (a list, sent as signed JSON)."""
    check_url(url, f"{DEFAULT_BASE}/messages")
    if isinstance(payload, dict):
        for name, value in payload.items():
            utf8(value, name)
        data = urlencode(payload).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(url, payload)}
    else:
        data = json.dumps(payload).encode()
        url += ("&" if "?" in url else "?") + "bodySHA256=" + body_sha256(data)
        headers = {"Content-Type": "application/json", **sign(url, None)}
    headers["User-Agent"] = "webhook-kit-simulate"
    answer = post(url, data, headers, timeout=15, server=url, origin=url)
    click.echo(f"{answer.status} {answer.reason}")
    _show_body(answer.body, answer.content_type)
    if answer.status >= 400:
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
