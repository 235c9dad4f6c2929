"""The 2010-04-01 Message resource and its Media, as api.twilio.com answers the client."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, redirect, request
from werkzeug.wrappers import Response as WerkzeugResponse

from ..core import Account
from ..errors import ApiError
from ..model import (
    API_VERSION,
    MEDIA_SID_RE,
    MESSAGE_SID_RE,
    feedback_json,
    media_json,
    message_json,
)
from ..paging import envelope, parse_paging, window
from ..resource import date_bounds, parse_create, parse_filters
from .common import account_blueprint, not_found
from .media_host import media_signer

_FILTERS = ("To", "From", "DateSent", "DateSent<", "DateSent>")
_MEDIA_FILTERS = ("DateCreated", "DateCreated<", "DateCreated>")


def messages_api(emulator: Account, media_base: str) -> Blueprint:
    """``Messages.json`` and ``Messages/{Sid}`` with its Feedback and Media.

    ``media_base`` is the media host's URL, where a media item's bytes are redirected.
    """
    signer = media_signer(emulator)
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

    @api.post("/Messages/<sid>/Feedback.json")
    def feedback(sid: str) -> Response:
        _message(emulator, sid)
        outcome = request.form.get("Outcome", "confirmed")
        return jsonify(feedback_json(emulator.give_feedback(sid, outcome)))

    @api.get("/Messages/<sid>/Media.json")
    def list_media(sid: str) -> Response:
        _message(emulator, sid)
        paging = parse_paging(request.args)
        lower, upper = date_bounds(request.args, "DateCreated")
        items = [
            m
            for m in emulator.state.media(sid)
            if (lower is None or m.date_created >= lower)
            and (upper is None or m.date_created <= upper)
        ]
        found, more = window(items, lambda m: m.sid, paging)
        base = f"/{API_VERSION}/Accounts/{emulator.account_sid}/Messages/{sid}/Media.json"
        echo = [(k, v) for k in _MEDIA_FILTERS for v in request.args.getlist(k)]
        records = [media_json(emulator.account_sid, m) for m in found]
        return jsonify(envelope("media_list", records, paging, base=base, echo=echo, more=more))

    @api.get("/Messages/<sid>/Media/<media_sid>.json")
    def fetch_media(sid: str, media_sid: str) -> Response:
        return jsonify(media_json(emulator.account_sid, _media(emulator, sid, media_sid)))

    @api.get("/Messages/<sid>/Media/<media_sid>")
    def media_bytes(sid: str, media_sid: str) -> WerkzeugResponse:
        """The bytes live elsewhere: 307 to a short-lived URL on the media host, as Twilio."""
        media = _media(emulator, sid, media_sid)
        location = f"{media_base}/{emulator.account_sid}/{signer.dumps(media.sid)}"
        return redirect(location, 307)

    @api.delete("/Messages/<sid>/Media/<media_sid>.json")
    def delete_media(sid: str, media_sid: str) -> tuple[str, int]:
        _media(emulator, sid, media_sid)
        emulator.state.delete_media(media_sid)
        return "", 204

    return api


def _list_page(emulator: Account) -> dict[str, Any]:
    """One page of ``GET Messages.json``, newest first, keyset-paged in the state."""
    query = request.args
    paging = parse_paging(query)
    filters = parse_filters(query)
    found = emulator.state.page(
        emulator.account_sid, filters, paging.size, after=paging.after, before=paging.before
    )
    if found is None:
        raise ApiError(21481, "Invalid PageToken")
    records, more = found
    base = f"/{API_VERSION}/Accounts/{emulator.account_sid}/Messages.json"
    echo = [(k, v) for k in _FILTERS for v in query.getlist(k)]
    return envelope(
        "messages", [message_json(r) for r in records], paging, base=base, echo=echo, more=more
    )


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
