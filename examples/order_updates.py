"""Texts customers when their order ships, tracks each text to its fate, and reconciles.

Serve the webhooks (status callbacks come back to /twilio/status):

    export TWILIO_ACCOUNT_SID=AC... TWILIO_AUTH_TOKEN=...
    export WEBHOOK_KIT_PUBLIC_URL=https://shop.example.com
    WEBHOOK_KIT_HANDLERS=examples.order_updates gunicorn wsgi:app

Send from anywhere with the same environment (a worker, a cron job, a shell):

    python -m examples.order_updates ship 42 +14155550100
    webhook-kit reconcile --older-than 10m      # settles texts whose final callback was lost

Customers can ask "WHERE 42" and get the delivery status of their order's text.
"""

from __future__ import annotations

import logging
import os
import sys

from flask import Flask

from webhook_kit import InboundMessage, MessageRecord, MessageStatus, WebhookKit
from webhook_kit.sending import SentMessage
from webhook_kit.standalone import config_from_environ

log = logging.getLogger("order_updates")
kit = WebhookKit()
SENDER = os.environ.get("ORDER_UPDATES_FROM", "+15005550006")


def notify_shipped(order: str, phone: str) -> SentMessage:
    """Text the customer; the ledger knows the text by ``ref="order-<id>"`` from now on."""
    return kit.send(phone, f"Your order {order} has shipped.", from_=SENDER, ref=f"order-{order}")


@kit.on_message(pattern=r"^WHERE\s+(?P<order>\w+)")
def where(message: InboundMessage) -> str:
    order = message.match["order"] if message.match else ""
    page = kit.ledger.find(ref=f"order-{order}", limit=1)
    if not page.records:
        return f"We have not texted you about order {order} yet."
    status = page.records[0].status
    return f"Our text about order {order} is {status.value if status else 'on its way'}."


@kit.on_final
def outcome(record: MessageRecord) -> None:
    if record.ref and record.status is not MessageStatus.DELIVERED:
        error = record.error
        reason = f"{error.code} {error.title or ''}" if error else "no error code"
        log.warning("%s: text %s ended %s (%s)", record.ref, record.message_sid,
                    record.status, reason)  # fmt: skip


def main(argv: list[str]) -> int:
    """``ship ORDER PHONE``: send one notification with the server's configuration."""
    if len(argv) != 3 or argv[0] != "ship":
        print("usage: python -m examples.order_updates ship ORDER PHONE", file=sys.stderr)
        return 2
    app = Flask(__name__)
    app.config.update(config_from_environ())
    kit.init_app(app)
    with app.app_context():
        sent = notify_shipped(argv[1], argv[2])
    print(f"sent {sent.sid} ({sent.status.value})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
