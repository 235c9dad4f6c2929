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
    #: The ``reason`` label of the webhooks it rejects (see webhook_kit.metrics).
    reason = "bad_request"


class PayloadTooLargeError(BadRequestError):
    """A request body is larger than ``WEBHOOK_KIT_MAX_BODY``; answered with ``413``."""

    status_code = 413
    reason = "too_large"


class InFlightError(WebhookKitError):
    """An earlier delivery of the same webhook is still running; answered with ``409``."""

    status_code = 409
    reason = "in_flight"


class SignatureError(WebhookKitError):
    """``X-Twilio-Signature`` is missing or does not match; answered with ``403``."""

    status_code = 403
    reason = "signature"


class UnauthorizedError(WebhookKitError):
    """HTTP Basic credentials are required (``WEBHOOK_KIT_BASIC_AUTH``) and were missing or
    wrong; answered with ``401`` and a ``WWW-Authenticate`` challenge."""

    status_code = 401
    reason = "unauthorized"


class StoreError(WebhookKitError):
    """The store could not be read or written; answered with ``503`` so Twilio may retry."""

    status_code = 503
    reason = "store_down"


class WebhookRejectedError(WebhookKitError, AssertionError):
    """In a test, the app answered a webhook of the emulator with an error (4xx or 5xx).

    Twilio would only log it in the console's debugger; a test fails at once, with the
    app's reason, instead of seeing no reply.
    """


class LedgerQueryError(WebhookKitError, ValueError):
    """A ledger query is malformed (a bad cursor, limit or time range)."""


class ReplyTypeError(WebhookKitError, TypeError):
    """A handler returned something that is not a reply (``str``, list of ``str``, TwiML, None)."""


class ConversationStateError(WebhookKitError, TypeError):
    """A handler left a value in ``conversation.state`` that JSON cannot store."""


class TwiMLError(WebhookKitError, ValueError):
    """A TwiML reply would be rejected by Twilio; raised while the reply is built."""


class TwiMLTypeError(TwiMLError, TypeError):
    """The TwiML builder was given the wrong kind of child or argument (a ``TypeError`` too).

    twilio-python raises ``TwiMLException`` here, so ``except TwiMLError`` covers ported code.
    """


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


class SendError(WebhookKitError):
    """Twilio refused or could not take a request about a message (send, fetch, cancel...).

    ``code`` is Twilio's error code (``None`` when Twilio never answered), ``more_info``
    its documentation page, ``status`` the HTTP status.
    """

    #: The Twilio error code this class stands for (subclasses), else None.
    twilio_code: int | None = None

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        more_info: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.more_info = more_info or (
            f"https://www.twilio.com/docs/errors/{code}" if code is not None else None
        )
        self.status = status


class TwilioUnreachableError(SendError):
    """No answer from Twilio (connection refused, timeout): the send may or may not exist."""


class SendInDoubtError(SendError):
    """A send with the same ``key`` is under way in another process (or died on another host).

    Sending now could send twice, so nothing is sent: retry after a couple of minutes, when
    the earlier attempt's claim on the key has lapsed and its outcome can be looked up.
    """


class AuthenticationError(SendError):
    """20003: the account SID and auth token (or API key and secret) were refused."""

    twilio_code = 20003


class MessageNotFoundError(SendError):
    """20404: no message with that SID in this account."""

    twilio_code = 20404


class RateLimitedError(SendError):
    """20429: too many requests; retry later, more slowly."""

    twilio_code = 20429


class InvalidToError(SendError):
    """21211: the 'To' number is not a valid phone number."""

    twilio_code = 21211


class InvalidFromError(SendError):
    """21212: the 'From' number is not a valid phone number or sender."""

    twilio_code = 21212


class RegionNotPermittedError(SendError):
    """21408: sending to this region is not enabled on the account (Geo Permissions)."""

    twilio_code = 21408


class SenderNotCapableError(SendError):
    """21606: the 'From' number is not a message-capable number of this account."""

    twilio_code = 21606


class UnsubscribedRecipientError(SendError):
    """21610: the recipient replied STOP to this sender and must opt back in."""

    twilio_code = 21610


class QueueFullError(SendError):
    """21611: the sender's queue is full; send fewer messages or add senders."""

    twilio_code = 21611


class UnreachableRecipientError(SendError):
    """21612: Twilio cannot route between this sender and this recipient."""

    twilio_code = 21612


class NotMobileError(SendError):
    """21614: the 'To' number cannot receive SMS (e.g. a landline)."""

    twilio_code = 21614


class MediaError(WebhookKitError):
    """A media download was refused or failed; the message says why."""


class MediaHostError(MediaError):
    """The media URL (or a redirect) leads to a host that must not get the credentials."""


class MediaTooLargeError(MediaError):
    """The media is larger than the download's size cap."""


class MediaTypeError(MediaError):
    """The downloaded content type differs from the one the message declared."""
