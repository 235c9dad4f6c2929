"""What a server checks and says before it serves, and which store a command reads.

A configuration mistake should stop a server at start-up with one line, not surface as a
503 on the first webhook or as a traceback in every gunicorn worker. So the gunicorn
configuration (:mod:`webhook_kit.gunicorn_conf`) and ``webhook-kit serve`` build the app once
before serving, exactly as a worker will, read from its store, and log one banner of what is
in effect; misspelt ``WEBHOOK_KIT_*`` variables are reported with the closest valid name.
The command-line tools open the store the same way and say which one they read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import version

from flask import Flask

from .config import DEFAULTS, SERVER_KEYS, Settings, unknown_keys
from .errors import ConfigurationError, StoreError, WebhookKitError
from .standalone import DEFAULT_HANDLERS, config_from_environ, create_app
from .stores import Store, masked_url, open_store, sqlite_path

log = logging.getLogger("webhook_kit")
#: Loggers of store drivers that log the cause of a failed connection instead of raising it
#: (psycopg's pool retries in the background and raises only "couldn't get a connection").
_DRIVER_LOGGERS = ("psycopg",)


def start(environ: Mapping[str, str] = os.environ) -> Flask:
    """Build the standalone app as a worker will, check its store, log the banner.

    Raises :class:`~webhook_kit.errors.WebhookKitError` with a one-line message naming the
    cause (and any misspelt variable, which is often the cause).
    """
    mistakes = misspelt(environ)
    try:
        app = create_app(environ)
        pipeline = app.extensions["webhook_kit"].pipeline(app)
        check_store(pipeline.store, pipeline.settings.store)
    except WebhookKitError as error:
        if not mistakes:
            raise
        raise ConfigurationError(f"{error} (also: {'; '.join(mistakes)})") from error
    for mistake in mistakes:
        log.warning("%s", mistake)
    log.info("%s", banner(app, environ))
    return app


def misspelt(environ: Mapping[str, str] = os.environ) -> list[str]:
    """A message for each ``WEBHOOK_KIT_*`` variable that is no setting, with the closest."""
    return unknown_keys(environ, [*DEFAULTS, *SERVER_KEYS])


def check_store(store: Store, url: str) -> None:
    """Read once from ``store``; one that cannot serve raises StoreError naming the cause.

    For PostgreSQL the cause is the server's own message (``database "x" does not exist``),
    which psycopg's pool only logs.
    """
    causes: list[BaseException] = []
    with _causes_logged(causes):
        try:
            store.get_message("webhook-kit-start-up-check")
        except StoreError as error:
            store.close()  # its pool would go on retrying (and logging) in the background
            driver = type(error.__cause__).__module__
            if not causes or not driver.startswith(_DRIVER_LOGGERS):  # only its own driver's
                raise
            cause = " ".join(str(causes[-1]).split())
            raise StoreError(f"the store {describe_store(url)} cannot be used: {cause}") from error


@contextmanager
def _causes_logged(into: list[BaseException]) -> Iterator[None]:
    """Collect the exceptions store drivers log meanwhile, instead of printing them."""

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            args = record.args if isinstance(record.args, tuple) else ()
            into.extend(arg for arg in args if isinstance(arg, BaseException))

    handler = Collect(logging.WARNING)
    loggers = [logging.getLogger(name) for name in _DRIVER_LOGGERS]
    saved = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate in zip(loggers, saved, strict=True):
            logger.removeHandler(handler)
            logger.propagate = propagate


def describe_store(url: str) -> str:
    """The store URL as a person should read it: any password masked, a SQLite file absolute
    (a relative one is relative to the working directory, which differs between commands)."""
    if url.partition(":")[0].lower() == "sqlite":
        query = url.partition("?")[2]
        return f"sqlite:///{os.path.abspath(sqlite_path(url))}" + (f"?{query}" if query else "")
    return masked_url(url)


def open_for_command(url: str | None, *, create: bool = False) -> tuple[Store, str]:
    """The store a command-line tool works on, and how to name it to the user: the server's
    (``WEBHOOK_KIT_STORE`` and the other settings read exactly as the server reads them), or
    ``url``.

    A SQLite file that does not exist is refused unless
    ``create``: a command run from another directory would otherwise create and read an
    empty ``./webhook_kit.db`` instead of the server's.
    """
    config = config_from_environ()
    if url:
        config["WEBHOOK_KIT_STORE"] = url
    settings = Settings.from_config(config)
    described = describe_store(settings.store)
    if settings.store.partition(":")[0].lower() == "sqlite" and not create:
        path = sqlite_path(settings.store)
        if not os.path.exists(path):
            relative = "" if os.path.isabs(path) else " (relative to the working directory)"
            raise ConfigurationError(
                f"no store at {os.path.abspath(path)}: WEBHOOK_KIT_STORE={settings.store}"
                f"{relative} names no file yet; set WEBHOOK_KIT_STORE (or --store) to the "
                "server's store, or run this where the server runs"
            )
    store = open_store(
        settings.store,
        retention=settings.retention,
        ledger_retention=settings.ledger_retention,
        timeout=settings.store_timeout,
    )
    check_store(store, settings.store)
    return store, described


def banner(app: Flask, environ: Mapping[str, str] = os.environ) -> str:
    """What this server runs with, one setting a line (like Celery's banner)."""
    kit = app.extensions["webhook_kit"]
    pipeline = kit.pipeline(app)
    settings = pipeline.settings
    registry = kit.registry
    tokens = len(settings.auth_tokens)
    if settings.validate == "off":
        validation = "off: signatures are NOT verified"
    else:
        source = f"{tokens} auth token(s)" if tokens else "tokens from @kit.auth_token_loader"
        validation = f"{settings.validate} ({source})"
    if settings.public_url:
        url = f"public URL {settings.public_url} (forwarded headers ignored)"
    elif settings.proxy_hops:
        url = f"rebuilt from X-Forwarded-* of {settings.proxy_hops} trusted proxy hop(s)"
    else:
        url = "rebuilt from the request (no public URL, no proxy hops: fine without a proxy)"
    routes = sorted(
        f"{'/'.join(sorted(set(rule.methods or ()) - {'HEAD', 'OPTIONS'}))} {rule.rule}"
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
    )
    runner = pipeline.runner
    if runner is None:
        jobs = "off: webhook-kit worker runs them" if registry.background else "none needed"
    else:
        jobs = type(runner).__name__.removesuffix("Runner").lower()
        if jobs == "embedded":
            jobs += f" ({settings.job_threads} threads per worker)"
    rows = [
        ("store", describe_store(settings.store)),
        ("validation", validation),
        ("signed URL", url),
        ("handlers", environ.get("WEBHOOK_KIT_HANDLERS") or DEFAULT_HANDLERS),
        ("routes", ", ".join(routes)),
        ("runner", f"{jobs} ({len(registry.background)} background handler(s))"),
    ]
    lines = [f"webhook_kit {version('webhook_kit')}"]
    lines += [f"  {name:<11} {value}" for name, value in rows]
    return "\n".join(lines)
