"""Twilio's Webhooks configuration API over HTTP: ``/v1/Webhooks/{SharedKeys,Settings,Rules}``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from ..errors import ProblemError
from ..model import iso8601
from ..webhooks_config import WebhooksConfig, invalid, new_id


def webhooks_api(config: WebhooksConfig) -> Blueprint:
    """``/v1/Webhooks/{SharedKeys,Settings,Rules}`` (webhooks.twilio.com)."""
    api = Blueprint("webhooks_config", __name__, url_prefix="/v1/Webhooks")
    kinds = {"SharedKeys": "shared_keys", "Settings": "settings", "Rules": "rules"}

    def payload() -> dict[str, Any]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise invalid("the body must be a JSON object (Content-Type: application/json)")
        return body

    def listing(key: str, items: list[dict[str, Any]]) -> Response:
        meta = {"key": key, "pageSize": len(items), "nextToken": None, "previousToken": None}
        return jsonify({key: items, "meta": meta})

    @api.post("/SharedKeys")
    def create_shared_key() -> tuple[Response, int]:
        key = config.create_shared_key(payload().get("friendlyName") or "")
        return jsonify(key.json(secret=True)), 201

    @api.post("/Settings")
    def create_setting() -> tuple[Response, int]:
        return jsonify(config.create_setting(payload()).json()), 201

    @api.post("/Rules")
    def create_rule() -> tuple[Response, int, dict[str, str]]:
        rule = config.create_rule(payload())
        operation = {
            "id": new_id("webhooks_operation_"),
            "status": "COMPLETED",  # applied at once here; Twilio propagates in 30-60 s
            "resourceId": rule.id,
            "createdAt": iso8601(rule.created_at),
            "completedAt": iso8601(rule.created_at),
        }
        body = {"operation": operation, "rule": rule.json()}
        return jsonify(body), 202, {"Operation-Id": operation["id"]}

    @api.get("/<kind>")
    def list_(kind: str) -> Response:
        if kind not in kinds:
            raise ProblemError(20404, f"/v1/Webhooks/{kind} was not found", 404)
        items = list(getattr(config, kinds[kind]).values())
        return listing(kind[0].lower() + kind[1:], [item.json() for item in items])

    @api.get("/<kind>/<id>")
    def fetch(kind: str, id: str) -> Response:
        if kind not in kinds:
            raise ProblemError(20404, f"/v1/Webhooks/{kind} was not found", 404)
        return jsonify(config.get(kinds[kind], id).json())

    @api.delete("/<kind>/<id>")
    def delete(kind: str, id: str) -> tuple[str, int]:
        if kind not in kinds:
            raise ProblemError(20404, f"/v1/Webhooks/{kind} was not found", 404)
        config.delete(kinds[kind], id)
        return "", 204

    return api
