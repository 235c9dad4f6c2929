"""The 2010-04-01 Message resource and its Media, as api.twilio.com answers the client."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, request

from ..core import Account
from ..errors import ApiError
from ..model import API_VERSION, MEDIA_SID_RE, MESSAGE_SID_RE, media_json, message_json
from ..resource import parse_create, parse_filters, parse_page, parse_page_size
from .common import account_blueprint, not_found

_FILTERS = ("To", "From", "DateSent", "DateSent<", "DateSent>")


def messages_api(emulator: Account) -> Blueprint:
    """``Messages.json`` and ``Messages/{Sid}`` with its Media."""
    api = account_blueprint("messages", emulator)

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


def _list_page(emulator: Account) -> dict[str, Any]:
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


def _message(emulator: Account, sid: str) -> Any:
    record = emulator.state.get(sid) if MESSAGE_SID_RE.match(sid) else None
    if record is None or record.account_sid != emulator.account_sid:
        raise not_found()
    return record


def _media(emulator: Account, sid: str, media_sid: str) -> Any:
    _message(emulator, sid)
    if MEDIA_SID_RE.match(media_sid):
        for media in emulator.state.media(sid):
            if media.sid == media_sid:
                return media
    raise not_found()
