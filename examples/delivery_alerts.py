"""Logs failed deliveries with a readable reason, and each message's final outcome.

Point your messages' StatusCallback at /twilio/status and run it with
``WEBHOOK_KIT_HANDLERS=examples.delivery_alerts gunicorn wsgi:app``.
"""

import logging

from webhook_kit import MessageRecord, MessageStatus, StatusCallback, WebhookKit

log = logging.getLogger("delivery_alerts")
kit = WebhookKit()


@kit.on_status(MessageStatus.UNDELIVERED, MessageStatus.FAILED)
def alert(update: StatusCallback) -> None:
    error = update.error
    reason = (
        f"{error.code} {error.title or ''}: {error.description or error.more_info}"
        if error
        else "no error code"
    )
    log.warning("message %s %s: %s", update.message_sid, update.status.value, reason)


@kit.on_final
def outcome(record: MessageRecord) -> None:
    log.info(
        "message %s ended %s after %d callback(s)",
        record.message_sid,
        record.status.value if record.status else "unknown",
        len(record.history),
    )
