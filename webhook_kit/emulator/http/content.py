"""Content templates (content v1): ``/v1/Content`` create (JSON body), list, fetch, delete."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..content import CONTENT_BASE, content_json, parse_content
from ..core import Account
from ..model import new_sid
from ..resource import CONTENT_SID_RE
from .common import host_base, meta_page, sid_in_path


def content_api(account: Account) -> Blueprint:
    """``/v1/Content`` and ``/v1/Content/{Sid}``."""
    api = Blueprint("content", __name__, url_prefix=CONTENT_BASE)
    outbound = account.outbound

    @api.post("")
    def create() -> tuple[Response, int]:
        payload = request.get_json(silent=True)
        content = parse_content(payload, new_sid("HX"), account.clock.now())
        outbound.add_content(content)
        return jsonify(content_json(content, account.account_sid, host_base())), 201

    @api.get("")
    def list_content() -> Response:
        base = host_base()
        return meta_page(
            "contents",
            outbound.contents(),
            lambda c: c.sid,
            lambda c: content_json(c, account.account_sid, base),
            base + CONTENT_BASE,
        )

    @api.get("/<sid>")
    def fetch(sid: str) -> Response:
        return jsonify(
            content_json(
                outbound.content(sid_in_path(sid, CONTENT_SID_RE)), account.account_sid, host_base()
            )
        )

    @api.delete("/<sid>")
    def delete(sid: str) -> tuple[str, int]:
        outbound.delete_content(sid_in_path(sid, CONTENT_SID_RE))
        return "", 204

    return api
