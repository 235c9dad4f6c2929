"""Replies "Echo: <body>" to every message: the bot `gunicorn wsgi:app` serves by default."""

from webhook_kit import InboundMessage, WebhookKit

kit = WebhookKit()


@kit.on_message()
def echo(message: InboundMessage) -> str:
    return f"Echo: {message.body}"
