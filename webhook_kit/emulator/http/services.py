"""Messaging Services (messaging v1): ``/v1/Services`` and its sender pools.

``PhoneNumbers`` takes an IncomingPhoneNumber's SID, ``ShortCodes`` a short code's SID (see
:meth:`~webhook_kit.emulator.core.Account.add_short_code`), ``AlphaSenders`` the ID itself.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, Response, jsonify, request

from ..core import Account
from ..errors import ApiError
from ..model import SERVICE_SID_RE
from ..numbers import PHONE_NUMBER_SID_RE
from ..resource import bad
from ..services import (
    ALPHA_SENDER_SID_RE,
    KINDS,
    SERVICE_BASE,
    SHORT_CODE_SID_RE,
    PoolSender,
    sender_json,
    service_json,
)
from .common import host_base, meta_page, not_found, sid_in_path

#: Subresource path -> (sender kind, SID pattern of its items).
_POOLS = {
    KINDS["phone_number"][0]: ("phone_number", PHONE_NUMBER_SID_RE),
    KINDS["short_code"][0]: ("short_code", SHORT_CODE_SID_RE),
    KINDS["alpha_sender"][0]: ("alpha_sender", ALPHA_SENDER_SID_RE),
}


def services_api(account: Account) -> Blueprint:
    """``/v1/Services[/{Sid}]``, and each service's pool (``/v1/Services/{Sid}/{Pool}``)."""
    api = Blueprint("services", __name__, url_prefix=SERVICE_BASE)
    outbound = account.outbound

    def pool(path: str) -> str:
        if path not in _POOLS:
            raise not_found()
        return _POOLS[path][0]

    @api.post("")
    def create() -> tuple[Response, int]:
        service = outbound.create_service(request.form.to_dict())
        return jsonify(service_json(service, account.account_sid, host_base())), 201

    @api.get("")
    def list_services() -> Response:
        base = host_base()
        return meta_page(
            "services",
            outbound.services(),
            lambda s: s.sid,
            lambda s: service_json(s, account.account_sid, base),
            base + SERVICE_BASE,
        )

    @api.get("/<sid>")
    def fetch(sid: str) -> Response:
        service = outbound.service(sid_in_path(sid, SERVICE_SID_RE))
        return jsonify(service_json(service, account.account_sid, host_base()))

    @api.post("/<sid>")
    def update(sid: str) -> Response:
        service = outbound.update_service(sid_in_path(sid, SERVICE_SID_RE), request.form.to_dict())
        return jsonify(service_json(service, account.account_sid, host_base()))

    @api.delete("/<sid>")
    def delete(sid: str) -> tuple[str, int]:
        outbound.delete_service(sid_in_path(sid, SERVICE_SID_RE))
        return "", 204

    @api.post("/<sid>/<path>")
    def add(sid: str, path: str) -> tuple[Response, int]:
        sender = _add(account, sid_in_path(sid, SERVICE_SID_RE), pool(path), request.form)
        return jsonify(sender_json(sender, account.account_sid, host_base())), 201

    @api.get("/<sid>/<path>")
    def list_pool(sid: str, path: str) -> Response:
        kind, service = pool(path), sid_in_path(sid, SERVICE_SID_RE)
        outbound.service(service)
        base = host_base()
        return meta_page(
            KINDS[kind][1],
            outbound.senders(service, kind),
            lambda s: s.sid,
            lambda s: sender_json(s, account.account_sid, base),
            f"{base}{SERVICE_BASE}/{service}/{path}",
        )

    @api.get("/<sid>/<path>/<item>")
    def fetch_sender(sid: str, path: str, item: str) -> Response:
        kind, service = pool(path), sid_in_path(sid, SERVICE_SID_RE)
        if not _POOLS[path][1].match(item):
            raise not_found()
        sender = outbound.sender(service, kind, item)
        return jsonify(sender_json(sender, account.account_sid, host_base()))

    @api.delete("/<sid>/<path>/<item>")
    def remove_sender(sid: str, path: str, item: str) -> tuple[str, int]:
        kind, service = pool(path), sid_in_path(sid, SERVICE_SID_RE)
        if not _POOLS[path][1].match(item):
            raise not_found()
        outbound.remove_sender(service, kind, item)
        return "", 204

    return api


def _add(account: Account, service: str, kind: str, form: Mapping[str, str]) -> PoolSender:
    """A sender joins the pool: a number or short code of the account (by SID), or an ID."""
    outbound = account.outbound
    if kind == "alpha_sender":
        return outbound.add_alpha_sender(service, form.get("AlphaSender", ""))
    if kind == "phone_number":
        number_sid = form.get("PhoneNumberSid", "")
        try:
            number = account.number_by_sid(number_sid)
        except ApiError:
            raise bad(
                21421, f"PhoneNumberSid {number_sid!r} is not a number of the account"
            ) from None
        return outbound.add_sender(service, kind, number.sid, number.number)
    code_sid = form.get("ShortCodeSid", "")
    code = account.state.resource("short_code", code_sid)
    if code is None:
        raise bad(21421, f"ShortCodeSid {code_sid!r} is not a short code of the account")
    return outbound.add_sender(service, kind, code_sid, code["short_code"], code["country"])
