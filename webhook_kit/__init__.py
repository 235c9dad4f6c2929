"""webhook_kit: Twilio Programmable Messaging webhooks in Flask.

Verified, typed, exactly-once webhooks with lxml TwiML replies and a delivery ledger.

The names here are the ones an app uses: the kit, the events its handlers receive, the TwiML
reply, the ledger and sending, and every exception webhook_kit raises (all in
:mod:`webhook_kit.errors`, under :class:`WebhookKitError`). The rest lives in submodules:
``webhook_kit.twiml`` (the whole TwiML builder and parser), ``webhook_kit.testing``,
``webhook_kit.emulator``, ``webhook_kit.stores``, ``webhook_kit.config``.
"""

from __future__ import annotations

from typing import Any

from .conversation import (
    Conversation,
    Flow,
    Question,
)
from .errors import (
    AuthenticationError,
    BadRequestError,
    BodyTooLongError,
    ConfigurationError,
    ConversationStateError,
    InFlightError,
    InvalidCallbackURLError,
    InvalidFromError,
    InvalidMethodError,
    InvalidToError,
    LedgerQueryError,
    MediaError,
    MediaHostError,
    MediaTooLargeError,
    MediaTypeError,
    MessageNotFoundError,
    NotMobileError,
    PayloadTooLargeError,
    QueueFullError,
    RateLimitedError,
    RedirectNotLastError,
    RegionNotPermittedError,
    ReplyTypeError,
    SenderNotCapableError,
    SendError,
    SendInDoubtError,
    SignatureError,
    StoreError,
    TooManyMediaError,
    TwilioUnreachableError,
    TwiMLError,
    TwiMLParseError,
    TwiMLTypeError,
    UnauthorizedError,
    UnreachableRecipientError,
    UnsubscribedRecipientError,
    WebhookKitError,
    WebhookRejectedError,
)
from .events import (
    Channel,
    FallbackRequest,
    InboundMedia,
    InboundMessage,
    Location,
    OptOutType,
    Place,
    Referral,
    RepliedMessage,
    StatusCallback,
    StreamEvent,
)
from .jobs import (
    Job,
    JobState,
)
from .kit import WebhookKit
from .ledger import (
    Direction,
    Ledger,
    LedgerEvent,
    MessageRecord,
)
from .sending import (
    Sender,
    SentMessage,
)
from .signature import compute_signature
from .status import (
    DeliveryFailure,
    MessageStatus,
)
from .twiml import (
    Message,
    MessagingResponse,
    Redirect,
)
from .whatsapp import Template

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BodyTooLongError",
    "Channel",
    "ConfigurationError",
    "Conversation",
    "ConversationStateError",
    "DeliveryFailure",
    "Direction",
    "FallbackRequest",
    "Flow",
    "InFlightError",
    "InboundMedia",
    "InboundMessage",
    "InvalidCallbackURLError",
    "InvalidFromError",
    "InvalidMethodError",
    "InvalidToError",
    "Job",
    "JobState",
    "Ledger",
    "LedgerEvent",
    "LedgerQueryError",
    "Location",
    "MediaError",
    "MediaHostError",
    "MediaTooLargeError",
    "MediaTypeError",
    "Message",
    "MessageNotFoundError",
    "MessageRecord",
    "MessageStatus",
    "MessagingResponse",
    "NotMobileError",
    "OptOutType",
    "PayloadTooLargeError",
    "Place",
    "Question",
    "QueueFullError",
    "RateLimitedError",
    "Redirect",
    "RedirectNotLastError",
    "Referral",
    "RegionNotPermittedError",
    "RepliedMessage",
    "ReplyTypeError",
    "SendError",
    "SendInDoubtError",
    "Sender",
    "SenderNotCapableError",
    "SentMessage",
    "SignatureError",
    "StatusCallback",
    "StoreError",
    "StreamEvent",
    "Template",
    "TooManyMediaError",
    "TwiMLError",
    "TwiMLParseError",
    "TwiMLTypeError",
    "TwilioUnreachableError",
    "UnauthorizedError",
    "UnreachableRecipientError",
    "UnsubscribedRecipientError",
    "WebhookKit",
    "WebhookKitError",
    "WebhookRejectedError",
    "compute_signature",
]


#: Former names, still importable for now (with a warning): name -> what it became.
_RENAMED: dict[str, type] = {"DeliveryError": DeliveryFailure, "Media": InboundMedia}


def __getattr__(name: str) -> Any:
    """Resolve a former name with a :class:`DeprecationWarning` naming its successor."""
    if name not in _RENAMED:
        raise AttributeError(f"module 'webhook_kit' has no attribute {name!r}")
    import warnings

    new = _RENAMED[name]
    warnings.warn(
        f"webhook_kit.{name} is now webhook_kit.{new.__name__}; the old name will be removed",
        DeprecationWarning,
        stacklevel=2,
    )
    return new
