"""The standalone app behind ``gunicorn wsgi:app``, configured from the environment.

Users who only need webhooks run this instead of writing a Flask app: it imports the module
named by ``WEBHOOK_KIT_HANDLERS``, takes the ``WebhookKit`` named ``kit`` from it, and mounts
it with ``/healthz`` for load balancers (``/healthz?deep=1`` also reads the store) and, when
``WEBHOOK_KIT_METRICS=1``, ``/metrics``. The webhook routes are answered directly from WSGI,
in front of Flask's request cycle (see ``WebhookKit.init_app(direct=True)``).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from collections.abc import Mapping
from typing import Any

from flask import Flask, request

from .config import DEFAULTS
from .errors import ConfigurationError, StoreError
from .kit import WebhookKit
from .stores import Store

DEFAULT_HANDLERS = "examples.echo_bot"


def create_app(
    environ: Mapping[str, str] = os.environ, config: Mapping[str, Any] | None = None
) -> Flask:
    """Build the app from environment variables (the keys of ``webhook_kit.config.DEFAULTS``).

    ``TWILIO_AUTH_TOKEN`` is required unless ``WEBHOOK_KIT_VALIDATE=off`` is set explicitly.
    ``config`` overrides the environment (the pytest plugin uses it).
    """
    handlers = environ.get("WEBHOOK_KIT_HANDLERS") or DEFAULT_HANDLERS
    try:
        kit = load_kit(handlers)
    except ConfigurationError as error:
        if environ.get("WEBHOOK_KIT_HANDLERS"):
            raise
        raise ConfigurationError(  # the default bot lives in the repository, not the package
            f"WEBHOOK_KIT_HANDLERS is not set and the default echo bot ({DEFAULT_HANDLERS}, "
            "in the repository's examples/) is not on the Python path: set "
            "WEBHOOK_KIT_HANDLERS (or --handlers) to the module that defines your kit"
        ) from error
    app = Flask("webhook_kit")
    app.config.update(config_from_environ(environ))
    app.config.update(config or {})
    _log_to_stderr()
    # A Celery app named ``celery`` beside ``kit`` runs the background handlers.
    celery = getattr(sys.modules[handlers], "celery", None)
    prefix = environ.get("WEBHOOK_KIT_URL_PREFIX") or None
    kit.init_app(app, url_prefix=prefix, direct=True, celery=celery)
    pipeline = kit.pipeline(app)
    app.add_url_rule("/healthz", "healthz", lambda: _healthz(pipeline.store))
    settings = pipeline.settings
    if settings.metrics:
        from . import metrics

        token = settings.metrics_token
        app.add_url_rule(
            "/metrics", "metrics", metrics.protected_view(token) if token else metrics.view
        )
    return app


def __getattr__(name: str) -> Any:
    """``celery -A webhook_kit.standalone:celery worker``: the standalone app's Celery app."""
    if name != "celery":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    celery = create_app().extensions.get("celery")
    if celery is None:
        raise ConfigurationError(
            "the WEBHOOK_KIT_HANDLERS module defines no Celery app: add celery = Celery(...) "
            "beside kit = WebhookKit()"
        )
    return celery


#: The variables of Twilio's own tools that a ``WEBHOOK_KIT_*`` setting defaults to.
TWILIO_DEFAULTS = {
    "WEBHOOK_KIT_AUTH_TOKEN": "TWILIO_AUTH_TOKEN",
    "WEBHOOK_KIT_ACCOUNT_SID": "TWILIO_ACCOUNT_SID",
    "WEBHOOK_KIT_API_KEY": "TWILIO_API_KEY",
    "WEBHOOK_KIT_API_SECRET": "TWILIO_API_SECRET",
    "WEBHOOK_KIT_REGION": "TWILIO_REGION",
    "WEBHOOK_KIT_EDGE": "TWILIO_EDGE",
}


def config_from_environ(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The ``WEBHOOK_KIT_*`` settings ``environ`` sets, the ``TWILIO_*`` defaults included
    (so that an app built from a given environ never reads them from ``os.environ``; the CLI
    reads the settings this way too)."""
    config: dict[str, Any] = {key: environ[key] for key in DEFAULTS if environ.get(key)}
    for key, twilio in TWILIO_DEFAULTS.items():
        if environ.get(twilio) and key not in config:
            config[key] = environ[twilio]
    return config


def load_kit(module_name: str) -> WebhookKit:
    """Import ``module_name`` and return its ``kit``."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigurationError(
            f"WEBHOOK_KIT_HANDLERS={module_name!r} could not be imported ({error}); name a "
            "module on the Python path that defines kit = WebhookKit()"
        ) from error
    except Exception as error:  # the module itself failed: say where, in one line
        raise ConfigurationError(
            f"importing WEBHOOK_KIT_HANDLERS={module_name!r} failed at {_where(error)}: "
            f"{type(error).__name__}: {error}"
        ) from error
    kit = getattr(module, "kit", None)
    if not isinstance(kit, WebhookKit):
        raise ConfigurationError(
            f"module {module_name!r} has no WebhookKit named 'kit'; define kit = WebhookKit() "
            "and register handlers on it"
        )
    return kit


def _where(error: Exception) -> str:
    """``file:line`` of a syntax error, or of the innermost frame an exception came from."""
    if isinstance(error, SyntaxError):
        return f"{error.filename}:{error.lineno}"
    frames = traceback.extract_tb(error.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def _healthz(store: Store) -> tuple[str, int, dict[str, str]]:
    """``ok``; with ``?deep=1`` only if the store answers a read, else 503."""
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if request.args.get("deep") in ("1", "true"):
        try:
            store.get_message("healthz")
        except StoreError as error:
            logging.getLogger("webhook_kit").warning("healthz: %s", error)
            return "store unavailable\n", 503, headers
    return "ok\n", 200, headers


def _log_to_stderr() -> None:
    logger = logging.getLogger("webhook_kit")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
