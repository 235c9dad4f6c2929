"""The 2010-04-01 Account resource: what ``webhook-kit doctor`` reads to check the auth token."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from ..core import Account
from ..errors import ApiError
from ..model import ACCOUNT_SID_RE, API_VERSION, rfc2822
from .common import sid_in_path


def account_json(account: Account) -> dict[str, Any]:
    """The Account resource with the keys twilio-python reads (``auth_token`` included)."""
    base = f"/{API_VERSION}/Accounts/{account.account_sid}"
    created = rfc2822(account.created)
    return {
        "auth_token": account.auth_token,
        "date_created": created,
        "date_updated": created,
        "friendly_name": "webhook_kit emulator",
        "owner_account_sid": account.account_sid,
        "sid": account.account_sid,
        "status": "active",
        "subresource_uris": {
            "incoming_phone_numbers": f"{base}/IncomingPhoneNumbers.json",
            "messages": f"{base}/Messages.json",
        },
        "type": "Full",
        "uri": f"{base}.json",
    }


def accounts_api(account: Account) -> Blueprint:
    """``GET /2010-04-01/Accounts/{Sid}.json``."""
    api = Blueprint("accounts", __name__, url_prefix=f"/{API_VERSION}/Accounts")

    @api.get("/<sid>.json")
    def fetch(sid: str) -> Response:
        if sid_in_path(sid, ACCOUNT_SID_RE) != account.account_sid:
            raise ApiError(20003, "Authenticate", 401)
        return jsonify(account_json(account))

    return api
