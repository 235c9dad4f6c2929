"""The 2010-04-01 IncomingPhoneNumber resource: provision, list, fetch, update, release."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..core import Account
from ..model import API_VERSION
from ..numbers import KINDS, PHONE_NUMBER_SID_RE, matches, number_json, number_type
from ..paging import envelope, parse_paging, window
from .common import account_blueprint, sid_in_path

_FILTERS = ("PhoneNumber", "FriendlyName", "Beta", "Origin")


def numbers_api(account: Account) -> Blueprint:
    """``IncomingPhoneNumbers.json`` and ``IncomingPhoneNumbers/{Sid}.json``."""
    api = account_blueprint("numbers", account)

    def kind_of(segment: str | None) -> str | None:
        return KINDS[segment] if segment else None

    @api.post("/IncomingPhoneNumbers.json")
    @api.post("/IncomingPhoneNumbers/<any(Local, Mobile, TollFree):segment>.json")
    def create(segment: str | None = None) -> tuple[Response, int]:
        entry = account.provision(request.form, kind_of(segment))
        return jsonify(number_json(account.account_sid, entry)), 201

    @api.get("/IncomingPhoneNumbers.json")
    @api.get("/IncomingPhoneNumbers/<any(Local, Mobile, TollFree):segment>.json")
    def list_numbers(segment: str | None = None) -> Response:
        query = request.args
        paging = parse_paging(query)
        phone, name, kind = query.get("PhoneNumber"), query.get("FriendlyName"), kind_of(segment)
        items = [
            n
            for n in account.phone_numbers()
            if matches(n, phone, name) and kind in {None, number_type(n.number)}
        ]
        found, more = window(items, lambda n: n.sid, paging)
        resource = (
            f"IncomingPhoneNumbers/{segment}.json" if segment else "IncomingPhoneNumbers.json"
        )
        base = f"/{API_VERSION}/Accounts/{account.account_sid}/{resource}"
        echo = [(k, v) for k in _FILTERS for v in query.getlist(k)]
        records = [number_json(account.account_sid, n) for n in found]
        body = envelope("incoming_phone_numbers", records, paging, base=base, echo=echo, more=more)
        return jsonify(body)

    @api.get("/IncomingPhoneNumbers/<sid>.json")
    def fetch(sid: str) -> Response:
        return jsonify(
            number_json(
                account.account_sid, account.number_by_sid(sid_in_path(sid, PHONE_NUMBER_SID_RE))
            )
        )

    @api.post("/IncomingPhoneNumbers/<sid>.json")
    def update(sid: str) -> Response:
        entry = account.update_number(sid_in_path(sid, PHONE_NUMBER_SID_RE), request.form)
        return jsonify(number_json(account.account_sid, entry))

    @api.delete("/IncomingPhoneNumbers/<sid>.json")
    def delete(sid: str) -> tuple[str, int]:
        account.release_number(sid_in_path(sid, PHONE_NUMBER_SID_RE))
        return "", 204

    return api
