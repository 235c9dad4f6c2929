"""What every resource module shares: the account in the path, Twilio's 404, v1 list pages."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from flask import Blueprint, Response, jsonify, request

from ..core import Account
from ..errors import ApiError
from ..model import ACCOUNT_SID_RE, API_VERSION
from ..paging import meta_envelope, parse_paging, window

T = TypeVar("T")


def not_found() -> ApiError:
    """Twilio's 20404 for the requested path."""
    return ApiError(20404, f"The requested resource {request.path} was not found", 404)


def sid_in_path(sid: str, pattern: re.Pattern[str]) -> str:
    """``sid`` if it has the resource's SID form; else Twilio's 404 (never a lookup)."""
    if not pattern.match(sid):
        raise not_found()
    return sid


def meta_page(
    key: str,
    items: Sequence[T],
    sid: Callable[[T], str],
    to_json: Callable[[T], dict[str, Any]],
    url: str,
) -> Response:
    """The request's page of ``items`` (in list order) in the v1 ``meta`` envelope, each as
    ``to_json`` shows it, paged by ``sid`` as Twilio pages."""
    paging = parse_paging(request.args)
    found, more = window(items, sid, paging)
    records = [to_json(item) for item in found]
    return jsonify(meta_envelope(key, records, paging, url=url, more=more))


def host_base() -> str:
    """The scheme and host the client called, for the URLs a v1 resource answers with."""
    return request.host_url.rstrip("/")


def account_blueprint(name: str, account: Account) -> Blueprint:
    """A blueprint under ``/2010-04-01/Accounts/{AccountSid}`` that checks the path's account.

    Twilio answers 404 for a path account that is not a SID, 401 for another account.
    """
    api = Blueprint(name, __name__, url_prefix=f"/{API_VERSION}/Accounts/<account_sid>")

    @api.url_value_preprocessor
    def check_account(endpoint: str | None, values: dict[str, Any] | None) -> None:
        path_account = (values or {}).pop("account_sid", "")
        if not ACCOUNT_SID_RE.match(path_account):
            raise not_found()
        if path_account != account.account_sid:
            raise ApiError(20003, "Authenticate", 401)

    return api
