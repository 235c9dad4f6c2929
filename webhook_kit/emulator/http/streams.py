"""Event Streams over HTTP (events.twilio.com v1): ``/v1/Sinks`` and ``/v1/Subscriptions``."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify, request

from ..errors import ApiError
from ..streams import BASE_URL, SINK_SID_RE, SUBSCRIPTION_SID_RE, EventStreams, Subscription
from .common import meta_page, not_found, sid_in_path


def events_api(streams: EventStreams) -> Blueprint:
    """``/v1/Sinks`` and ``/v1/Subscriptions`` as events.twilio.com answers them."""
    api = Blueprint("event_streams", __name__, url_prefix="/v1")
    _sink_routes(api, streams)
    _subscription_routes(api, streams)
    return api


def _listing(key: str, path: str, items: list[dict[str, Any]]) -> Response:
    """One page of ``items`` (each with a ``sid``) in the v1 ``meta`` envelope, paged as Twilio."""
    return meta_page(key, items, lambda item: str(item["sid"]), dict, f"{BASE_URL}/{path}")


def _sink_routes(api: Blueprint, streams: EventStreams) -> None:
    @api.post("/Sinks")
    def create_sink() -> tuple[Response, int]:
        form = request.form
        raw = form.get("SinkConfiguration", "")
        try:
            configuration = json.loads(raw)
        except ValueError:
            configuration = None
        if not isinstance(configuration, dict):
            raise ApiError(20001, "SinkConfiguration must be a JSON object")
        sink = streams.create_sink(
            form.get("Description", ""), configuration, form.get("SinkType", "")
        )
        return jsonify(sink.json()), 201

    @api.get("/Sinks")
    def list_sinks() -> Response:
        status, in_use = request.args.get("Status"), request.args.get("InUse")
        used = {s.sink_sid for s in streams.subscriptions.values()}
        items = [
            sink.json()
            for sink in list(streams.sinks.values())
            if (status is None or sink.status == status)
            and (in_use is None or (sink.sid in used) == (in_use.lower() == "true"))
        ]
        return _listing("sinks", "Sinks", items)

    @api.get("/Sinks/<sid>")
    def fetch_sink(sid: str) -> Response:
        return jsonify(streams.sink(sid_in_path(sid, SINK_SID_RE)).json())

    @api.post("/Sinks/<sid>")
    def update_sink(sid: str) -> Response:
        sink = streams.sink(sid_in_path(sid, SINK_SID_RE))
        description = request.form.get("Description")
        if not description:
            raise ApiError(20001, "Missing required parameter Description in the post body")
        sink.description, sink.updated = description, streams.now()
        return jsonify(sink.json())

    @api.delete("/Sinks/<sid>")
    def delete_sink(sid: str) -> tuple[str, int]:
        streams.delete_sink(sid)
        return "", 204

    @api.post("/Sinks/<sid>/Test")
    def test_sink(sid: str) -> Response:
        streams.test_sink(sid)
        return jsonify({"result": "submitted"})

    @api.post("/Sinks/<sid>/Validate")
    def validate_sink(sid: str) -> Response:
        streams.validate_sink(sid, request.form.get("TestId", ""))
        return jsonify({"result": "valid"})


def _subscription_routes(api: Blueprint, streams: EventStreams) -> None:
    def subscription(sid: str) -> Subscription:
        found = streams.subscriptions.get(sid_in_path(sid, SUBSCRIPTION_SID_RE))
        if found is None:
            raise not_found()
        return found

    @api.post("/Subscriptions")
    def create_subscription() -> tuple[Response, int]:
        form = request.form
        types: list[tuple[str, int]] = []
        for raw in form.getlist("Types"):
            try:
                item = json.loads(raw)
            except ValueError:
                item = None
            if not isinstance(item, dict) or not isinstance(item.get("type"), str):
                raise ApiError(20001, 'each Types value must be {"type": ..., "schema_version": N}')
            version = item.get("schema_version", 1)
            types.append((item["type"], version if isinstance(version, int) else 1))
        created = streams.subscribe(form.get("SinkSid", ""), types, form.get("Description", ""))
        return jsonify(created.json()), 201

    @api.get("/Subscriptions")
    def list_subscriptions() -> Response:
        sink = request.args.get("SinkSid")
        items = [
            s.json()
            for s in list(streams.subscriptions.values())
            if sink is None or s.sink_sid == sink
        ]
        return _listing("subscriptions", "Subscriptions", items)

    @api.get("/Subscriptions/<sid>")
    def fetch_subscription(sid: str) -> Response:
        return jsonify(subscription(sid).json())

    @api.delete("/Subscriptions/<sid>")
    def delete_subscription(sid: str) -> tuple[str, int]:
        subscription(sid)
        streams.subscriptions.pop(sid, None)
        return "", 204

    @api.get("/Subscriptions/<sid>/SubscribedEvents")
    def subscribed_events(sid: str) -> Response:
        found = subscription(sid)
        items = [
            {
                "account_sid": found.account_sid,
                "type": kind,
                "schema_version": version,
                "subscription_sid": sid,
                "url": f"{BASE_URL}/Subscriptions/{sid}/SubscribedEvents/{kind}",
            }
            for kind, version in found.types.items()
        ]
        return _listing("types", f"Subscriptions/{sid}/SubscribedEvents", items)
