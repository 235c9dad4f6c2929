"""A bot with a handler on every route, for the fuzz test: none of them ever raises."""

from __future__ import annotations

from webhook_kit import FallbackRequest, InboundMessage, MessageRecord, StatusCallback, WebhookKit

kit = WebhookKit()


@kit.on_message()
def echo(message: InboundMessage) -> str:
    # Read every computed property: none may raise on any input the kit lets through.
    extras = (message.from_place, message.location, message.referral, message.replied_to)
    return f"Echo: {message.body}" if extras else ""


@kit.on_fallback()
def fallback(request: FallbackRequest) -> str:
    return f"Fallback {request.error_code}: {request.body}"


@kit.on_status()
def status(update: StatusCallback) -> None:
    _ = (update.raw_dlr_done_date, update.error, update.channel)


@kit.on_final
def final(record: MessageRecord) -> None:
    _ = (record.error, record.history)
