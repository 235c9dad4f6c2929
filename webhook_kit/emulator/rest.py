"""The emulator's HTTP face: Twilio's 2010-04-01 Messages API, and a small control API.

``/2010-04-01/Accounts/{AccountSid}/Messages...`` answers the official client exactly as
api.twilio.com does (JSON, Basic auth, Twilio's error bodies). ``/_emulator/...`` lets a test
or the CLI drive what Twilio would never expose: the clock, numbers, handsets and logs. Every
error, including a malformed request, is a Twilio-shaped 4xx; a 500 would be a bug.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from .core import Emulator, RequestRecord
from .delivery import delivery_json
from .errors import ApiError, EmulatorError
from .inspector import PageAccess, inspector_blueprint
from .model import (
    ACCOUNT_SID_RE,
    API_VERSION,
    MEDIA_SID_RE,
    MESSAGE_SID_RE,
    media_json,
    message_json,
    whole_number,
)
from .resource import parse_create, parse_filters, parse_page, parse_page_size

logger = logging.getLogger("webhook_kit.emulator")
MAX_BODY = 1024 * 1024
_HTTP_CODES = {404: 20404, 405: 20004, 413: 20001}
_FILTERS = ("To", "From", "DateSent", "DateSent<", "DateSent>")


def create_app(emulator: Emulator) -> Flask:
    """The Flask app serving ``emulator``."""
    app = Flask("webhook_kit.emulator")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["emulator"] = emulator
    limiter = _RateLimiter(emulator.rate_limit)
    page = PageAccess(emulator.host)

    @app.before_request
    def authenticate() -> None:
        g.started = time.time()
        if request.path == "/_emulator/health":
            return
        page.refuse_cross_site()
        if not (page.allows() or _authorised(emulator)):
            raise ApiError(20003, "Authenticate", 401)
        if request.path.startswith(f"/{API_VERSION}/") and not limiter.allow():
            raise ApiError(20429, "Too Many Requests", 429)

    @app.after_request
    def log(response: Response) -> Response:
        if request.path.startswith(f"/{API_VERSION}/"):
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

    app.register_blueprint(_messages_api(emulator))
    app.register_blueprint(_control_api(emulator))
    app.register_blueprint(inspector_blueprint(emulator, page))
    return app


def _authorised(emulator: Emulator) -> bool:
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


def _messages_api(emulator: Emulator) -> Blueprint:
    api = Blueprint("messages", __name__, url_prefix=f"/{API_VERSION}/Accounts/<account_sid>")

    @api.url_value_preprocessor
    def check_account(endpoint: str | None, values: dict[str, Any] | None) -> None:
        """Twilio answers 404 for a path account that is not a SID, 401 for another account."""
        account = (values or {}).pop("account_sid", "")
        if not ACCOUNT_SID_RE.match(account):
            raise _not_found()
        if account != emulator.account_sid:
            raise ApiError(20003, "Authenticate", 401)

    @api.post("/Messages.json")
    def create() -> tuple[Response, int]:
        form = request.form
        fields = {key: form[key] for key in form if key != "MediaUrl"}
        request_ = parse_create(fields, form.getlist("MediaUrl"), emulator.clock.now())
        record = emulator.create(request_)
        return jsonify(message_json(record)), 201

    @api.get("/Messages.json")
    def list_messages() -> Response:
        return jsonify(_list_page(emulator))

    @api.get("/Messages/<sid>.json")
    def fetch(sid: str) -> Response:
        return jsonify(message_json(_message(emulator, sid)))

    @api.post("/Messages/<sid>.json")
    def update(sid: str) -> Response:
        _message(emulator, sid)
        form = request.form
        body, status = form.get("Body"), form.get("Status")
        if (body is None) == (status is None):
            raise ApiError(30400, "Parameters are not valid: send either Body='' or Status")
        if status is not None:
            if status != "canceled":
                raise ApiError(30400, f"Parameters are not valid: Status {status!r}")
            return jsonify(message_json(emulator.cancel(sid)))
        if body:
            raise ApiError(30400, "Parameters are not valid: a redaction needs an empty Body")
        return jsonify(message_json(emulator.redact(sid)))

    @api.delete("/Messages/<sid>.json")
    def delete(sid: str) -> tuple[str, int]:
        _message(emulator, sid)
        emulator.delete(sid)
        return "", 204

    @api.get("/Messages/<sid>/Media.json")
    def list_media(sid: str) -> Response:
        _message(emulator, sid)
        size = parse_page_size(request.args.get("PageSize"))
        items = emulator.state.media(sid)[:size]
        base = f"/{API_VERSION}/Accounts/{emulator.account_sid}/Messages/{sid}/Media.json"
        first = f"{base}?{urlencode({'PageSize': size, 'Page': 0})}"
        return jsonify(
            {
                "end": max(len(items) - 1, 0),
                "first_page_uri": first,
                "media_list": [media_json(emulator.account_sid, m) for m in items],
                "next_page_uri": None,
                "page": 0,
                "page_size": size,
                "previous_page_uri": None,
                "start": 0,
                "uri": first,
            }
        )

    @api.get("/Messages/<sid>/Media/<media_sid>.json")
    def fetch_media(sid: str, media_sid: str) -> Response:
        return jsonify(media_json(emulator.account_sid, _media(emulator, sid, media_sid)))

    @api.delete("/Messages/<sid>/Media/<media_sid>.json")
    def delete_media(sid: str, media_sid: str) -> tuple[str, int]:
        _media(emulator, sid, media_sid)
        emulator.state.delete_media(media_sid)
        return "", 204

    return api


def _list_page(emulator: Emulator) -> dict[str, Any]:
    """One page of ``GET Messages.json``, with Twilio's envelope and paging URIs."""
    query = request.args
    size = parse_page_size(query.get("PageSize"))
    page = parse_page(query.get("Page"))
    filters = parse_filters(query)
    token = query.get("PageToken")
    after = before = None
    if token is not None:
        if len(token) != 36 or token[:2] not in {"PA", "PB"}:
            raise ApiError(21481, "Invalid PageToken")
        after, before = (token[2:], None) if token[:2] == "PA" else (None, token[2:])
    found = emulator.state.page(emulator.account_sid, filters, size, after=after, before=before)
    if found is None:
        raise ApiError(21481, "Invalid PageToken")
    records, more = found
    base = f"/{API_VERSION}/Accounts/{emulator.account_sid}/Messages.json"
    echo = [(k, v) for k in _FILTERS for v in query.getlist(k)]

    def uri(number: int, page_token: str | None = None) -> str:
        params = [*echo, ("PageSize", str(size)), ("Page", str(number))]
        if page_token:
            params.append(("PageToken", page_token))
        return f"{base}?{urlencode(params)}"

    has_next = bool(records) and (more or before is not None)
    has_previous = page > 0 and bool(records)
    return {
        "end": page * size + max(len(records) - 1, 0),
        "first_page_uri": uri(0),
        "messages": [message_json(r) for r in records],
        "next_page_uri": uri(page + 1, f"PA{records[-1].sid}") if has_next else None,
        "page": page,
        "page_size": size,
        "previous_page_uri": uri(page - 1, f"PB{records[0].sid}") if has_previous else None,
        "start": page * size,
        "uri": uri(page, token),
    }


