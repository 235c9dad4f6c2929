"""Configuration keys, their defaults, and the checked settings built from them.

Every key starts with ``WEBHOOK_KIT_`` and is set with ``app.config.setdefault``, so
``app.config`` shows the values in effect. Bad values fail at start-up with a message that
names the key, never on the first webhook.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from .errors import ConfigurationError
from .jobs.execute import JobSettings

ValidateMode = Literal["enforce", "log-only", "off"]
N = TypeVar("N", int, float)
_MODES: tuple[ValidateMode, ...] = ("enforce", "log-only", "off")

#: key -> (default, what it is for); docs/configuration.md documents each (a test checks).
DEFAULTS: dict[str, tuple[Any, str]] = {
    "WEBHOOK_KIT_AUTH_TOKEN": (
        None,
        "Twilio auth token(s); a list or comma-separated string allows rotation. "
        "Defaults to the TWILIO_AUTH_TOKEN environment variable.",
    ),
    "WEBHOOK_KIT_SHARED_KEYS": (
        None,
        "shared keys of Twilio's Webhooks configuration API, KEY_ID:SECRET pairs "
        "(comma-separated, or a dict); several at once for a rotation",
    ),
    "WEBHOOK_KIT_BASIC_AUTH": (
        None,
        "USER:PASSWORD pair(s) Twilio must send with HTTP Basic (comma-separated, or a "
        "list; several for a rotation); the signature is checked as well",
    ),
    "WEBHOOK_KIT_VALIDATE": ("enforce", "enforce | log-only | off"),
    "WEBHOOK_KIT_PUBLIC_URL": (None, "public base URL Twilio calls, e.g. https://example.com"),
    "WEBHOOK_KIT_PROXY_HOPS": (0, "number of trusted proxies in front of the app"),
    "WEBHOOK_KIT_STORE": ("sqlite:///webhook_kit.db", "memory://, sqlite:///path or redis://"),
    "WEBHOOK_KIT_RETENTION": (24 * 3600, "seconds a finished idempotency key is remembered"),
    "WEBHOOK_KIT_LEDGER_RETENTION": (
        7 * 24 * 3600,
        "seconds a message's ledger record is kept after its last callback",
    ),
    "WEBHOOK_KIT_MAX_BODY": (64 * 1024, "largest accepted request body in bytes (else 413)"),
    "WEBHOOK_KIT_EVENTS_MAX_BODY": (
        1024 * 1024,
        "largest accepted Event Streams batch in bytes (else 413)",
    ),
    "WEBHOOK_KIT_EVENTS_MAX_BATCH": (1000, "most events in one Event Streams batch (else 413)"),
    "WEBHOOK_KIT_EVENTS_BUDGET": (
        3.0,
        "seconds an Event Streams batch may take (Twilio waits 5): past it the events left "
        "are not applied, the answer is 503, and Twilio's retry applies them",
    ),
    "WEBHOOK_KIT_CLAIM_WAIT": (2.0, "seconds a duplicate waits for the first delivery"),
    "WEBHOOK_KIT_CLAIM_LEASE": (
        15.0,
        "seconds before the unfinished claim of a worker on another host may be taken over",
    ),
    "WEBHOOK_KIT_STORE_TIMEOUT": (
        2.0,
        "seconds a store operation may wait (SQLite's write lock, Redis's connect and reply) "
        "before the request gets 503",
    ),
    "WEBHOOK_KIT_MAX_SEGMENTS": (3, "log a warning when a reply costs more SMS segments"),
    "WEBHOOK_KIT_ERROR_REPLY": (None, "text sent when a handler fails (default: no reply, 500)"),
    "WEBHOOK_KIT_METRICS": (False, "count webhooks in Prometheus metrics (webhook_kit[metrics])"),
    "WEBHOOK_KIT_METRICS_TOKEN": (
        None,
        "bearer token the standalone app's /metrics requires (default: none)",
    ),
    "WEBHOOK_KIT_CONVERSATION_TTL": (
        4 * 3600,
        "seconds a conversation is kept after its last message",
    ),
    "WEBHOOK_KIT_OPT_OUT_KEYWORDS": (
        "on",
        "on: answer STOP/START/HELP keywords Advanced Opt-Out did not answer; off: leave them",
    ),
    "WEBHOOK_KIT_STOP_REPLY": (None, "text answering STOP and its synonyms (default: built in)"),
    "WEBHOOK_KIT_START_REPLY": (None, "text answering START, YES, UNSTOP (default: built in)"),
    "WEBHOOK_KIT_HELP_REPLY": (None, "text answering HELP and INFO (default: built in)"),
    "WEBHOOK_KIT_ACCOUNT_SID": (None, "account that sends (default: $TWILIO_ACCOUNT_SID)"),
    "WEBHOOK_KIT_API_KEY": (None, "API key SID to send with (default: $TWILIO_API_KEY)"),
    "WEBHOOK_KIT_API_SECRET": (None, "its secret (default: $TWILIO_API_SECRET)"),
    "WEBHOOK_KIT_REGION": (None, "Twilio region to send through, e.g. ie1 ($TWILIO_REGION)"),
    "WEBHOOK_KIT_EDGE": (None, "Twilio edge location, e.g. dublin ($TWILIO_EDGE)"),
    "WEBHOOK_KIT_TWILIO_BASE_URL": (None, "send to this API base URL instead (the emulator)"),
    "WEBHOOK_KIT_SECRET_KEY": (
        None,
        "signs correlation tokens in status callback URLs (default: SECRET_KEY, else the "
        "primary auth token)",
    ),
    "WEBHOOK_KIT_RUNNER": (
        None,
        "who runs background=True handlers: embedded (threads in each worker), celery "
        "(init_app(celery=...) or app.extensions['celery']), or off (webhook-kit worker "
        "only); default: celery when a Celery app is given, else embedded",
    ),
    "WEBHOOK_KIT_JOB_LEASE": (30.0, "seconds a runner holds a job before another takes it over"),
    "WEBHOOK_KIT_JOB_ATTEMPTS": (5, "runs of a failing job before it is dead"),
    "WEBHOOK_KIT_JOB_BACKOFF": (2.0, "seconds before a job's first retry, doubled each time"),
    "WEBHOOK_KIT_JOB_THREADS": (4, "embedded runner threads per process"),
    "WEBHOOK_KIT_JOB_POLL": (0.5, "seconds between the embedded runner's polls of the store"),
    "WEBHOOK_KIT_LEDGER_PAGE": (
        False,
        "serve a read-only ledger page at <prefix>/ledger: open from loopback, else Basic "
        "auth with the account SID and auth token",
    ),
}
_RUNNERS = ("embedded", "celery", "off")
PREFIX = "WEBHOOK_KIT_"
#: Read from the environment by the standalone app and its gunicorn configuration only.
SERVER_KEYS: dict[str, str] = {
    "WEBHOOK_KIT_HANDLERS": "the module defining kit = WebhookKit() that the server serves",
    "WEBHOOK_KIT_URL_PREFIX": "where the standalone app mounts the webhook routes",
    "WEBHOOK_KIT_BIND": "address gunicorn listens on (default: 0.0.0.0:$PORT, else 127.0.0.1:8000)",
    "WEBHOOK_KIT_REQUIRE_SERVICES": "1: webhook_kit's own test suite fails instead of skipping",
}


def unknown_keys(names: Iterable[str], known: Iterable[str]) -> list[str]:
    """One message per ``WEBHOOK_KIT_*`` name that is not in ``known``, with the closest one.

    A misspelt setting is otherwise silently ignored (``WEBHOOK_KIT_STOR`` would leave the
    store at its default), so the server and ``init_app`` report each one at start-up.
    """
    valid = {name.removeprefix(PREFIX) for name in known}  # the shared prefix is no likeness
    messages = []
    for name in sorted(n for n in names if isinstance(n, str) and n.startswith(PREFIX)):
        if name.removeprefix(PREFIX) in valid:
            continue
        close = difflib.get_close_matches(name.removeprefix(PREFIX), sorted(valid), n=1)
        hint = f"did you mean {PREFIX}{close[0]}?" if close else "the settings are in the docs"
        messages.append(f"{name} is not a webhook_kit setting and is ignored: {hint}")
    return messages


@dataclass(frozen=True, slots=True)
class Settings:
    auth_tokens: tuple[str, ...]
    #: Shared key id -> secret.
    shared_keys: Mapping[str, str]
    #: ``(user, password)`` pairs accepted with HTTP Basic; empty: none required.
    basic_auth: tuple[tuple[str, str], ...]
    validate: ValidateMode
    public_url: str | None
    proxy_hops: int
    store: str
    retention: float
    ledger_retention: float
    max_body: int
    claim_wait: float
    claim_lease: float
    store_timeout: float
    max_segments: int
    error_reply: str | None
    metrics: bool
    metrics_token: str | None
    conversation_ttl: float = 4 * 3600.0
    #: Recognise the default opt-out keywords when Advanced Opt-Out did not answer them.
    opt_out_keywords: bool = True
    #: The compliance texts by keyword type (``STOP``, ``START``, ``HELP``); "" sends none.
    opt_out_replies: Mapping[str, str] = field(default_factory=dict)
    #: Signs the correlation tokens of sends; None when nothing is configured to sign with.
    secret_key: str | None = None
    #: "embedded", "celery", "off", or "" (celery if init_app gets a Celery app).
    runner: str = ""
    jobs: JobSettings = field(default_factory=JobSettings)
    job_threads: int = 4
    job_poll: float = 0.5
    #: The account (``WEBHOOK_KIT_ACCOUNT_SID``, default ``$TWILIO_ACCOUNT_SID``).
    account_sid: str | None = None
    #: Serve the read-only ledger page.
    ledger_page: bool = False
    events_max_body: int = 1024 * 1024
    events_max_batch: int = 1000
    events_budget: float = 3.0

    @classmethod
    def from_config(
        cls, config: MutableMapping[str, Any], environ: Mapping[str, str] = os.environ
    ) -> Settings:
        """Fill in defaults with ``setdefault`` and check every value."""
        for key, (default, _) in DEFAULTS.items():
            config.setdefault(key, default)
        if config["WEBHOOK_KIT_AUTH_TOKEN"] is None:
            config["WEBHOOK_KIT_AUTH_TOKEN"] = environ.get("TWILIO_AUTH_TOKEN") or None
        validate = str(config["WEBHOOK_KIT_VALIDATE"]).strip().lower()
        if validate not in _MODES:
            raise ConfigurationError(
                f"WEBHOOK_KIT_VALIDATE={config['WEBHOOK_KIT_VALIDATE']!r}: use enforce, "
                "log-only or off"
            )
        public_url = config["WEBHOOK_KIT_PUBLIC_URL"] or None
        if public_url is not None and not str(public_url).startswith(("http://", "https://")):
            raise ConfigurationError(
                f"WEBHOOK_KIT_PUBLIC_URL={public_url!r} must start with http:// or https://"
            )
        runner = str(config["WEBHOOK_KIT_RUNNER"] or "").strip().lower()
        if runner and runner not in _RUNNERS:
            raise ConfigurationError(
                f"WEBHOOK_KIT_RUNNER={config['WEBHOOK_KIT_RUNNER']!r}: use embedded, celery or off"
            )
        return cls(
            auth_tokens=_tokens(config["WEBHOOK_KIT_AUTH_TOKEN"]),
            shared_keys=dict(_pairs(config, "WEBHOOK_KIT_SHARED_KEYS", "KEY_ID:SECRET")),
            basic_auth=_pairs(config, "WEBHOOK_KIT_BASIC_AUTH", "USER:PASSWORD"),
            validate=validate,
            public_url=public_url,
            proxy_hops=_number(config, "WEBHOOK_KIT_PROXY_HOPS", int, minimum=0),
            store=str(config["WEBHOOK_KIT_STORE"]),
            retention=_number(config, "WEBHOOK_KIT_RETENTION", float, minimum=1),
            ledger_retention=_number(config, "WEBHOOK_KIT_LEDGER_RETENTION", float, minimum=1),
            max_body=_number(config, "WEBHOOK_KIT_MAX_BODY", int, minimum=1),
            claim_wait=_number(config, "WEBHOOK_KIT_CLAIM_WAIT", float, minimum=0),
            claim_lease=_number(config, "WEBHOOK_KIT_CLAIM_LEASE", float, minimum=1),
            store_timeout=_number(config, "WEBHOOK_KIT_STORE_TIMEOUT", float, minimum=0.05),
            max_segments=_number(config, "WEBHOOK_KIT_MAX_SEGMENTS", int, minimum=1),
            error_reply=config["WEBHOOK_KIT_ERROR_REPLY"] or None,
            metrics=_flag(config, "WEBHOOK_KIT_METRICS"),
            metrics_token=config["WEBHOOK_KIT_METRICS_TOKEN"] or None,
            conversation_ttl=_number(config, "WEBHOOK_KIT_CONVERSATION_TTL", float, minimum=1),
            opt_out_keywords=_flag(config, "WEBHOOK_KIT_OPT_OUT_KEYWORDS"),
            opt_out_replies={
                kind: str(config[f"WEBHOOK_KIT_{kind}_REPLY"])
                for kind in ("STOP", "START", "HELP")
                if config[f"WEBHOOK_KIT_{kind}_REPLY"] is not None
            },
            secret_key=(
                config["WEBHOOK_KIT_SECRET_KEY"]
                or config.get("SECRET_KEY")
                or next(iter(_tokens(config["WEBHOOK_KIT_AUTH_TOKEN"])), None)
            ),
            runner=runner,
            jobs=JobSettings(
                lease=_number(config, "WEBHOOK_KIT_JOB_LEASE", float, minimum=1),
                attempts=_number(config, "WEBHOOK_KIT_JOB_ATTEMPTS", int, minimum=1),
                backoff=_number(config, "WEBHOOK_KIT_JOB_BACKOFF", float, minimum=0),
            ),
            job_threads=_number(config, "WEBHOOK_KIT_JOB_THREADS", int, minimum=1),
            job_poll=_number(config, "WEBHOOK_KIT_JOB_POLL", float, minimum=0.01),
            account_sid=(
                str(config["WEBHOOK_KIT_ACCOUNT_SID"] or environ.get("TWILIO_ACCOUNT_SID") or "")
                or None
            ),
            ledger_page=_flag(config, "WEBHOOK_KIT_LEDGER_PAGE"),
            events_max_body=_number(config, "WEBHOOK_KIT_EVENTS_MAX_BODY", int, minimum=1),
            events_max_batch=_number(config, "WEBHOOK_KIT_EVENTS_MAX_BATCH", int, minimum=1),
            events_budget=_number(config, "WEBHOOK_KIT_EVENTS_BUDGET", float, minimum=0),
        )


def _tokens(value: object) -> tuple[str, ...]:
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ConfigurationError(
            "WEBHOOK_KIT_AUTH_TOKEN must be a string (comma-separated for rotation) or a list"
        )
    return tuple(token.strip() for token in items if str(token).strip())


def _pairs(config: Mapping[str, Any], key: str, form: str) -> tuple[tuple[str, str], ...]:
    """``A:B`` items (comma-separated, a list, or a dict) split at the first colon."""
    value = config[key]
    if not value:
        return ()
    if isinstance(value, Mapping):
        items = [(str(name), str(secret)) for name, secret in value.items()]
    elif isinstance(value, str | list | tuple):
        parts = value.split(",") if isinstance(value, str) else value
        items = []
        for number, part in enumerate(parts, 1):
            name, colon, secret = str(part).strip().partition(":")
            if not colon:  # the message must not show the item: it may be the secret
                raise ConfigurationError(f"{key}: item {number} is not {form} (comma-separated)")
            items.append((name.strip(), secret.strip()))
    else:
        raise ConfigurationError(f"{key} must be a string of {form} pairs, a list or a dict")
    for name, secret in items:
        if not name or not secret:
            raise ConfigurationError(f"{key}: each {form} pair needs both parts")
    return tuple(items)


def _flag(config: Mapping[str, Any], key: str) -> bool:
    value = config[key]
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"", "0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{key}={value!r} must be 1 or 0 (on or off, true or false)")


def _number(config: Mapping[str, Any], key: str, kind: type[N], *, minimum: float) -> N:
    try:
        value = kind(config[key])
    except (TypeError, ValueError):
        raise ConfigurationError(f"{key}={config[key]!r} must be a number") from None
    if value < minimum:
        raise ConfigurationError(f"{key}={value!r} must be at least {minimum:g}")
    return value
