"""webhook_kit: Twilio Programmable Messaging webhooks in Flask.

Verified, typed, exactly-once webhooks with lxml TwiML replies and a delivery ledger.
"""

from .conversation import Conversation as Conversation
from .conversation import Flow as Flow
from .conversation import Question as Question
from .errors import BadRequestError as BadRequestError
from .errors import BodyTooLongError as BodyTooLongError
from .errors import ConfigurationError as ConfigurationError
from .errors import ConversationStateError as ConversationStateError
from .errors import InvalidCallbackURLError as InvalidCallbackURLError
from .errors import InvalidMethodError as InvalidMethodError
from .errors import RedirectNotLastError as RedirectNotLastError
from .errors import ReplyTypeError as ReplyTypeError
from .errors import SendError as SendError
from .errors import SendInDoubtError as SendInDoubtError
from .errors import SignatureError as SignatureError
from .errors import StoreError as StoreError
from .errors import TooManyMediaError as TooManyMediaError
from .errors import TwiMLError as TwiMLError
from .errors import TwiMLParseError as TwiMLParseError
from .errors import TwiMLTypeError as TwiMLTypeError
from .errors import WebhookKitError as WebhookKitError
from .errors import WebhookRejectedError as WebhookRejectedError
from .events import Channel as Channel
from .events import FallbackRequest as FallbackRequest
from .events import InboundMessage as InboundMessage
from .events import Location as Location
from .events import Media as Media
from .events import OptOutType as OptOutType
from .events import Place as Place
from .events import Referral as Referral
from .events import RepliedMessage as RepliedMessage
from .events import StatusCallback as StatusCallback
from .jobs import Job as Job
from .jobs import JobState as JobState
from .kit import WebhookKit as WebhookKit
from .ledger import Direction as Direction
from .ledger import Ledger as Ledger
from .ledger import LedgerEvent as LedgerEvent
from .ledger import MessageRecord as MessageRecord
from .sending import Sender as Sender
from .sending import SentMessage as SentMessage
from .signature import compute_signature as compute_signature
from .status import DeliveryError as DeliveryError
from .status import MessageStatus as MessageStatus
from .twiml import Message as Message
from .twiml import MessagingResponse as MessagingResponse
from .twiml import Redirect as Redirect
