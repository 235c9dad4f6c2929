"""One exception hierarchy for everything webhook_kit raises on purpose.

Catch :class:`WebhookKitError` to handle any of them; each message says what to do next.
"""

from __future__ import annotations


class WebhookKitError(Exception):
    """Base class of every error webhook_kit raises deliberately."""


class ConfigurationError(WebhookKitError):
    """The kit is configured in a way that cannot work; the message names the setting to fix."""


class BadRequestError(WebhookKitError):
    """A webhook request is malformed; answered with ``400`` and this one-line message."""

    status_code = 400


class PayloadTooLargeError(BadRequestError):
    """A request body is larger than ``WEBHOOK_KIT_MAX_BODY``; answered with ``413``."""

    status_code = 413


class InFlightError(WebhookKitError):
    """An earlier delivery of the same webhook is still running; answered with ``409``."""

    status_code = 409


class SignatureError(WebhookKitError):
    """``X-Twilio-Signature`` is missing or does not match; answered with ``403``."""

    status_code = 403


class StoreError(WebhookKitError):
    """The store could not be read or written; answered with ``503`` so Twilio may retry."""

    status_code = 503


class ReplyTypeError(WebhookKitError, TypeError):
    """A handler returned something that is not a reply (``str``, list of ``str``, TwiML, None)."""


class ConversationStateError(WebhookKitError, TypeError):
    """A handler left a value in ``conversation.state`` that JSON cannot store."""


class TwiMLError(WebhookKitError, ValueError):
    """A TwiML reply would be rejected by Twilio; raised while the reply is built."""


class TooManyMediaError(TwiMLError):
    """A ``<Message>`` may carry at most 10 ``<Media>`` nouns."""


class BodyTooLongError(TwiMLError):
    """A ``<Message>`` body may be at most 1600 characters."""


class InvalidMethodError(TwiMLError):
    """``method`` attributes accept only ``GET`` or ``POST``."""


class RedirectNotLastError(TwiMLError):
    """Verbs after ``<Redirect>`` are unreachable, so nothing may follow it."""


class InvalidCallbackURLError(TwiMLError):
    """An absolute callback URL must have a valid host name (Twilio rejects underscores)."""


class TwiMLParseError(TwiMLError):
    """A TwiML document is not well-formed or not a messaging ``<Response>``."""