def _not_found() -> ApiError:
    return ApiError(20404, f"The requested resource {request.path} was not found", 404)


def _message(emulator: Emulator, sid: str) -> Any:
    record = emulator.state.get(sid) if MESSAGE_SID_RE.match(sid) else None
    if record is None or record.account_sid != emulator.account_sid:
        raise _not_found()
    return record


def _media(emulator: Emulator, sid: str, media_sid: str) -> Any:
    _message(emulator, sid)
    if MEDIA_SID_RE.match(media_sid):
        for media in emulator.state.media(sid):
            if media.sid == media_sid:
                return media
    raise _not_found()


def _control_api(emulator: Emulator) -> Blueprint:
    control = Blueprint("control", __name__, url_prefix="/_emulator")

    @control.get("/health")
    def health() -> Response:
        return jsonify({"account_sid": emulator.account_sid, "now": emulator.clock.now()})

    @control.post("/advance")
    def advance() -> Response:
        raw = request.form.get("Seconds", "")
        try:
            seconds = float(raw)
        except ValueError:
            raise EmulatorError(f"Seconds must be a number, not {raw!r}") from None
        ran = emulator.advance(seconds)
        return jsonify({"ran": ran, "now": emulator.clock.now()})

    @control.post("/numbers")
    def add_number() -> Response:
        form = request.form
        number = emulator.add_number(
            form.get("Number", ""),
            sms_url=form.get("SmsUrl") or None,
            fallback_url=form.get("SmsFallbackUrl") or None,
            status_callback=form.get("StatusCallback") or None,
            messaging_service_sid=form.get("MessagingServiceSid") or None,
        )
        return jsonify({"number": number.number, "sms_url": number.sms_url})

    @control.post("/rules")
    def add_rule() -> Response:
        form = request.form
        code = form.get("ErrorCode")
        probability = form.get("Probability", "1")
        try:
            chance = float(probability)
        except ValueError:
            raise EmulatorError(f"Probability must be a number, not {probability!r}") from None
        emulator.add_rule(
            form.get("Status", ""),
            whole_number(code),
            to=form.get("To") or None,
            body=form.get("Body") or None,
            probability=chance,
        )
        return jsonify({"rules": len(emulator.rules)})

    @control.post("/send")
    def send() -> Response:
        form = request.form
        exchange = emulator.handset(form.get("From", "")).send(
            form.get("To", ""), form.get("Body", ""), form.getlist("MediaUrl")
        )
        return jsonify(
            {
                "inbound": message_json(exchange.inbound),
                "replies": [message_json(r) for r in exchange.replies],
                "deliveries": [delivery_json(d) for d in exchange.deliveries],
            }
        )

    @control.get("/conversation")
    def conversation() -> Response:
        handset = emulator.handset(request.args.get("Address", ""))
        return jsonify({"messages": [message_json(m) for m in handset.conversation()]})

    @control.get("/requests")
    def requests() -> Response:
        return jsonify(
            {
                "requests": [
                    {"method": r.method, "path": r.path, "status": r.status, "at": r.at}
                    for r in emulator.requests
                ]
            }
        )

    @control.get("/deliveries")
    def deliveries() -> Response:
        return jsonify({"deliveries": [delivery_json(d) for d in emulator.deliveries]})

    @control.post("/reset")
    def reset() -> tuple[str, int]:
        emulator.reset()
        return "", 204

    return control
