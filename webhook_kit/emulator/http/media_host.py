"""The media host: a second origin that answers media bytes without credentials.

Twilio answers ``.../Media/ME...`` (Basic auth) with a redirect to a short-lived, signed
storage URL, which must be fetched *without* the account's credentials: S3 refuses a
request that carries both a signature and an ``Authorization`` header, and so does this
host (400), so a client that leaks credentials across the redirect fails here as it would
there (twilio-more.md §7.2).
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..core import Account
from ..model import MEDIA_SID_RE

#: Seconds a redirect's URL stays valid (Twilio's storage URLs are short-lived).
URL_LIFETIME = 3600


def media_signer(account: Account) -> URLSafeTimedSerializer:
    """Signs media SIDs into the media host's URLs; only this account's server makes them."""
    return URLSafeTimedSerializer(account.auth_token, salt="webhook_kit.emulator.media")


def create_media_app(account: Account) -> Flask:
    """The Flask app of the media host: ``GET /{AccountSid}/{signed token}``."""
    app = Flask("webhook_kit.emulator.media")
    signer = media_signer(account)

    def error(status: int, code: str, message: str) -> tuple[Response, int]:
        return jsonify({"Code": code, "Message": message}), status

    @app.get("/<account_sid>/<token>")
    def media(account_sid: str, token: str) -> Response | tuple[Response, int]:
        if "Authorization" in request.headers:
            return error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed: this URL is signed, send no Authorization",
            )
        try:
            sid = signer.loads(token, max_age=URL_LIFETIME)
        except BadSignature:
            return error(403, "AccessDenied", "Request has expired or its signature is invalid")
        if account_sid != account.account_sid or not MEDIA_SID_RE.match(str(sid)):
            return error(403, "AccessDenied", "Access Denied")
        item = account.state.media_item(str(sid))
        if item is None:
            return error(404, "NoSuchKey", "The specified key does not exist.")
        got = account.media_content(item)
        if got.error is not None:
            return error(502, "BadGateway", f"Could not fetch {item.url} (error {got.error})")
        response = Response(got.content, content_type=got.content_type or item.content_type)
        response.headers["Content-Disposition"] = f'inline; filename="{item.sid}"'
        return response

    @app.errorhandler(404)
    def missing(_: Exception) -> tuple[Response, int]:
        return error(404, "NoSuchKey", "The specified key does not exist.")

    @app.errorhandler(405)
    def method(_: Exception) -> tuple[Response, int]:
        return error(405, "MethodNotAllowed", "The specified method is not allowed")

    return app
