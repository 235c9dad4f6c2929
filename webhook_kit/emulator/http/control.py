"""The control API under ``/_emulator``: what a test or the CLI drives and Twilio never exposes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..core import Account
from ..delivery import delivery_json
from ..errors import EmulatorError
from ..model import message_json, whole_number


def control_api(emulator: Account) -> Blueprint:
    """``/_emulator/...``: the clock, numbers, rules, handsets, logs and reset."""
    control = Blueprint("control", __name__, url_prefix="/_emulator")

    @control.get("/health")
    def health() -> Response:
        return jsonify({"account_sid": emulator.account_sid, "now": emulator.clock.now()})

    @control.post("/advance")
    def advance() -> Response:
        raw = request.form.get("Seconds", "")
        try:
            seconds = float(raw)
        except ValueError:
            raise EmulatorError(f"Seconds must be a number, not {raw!r}") from None
        ran = emulator.advance(seconds)
        return jsonify({"ran": ran, "now": emulator.clock.now()})

    @control.post("/numbers")
    def add_number() -> Response:
        form = request.form
        number = emulator.add_number(
            form.get("Number", ""),
            sms_url=form.get("SmsUrl") or None,
            fallback_url=form.get("SmsFallbackUrl") or None,
            status_callback=form.get("StatusCallback") or None,
            messaging_service_sid=form.get("MessagingServiceSid") or None,
        )
        return jsonify({"number": number.number, "sid": number.sid, "sms_url": number.sms_url})

    @control.post("/rules")
    def add_rule() -> Response:
        form = request.form
        code = form.get("ErrorCode")
        probability = form.get("Probability", "1")
        try:
            chance = float(probability)
        except ValueError:
            raise EmulatorError(f"Probability must be a number, not {probability!r}") from None
        emulator.add_rule(
            form.get("Status", ""),
            whole_number(code),
            to=form.get("To") or None,
            body=form.get("Body") or None,
            probability=chance,
        )
        return jsonify({"rules": len(emulator.rules)})

    @control.post("/send")
    def send() -> Response:
        form = request.form
        exchange = emulator.handset(form.get("From", "")).send(
            form.get("To", ""), form.get("Body", ""), form.getlist("MediaUrl")
        )
        return jsonify(
            {
                "inbound": message_json(exchange.inbound),
                "replies": [message_json(r) for r in exchange.replies],
                "deliveries": [delivery_json(d) for d in exchange.deliveries],
            }
        )

    @control.get("/conversation")
    def conversation() -> Response:
        handset = emulator.handset(request.args.get("Address", ""))
        return jsonify({"messages": [message_json(m) for m in handset.conversation()]})

    @control.get("/requests")
    def requests() -> Response:
        return jsonify(
            {
                "requests": [
                    {"method": r.method, "path": r.path, "status": r.status, "at": r.at}
                    for r in emulator.requests
                ]
            }
        )

    @control.get("/deliveries")
    def deliveries() -> Response:
        return jsonify({"deliveries": [delivery_json(d) for d in emulator.deliveries]})

    @control.post("/reset")
    def reset() -> tuple[str, int]:
        emulator.reset()
        return "", 204

    return control
