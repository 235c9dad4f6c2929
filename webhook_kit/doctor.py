"""``webhook-kit doctor``: does the Twilio account call the URLs this app verifies?

A webhook that Twilio posts to a URL the app does not expect fails in ways that are hard to
see from the app: a 404 on a stale path, a 403 when the host, scheme or port differ from the
URL the signature is checked against, nothing at all when a number points at an old server.
The doctor reads the account through the app's own Twilio client (the credentials, API host
and region the app sends with) and compares, for each number and Messaging Service, its
``sms_url`` and ``status_callback`` with the URLs the app's routes answer under
``WEBHOOK_KIT_PUBLIC_URL``; it also checks that the app verifies with the account's auth
token, that the store answers, and that a public URL is set. Each difference names what to
change. It works the same against Twilio and against the emulator.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from .errors import StoreError, WebhookKitError

if TYPE_CHECKING:
    from flask import Flask

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Finding:
    """One difference: what it concerns, what is wrong, and what to change."""

    subject: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.problem}\n    fix: {self.fix}"


@dataclass(frozen=True, slots=True)
class Report:
    """Everything the doctor looked at: the differences, and what matched."""

    findings: tuple[Finding, ...]
    matched: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.findings


def url_differences(actual: str, expected: str, *, path_only: bool = False) -> list[str]:
    """How ``actual`` differs from ``expected``: scheme, host, port, path (empty: they match).

    A query string on ``actual`` is no difference (Twilio signs the URL as called, and the
    app verifies it so); a fragment is never sent. ``path_only`` compares the path alone
    (when the app's public origin is unknown).
    """
    got, want = urlsplit(actual), urlsplit(expected)
    differences: list[str] = []
    if not path_only:
        if got.scheme != want.scheme:
            differences.append(f"scheme {got.scheme or '(none)'}, the app expects {want.scheme}")
        if (got.hostname or "") != (want.hostname or ""):
            differences.append(f"host {got.hostname or '(none)'}, the app is at {want.hostname}")
        ports = (_port(got.scheme, got), _port(want.scheme, want))
        if ports[0] != ports[1]:
            differences.append(f"port {ports[0]}, the app is on {ports[1]}")
    got_path, want_path = got.path or "/", want.path or "/"
    if got_path != want_path:
        differences.append(f"path {got_path}, the app's route is {want_path}")
    return differences


def _port(scheme: str, parts: Any) -> int | None:
    try:
        port: int | None = parts.port
    except ValueError:
        return None
    return port if port is not None else _DEFAULT_PORTS.get(scheme)


def diagnose(app: Flask, client: Any = None, *, numbers: Collection[str] = ()) -> Report:
    """Compare the account behind ``client`` (default: the app's sender's) with ``app``.

    ``numbers`` limits the check to those E.164 numbers (default: all of the account's).
    """
    from twilio.base.exceptions import TwilioException, TwilioRestException

    kit = app.extensions["webhook_kit"]
    pipeline = kit.pipeline(app)
    settings = pipeline.settings
    if client is None:
        client = kit.sender(app).client
    findings: list[Finding] = []
    matched: list[str] = []
    messages_path, status_path = kit.route_path("messages", app), kit.route_path("status", app)
    public = settings.public_url
    expected_messages = (public.rstrip("/") if public else "") + messages_path
    expected_status = (public.rstrip("/") if public else "") + status_path

    findings += _check_store(pipeline.store, settings.store, matched)

    try:
        account = client.api.v2010.accounts(client.account_sid).fetch()
    except TwilioRestException as error:
        findings.append(
            Finding(
                "Twilio credentials",
                f"the account {client.account_sid} refused them ({error.status}, {error.code})",
                "set TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN, or TWILIO_API_KEY and "
                "TWILIO_API_SECRET, to the account's credentials",
            )
        )
        return Report(tuple(findings), tuple(matched))
    except (TwilioException, OSError, WebhookKitError) as error:
        findings.append(
            Finding(
                "Twilio API",
                f"could not be reached: {error}",
                "check the network, or WEBHOOK_KIT_TWILIO_BASE_URL when using the emulator",
            )
        )
        return Report(tuple(findings), tuple(matched))
    findings += _check_token(settings, account, matched)

    governed: set[str] = set()
    try:
        services = client.messaging.v1.services.list()
    except TwilioException:  # an API host without Messaging Services (an emulator)
        services = []
        matched.append("no Messaging Services on this API host: none compared")
    for service in services:
        members = client.messaging.v1.services(service.sid).phone_numbers.list()
        pool = [member.phone_number for member in members]
        findings += _check_service(
            service,
            pool=pool,
            expected_messages=expected_messages,
            expected_status=expected_status,
            path_only=public is None,
            matched=matched,
        )
        if not service.use_inbound_webhook_on_number:
            governed.update(pool)

    wanted = set(numbers)
    seen: set[str] = set()
    origins: list[str] = []
    for number in client.incoming_phone_numbers.stream():
        if wanted and number.phone_number not in wanted:
            continue
        seen.add(number.phone_number)
        if number.sms_url and not url_differences(number.sms_url, messages_path, path_only=True):
            parts = urlsplit(number.sms_url)
            origins.append(f"{parts.scheme}://{parts.netloc}")
        findings += _check_number(
            number,
            expected_messages,
            expected_status,
            path_only=public is None,
            governed=number.phone_number in governed,
            matched=matched,
        )
    if public is None:
        origin = max(set(origins), key=origins.count) if origins else "https://bot.example.com"
        findings.insert(
            0,
            Finding(
                "WEBHOOK_KIT_PUBLIC_URL",
                "not set: signatures are checked against the Host and scheme each request "
                f"arrives with (WEBHOOK_KIT_PROXY_HOPS={settings.proxy_hops}), which a proxy "
                "can change, and kit.send has no status callback URL to give Twilio; only "
                "paths were compared",
                f"set WEBHOOK_KIT_PUBLIC_URL={origin}",
            ),
        )
    for missing in sorted(wanted - seen):
        findings.append(
            Finding(
                missing,
                "is not a number of this account",
                "check the number, or the account in TWILIO_ACCOUNT_SID",
            )
        )
    return Report(tuple(findings), tuple(matched))


def _check_store(store: Any, url: str, matched: list[str]) -> list[Finding]:
    try:
        store.get_message("webhook-kit-doctor")
    except StoreError as error:
        return [
            Finding(
                "WEBHOOK_KIT_STORE",
                f"{url} does not answer: {error}",
                "start the store, or point WEBHOOK_KIT_STORE at one that runs",
            )
        ]
    matched.append(f"store {url} answers")
    return []


def _check_token(settings: Any, account: Any, matched: list[str]) -> list[Finding]:
    if settings.validate == "off":
        return [
            Finding(
                "WEBHOOK_KIT_VALIDATE",
                "off: the app accepts webhooks without checking their signature",
                "remove WEBHOOK_KIT_VALIDATE=off outside local development",
            )
        ]
    token = getattr(account, "auth_token", None)
    if not token:
        matched.append("auth token not readable with these credentials: not compared")
        return []
    if token in settings.auth_tokens:
        matched.append("the app verifies with the account's auth token")
        return []
    if not settings.auth_tokens and settings.shared_keys:
        matched.append("the app verifies shared-key signatures only (no auth token set)")
        return []
    return [
        Finding(
            "WEBHOOK_KIT_AUTH_TOKEN",
            "is not the account's auth token: Twilio signs with the account's, so every "
            "webhook would be refused with 403",
            "set TWILIO_AUTH_TOKEN (or WEBHOOK_KIT_AUTH_TOKEN) to the account's primary auth "
            "token; during a rotation list both, comma-separated",
        )
    ]


def _check_url(
    subject: str,
    field: str,
    actual: str | None,
    expected: str,
    *,
    path_only: bool,
    required: bool,
    matched: list[str],
) -> list[Finding]:
    if not actual:
        if not required:
            return []
        return [
            Finding(
                f"{subject} {field}",
                "is empty: incoming messages never reach the app",
                f"set {field} to {expected}",
            )
        ]
    differences = url_differences(actual, expected, path_only=path_only)
    if not differences:
        matched.append(f"{subject} {field} {actual}")
        return []
    return [
        Finding(
            f"{subject} {field}",
            f"{actual} differs from what the app verifies: " + "; ".join(differences),
            f"set {field} to {expected}" + (" (keep your query string)" if "?" in actual else ""),
        )
    ]


def _check_number(
    number: Any,
    expected_messages: str,
    expected_status: str,
    *,
    path_only: bool,
    governed: bool,
    matched: list[str],
) -> list[Finding]:
    subject = f"number {number.phone_number} ({number.sid})"
    if number.sms_application_sid:
        matched.append(f"{subject} uses TwiML App {number.sms_application_sid}: not compared")
        return []
    findings: list[Finding] = []
    if governed:
        matched.append(f"{subject} sms_url: its Messaging Service's inbound URL applies")
    else:
        findings += _check_url(
            subject,
            "sms_url",
            number.sms_url,
            expected_messages,
            path_only=path_only,
            required=True,
            matched=matched,
        )
    findings += _check_url(
        subject,
        "status_callback",
        number.status_callback,
        expected_status,
        path_only=path_only,
        required=False,
        matched=matched,
    )
    return findings


def _check_service(
    service: Any,
    *,
    pool: Iterable[str],
    expected_messages: str,
    expected_status: str,
    path_only: bool,
    matched: list[str],
) -> list[Finding]:
    subject = f"Messaging Service {service.friendly_name} ({service.sid})"
    findings: list[Finding] = []
    if service.use_inbound_webhook_on_number:
        matched.append(f"{subject}: its numbers' own sms_url apply ({', '.join(pool)})")
    else:
        findings += _check_url(
            subject,
            "inbound_request_url",
            service.inbound_request_url,
            expected_messages,
            path_only=path_only,
            required=True,
            matched=matched,
        )
    findings += _check_url(
        subject,
        "status_callback",
        service.status_callback,
        expected_status,
        path_only=path_only,
        required=False,
        matched=matched,
    )
    return findings


def run(numbers: Collection[str] = (), environ: Mapping[str, str] = os.environ) -> int:
    """The command: build the standalone app from ``environ``, print the report; 1 if not ok."""
    from .standalone import create_app

    try:
        app = create_app(environ)
        report = diagnose(app, numbers=numbers)
    except WebhookKitError as error:
        click.echo(f"error: {error}", err=True)
        return 1
    for line in report.matched:
        click.echo(f"ok: {line}")
    for finding in report.findings:
        click.echo(f"DIFFERENCE {finding}")
    if report.ok:
        click.echo("webhook-kit doctor: the account calls the URLs this app verifies")
        return 0
    click.echo(f"webhook-kit doctor: {len(report.findings)} difference(s) to fix", err=True)
    return 1
