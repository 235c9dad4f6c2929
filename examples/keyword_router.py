"""A subscription bot: keywords, a pattern with a named group, media, and a default.

Run it with ``WEBHOOK_KIT_HANDLERS=examples.keyword_router gunicorn wsgi:app``.
"""

from webhook_kit import InboundMessage, MessagingResponse, WebhookKit

kit = WebhookKit()


@kit.on_message(keyword=["HELP", "INFO"])
def help_(message: InboundMessage) -> str:
    return "Reply JOIN <name> to subscribe, or send a photo."


@kit.on_message(pattern=r"^JOIN (?P<name>\w+)$")
def join(message: InboundMessage) -> str:
    assert message.match is not None
    return f"Welcome, {message.match['name']}!"


@kit.on_message(has_media=True)
def photo(message: InboundMessage) -> MessagingResponse:
    reply = kit.reply()
    reply.message(f"Got {len(message.media)} file(s), thanks!").media(
        "https://demo.twilio.com/owl.png"
    )
    return reply


@kit.on_message(opt_out="STOP")
def unsubscribed(message: InboundMessage) -> None:
    # Twilio has already confirmed the opt-out to the sender: record it, send nothing.
    return None


@kit.on_message()
def fallback(message: InboundMessage) -> str:
    return "Sorry, I did not get that. Reply HELP for options."
