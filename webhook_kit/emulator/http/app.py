"""The app factory: Basic auth, the rate limit, the request log and Twilio-shaped errors.

``/2010-04-01/Accounts/{AccountSid}/Messages...`` answers the official client exactly as
api.twilio.com does (JSON, Basic auth, Twilio's error bodies). ``/_emulator/...`` lets a test
or the CLI drive what Twilio would never expose: the clock, numbers, handsets and logs. Every
error, including a malformed request, is a Twilio-shaped 4xx; a 500 would be a bug.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from ..core import Account, RequestRecord
from ..errors import ApiError, EmulatorError
from .accounts import accounts_api
from .content import content_api
from .control import control_api
from .domains import domain_of
from .inspector import PageAccess, inspector_blueprint
from .messages import messages_api
from .numbers import numbers_api
from .services import services_api
from .streams import events_api
from .webhooks import webhooks_api

logger = logging.getLogger("webhook_kit.emulator")
MAX_BODY = 1024 * 1024
_HTTP_CODES = {404: 20404, 405: 20004, 413: 20001}


def create_app(emulator: Account, media_base: str, *, bind: str) -> Flask:
    """The Flask app serving ``emulator``; media bytes redirect to ``media_base``.

    ``bind`` is the address the server listens on: on loopback the inspector page opens
    without credentials (see :class:`~webhook_kit.emulator.http.inspector.PageAccess`).
    """
    app = Flask("webhook_kit.emulator")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["emulator"] = emulator
    limiter = _RateLimiter(emulator.rate_limit)
    page = PageAccess(bind)

    @app.before_request
    def authenticate() -> None:
        g.started = time.time()
        if request.path == "/_emulator/health":
            return
        page.refuse_cross_site()
        if not (page.allows() or _authorised(emulator)):
            raise ApiError(20003, "Authenticate", 401)
        if domain_of(request.path) is not None and not limiter.allow():
            raise ApiError(20429, "Too Many Requests", 429)

    @app.after_request
    def log(response: Response) -> Response:
        if domain_of(request.path) is not None:
            emulator.log_request(
                RequestRecord(
                    request.method,
                    request.path,
                    tuple(request.args.items(multi=True)),
                    tuple(request.form.items(multi=True)) if request.method == "POST" else (),
                    response.status_code,
                    g.get("started", time.time()),
                )
            )
        if request.method not in {"GET", "HEAD"}:  # numbers, settings...: the page re-reads
            emulator.journal.touch()
        return response

    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> tuple[Response, int]:
        response = jsonify(error.body())
        if error.status == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
        return response, error.status

    @app.errorhandler(EmulatorError)
    def emulator_error(error: EmulatorError) -> tuple[Response, int]:
        return jsonify(ApiError(20001, str(error)).body()), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        status = error.code or 400
        if status == 404:
            message = f"The requested resource {request.path} was not found"
        else:
            message = error.description or error.name
        code = _HTTP_CODES.get(status, 20001)
        return jsonify(ApiError(code, message, status).body()), status

    @app.errorhandler(Exception)
    def crash(error: Exception) -> tuple[Response, int]:  # never expected: logged, no traceback
        logger.exception("emulator error on %s %s", request.method, request.path)
        return jsonify(ApiError(20500, "Internal Server Error", 500).body()), 500

    app.register_blueprint(accounts_api(emulator))
    app.register_blueprint(messages_api(emulator, media_base))
    app.register_blueprint(numbers_api(emulator))
    app.register_blueprint(services_api(emulator))
    app.register_blueprint(content_api(emulator))
    app.register_blueprint(control_api(emulator))
    app.register_blueprint(webhooks_api(emulator.webhooks))
    app.register_blueprint(events_api(emulator.streams))
    app.register_blueprint(inspector_blueprint(emulator, page))
    return app


def _authorised(emulator: Account) -> bool:
    auth = request.authorization
    if auth is None or auth.type != "basic" or not auth.username:
        return False
    secret = (
        emulator.auth_token
        if auth.username == emulator.account_sid
        else emulator.api_keys.get(auth.username)
    )
    return secret is not None and secret == auth.password


class _RateLimiter:
    """A token bucket of ``rate`` requests per second (None: unlimited)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.tokens = rate or 0.0
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def allow(self) -> bool:
        if self.rate is None:
            return True
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True
