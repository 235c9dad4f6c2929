"""Message statuses, their lifecycle order, and the delivery-error catalogue.

Status callbacks arrive out of order and more than once, so a status only means something
together with its place in the lifecycle: :attr:`MessageStatus.rank` orders them, and the
ledger never lets a lower rank replace a higher one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Self


class OpenStrEnum(StrEnum):
    """A string enum that keeps values it does not know instead of rejecting them.

    Twilio adds values without notice: an unknown one becomes a pseudo-member carrying the
    value, typed as the enum but not added to it (so hostile input cannot grow it).
    """

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        if not isinstance(value, str) or not value:
            return None
        member = str.__new__(cls, value)
        member._name_ = value.upper()
        member._value_ = value
        return member


class MessageStatus(OpenStrEnum):
    """Every status of Twilio's Message resource.

    An unknown value is kept (``MessageStatus("new_thing").value == "new_thing"``) with rank
    ``-1``, so it is recorded but never overrides a known status.
    """

    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    CANCELED = "canceled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    RECEIVING = "receiving"
    RECEIVED = "received"
    READ = "read"
    PARTIALLY_DELIVERED = "partially_delivered"

    @property
    def known(self) -> bool:
        """False for a value Twilio sent that this version does not know."""
        return self._value_ in _RANKS

    @property
    def rank(self) -> int:
        """Position in the lifecycle; a status only replaces one of lower rank."""
        return _RANKS.get(self._value_, -1)

    @property
    def is_final(self) -> bool:
        """True once nothing but a read receipt can follow."""
        return self._value_ in _FINAL


# queued < sending < sent < delivered | undelivered | failed < read. accepted/scheduled come
# before queued (Messaging Services); canceled ends a scheduled message; receiving/received
# are the inbound side.
_RANKS: dict[str, int] = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "receiving": 1,
    "sending": 2,
    "sent": 3,
    "canceled": 4,
    "failed": 4,
    "delivered": 4,
    "undelivered": 4,
    "partially_delivered": 4,
    "received": 4,
    "read": 5,
}
_FINAL = frozenset(status for status, rank in _RANKS.items() if rank >= 4)


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    """Why Twilio could not deliver a message: ``ErrorCode`` with a readable description.

    A value, not an exception: it arrives with a status callback (``update.error``) and is
    kept on the ledger's record (``record.error``). ``DeliveryError``, its former name, still
    works for now, with a :class:`DeprecationWarning`.
    """

    code: int
    #: ``ErrorMessage`` when Twilio sent one (it is not documented, so often absent).
    message: str | None = None

    @property
    def description(self) -> str | None:
        """A one-line explanation from the catalogue, or None for a code it does not list."""
        entry = ERROR_CATALOGUE.get(self.code)
        return entry[1] if entry else None

    @property
    def title(self) -> str | None:
        """Twilio's short title for the code, or None for a code the catalogue does not list."""
        entry = ERROR_CATALOGUE.get(self.code)
        return entry[0] if entry else None

    @property
    def more_info(self) -> str:
        """Twilio's documentation page for this code."""
        return f"https://www.twilio.com/docs/api/errors/{self.code}"


#: code -> (Twilio's title, what it means in one line), from https://www.twilio.com/docs/api/errors/.
#: Codes a status callback can carry: 30001-30010, 63001-63014 and the other delivery codes
#: seen in callbacks. A code missing here still reaches handlers, just without a description.
ERROR_CATALOGUE: dict[int, tuple[str, str]] = {
    21610: (
        "Attempt to send to unsubscribed recipient",
        "The recipient opted out of this sender (e.g. replied STOP) and must opt back in.",
    ),
    21612: (
        "Message cannot be sent with the current combination of 'To' and/or 'From' parameters",
        "Twilio cannot route a message between this sender and this recipient.",
    ),
    21614: (
        "'To' number is not a valid mobile number",
        "The destination cannot receive SMS, for example a landline.",
    ),
    30001: (
        "Queue overflow",
        "The message waited too long in the sender's queue and expired.",
    ),
    30002: (
        "Account suspended",
        "The account was suspended after the message was queued, so it was never sent.",
    ),
    30003: (
        "Unreachable destination handset",
        "The carrier could not reach the phone: off, out of coverage, or unable to take SMS.",
    ),
    30004: (
        "Message blocked",
        "The recipient is blocked from this message: opted out, blocklisted, or a carrier block.",
    ),
    30005: (
        "Unknown destination handset",
        "The carrier says the number is unknown or no longer in service.",
    ),
    30006: (
        "Landline or unreachable carrier",
        "The number cannot receive texts (for example a landline) or its carrier is unreachable.",
    ),
    30007: (
        "Message filtered",
        "Twilio or the carrier filtered the message as spam or a policy violation.",
    ),
    30008: (
        "Unknown error",
        "Delivery failed and the carrier gave no specific reason.",
    ),
    30009: (
        "Missing inbound segment",
        "A part of a multi-part message never arrived, so it could not be reassembled.",
    ),
    30010: (
        "Message price exceeds max price",
        "The message would have cost more than the MaxPrice set on it.",
    ),
    30011: (
        "MMS not supported by the receiving phone number in this region",
        "The recipient's number or region cannot receive MMS.",
    ),
    30012: (
        "TTL is too small",
        "The message's time-to-live was too short to deliver it.",
    ),
    30017: (
        "Carrier network congestion",
        "The carrier's network was too congested to accept the message in time.",
    ),
    30018: (
        "Destination carrier requires sender ID pre-registration",
        "The sender ID must be registered with the destination carrier first.",
    ),
    30019: (
        "Content size exceeds carrier limit",
        "The text or media is larger than the carrier accepts.",
    ),
    30020: (
        "Internal Failure with Message Scheduling",
        "Twilio failed while handling a scheduled message.",
    ),
    30021: (
        "Internal Failure with messaging service orchestrator",
        "Twilio failed inside the Messaging Service.",
    ),
    30022: (
        "US A2P 10DLC - Rate Limits Exceeded",
        "Sending exceeded the rate allowed for the US 10DLC campaign or brand.",
    ),
    30023: (
        "US A2P 10DLC - Daily Message Cap Reached",
        "The brand reached its daily US 10DLC message cap.",
    ),
    30024: (
        "Numeric Sender ID Not Provisioned on Carrier",
        "The numeric sender ID is not set up on the destination carrier.",
    ),
    30027: (
        "US A2P 10DLC - T-Mobile Daily Message Limit Reached",
        "The brand used up its daily T-Mobile 10DLC allowance.",
    ),
    30032: (
        "Toll-Free Number Has Not Been Verified",
        "The toll-free sender has not finished verification.",
    ),
    30033: (
        "US A2P 10DLC - Campaign Suspended",
        "The 10DLC campaign linked to this number is suspended.",
    ),
    30034: (
        "US A2P 10DLC - Message from an Unregistered Number",
        "A US local number sent business traffic without an approved campaign.",
    ),
    30035: (
        "US A2P 10DLC - Message from a number still being configured",
        "The number's campaign registration is not active yet.",
    ),
    30036: (
        "Validity Period Expired",
        "The message was not sent before its validity period ran out.",
    ),
    30037: (
        "Outbound Messaging Disabled",
        "Outbound messaging is turned off for this account or sender.",
    ),
    30038: (
        "OTP Message Body Filtered",
        "A message carrying a one-time passcode was filtered.",
    ),
    30041: (
        "Message from an unregistered number sent to a United Kingdom number",
        "UK-bound traffic came from a sender that must be registered.",
    ),
    30042: (
        "The Sender ID is blocked as generic or it contains special characters",
        "The alphanumeric sender ID was rejected as generic or for its characters.",
    ),
    30450: (
        "Message delivery blocked",
        "SMS Pumping Protection blocked this destination as likely fraud.",
    ),
    30453: (
        "Message couldn't be delivered",
        "Delivery was stopped; Twilio counts this code as fraud-related.",
    ),
    30500: (
        "Twilio Internal Error",
        "Twilio failed internally on this message; retrying is reasonable.",
    ),
    63001: (
        "Channel could not authenticate the request",
        "The channel (WhatsApp, Messenger, ...) rejected the sender's credentials.",
    ),
    63002: (
        "Channel could not find the From address",
        "The From address is wrong or not supported on this channel.",
    ),
    63003: (
        "Channel could not find To address",
        "The recipient's channel address is invalid or inactive, e.g. not a WhatsApp user.",
    ),
    63005: (
        "Channel did not accept given content",
        "The channel rejected the message content or media.",
    ),
    63006: (
        "Could not format given content for the channel",
        "Twilio could not convert the content into the channel's format.",
    ),
    63007: (
        "Twilio could not find a Channel with the specified 'From' address",
        "No channel sender exists for this From address on the account.",
    ),
    63008: (
        "Request failed: channel module misconfigured",
        "The channel sender's configuration in Twilio is wrong.",
    ),
    63009: (
        "Channel provider returned an internal service error (HTTP 5xx)",
        "The channel provider's servers returned an error.",
    ),
    63010: (
        "Twilio's platform encountered an internal error processing this message",
        "Twilio failed internally while sending the channel message.",
    ),
    63011: (
        "Invalid Request: Twilio encountered an error while processing your request",
        "The channel provider could not process the request as sent.",
    ),
    63012: (
        "Channel provider returned an internal service error",
        "The channel provider reported an internal error.",
    ),
    63013: (
        "Channel policy violation",
        "The message breaks the channel provider's rules.",
    ),
    63014: (
        "Channel message blocked by user action",
        "The recipient blocked the sender or withdrew consent on that channel.",
    ),
    63015: (
        "Channel Sandbox can only send messages to phone numbers that have joined the Sandbox",
        "The sandbox sender can only message numbers that joined the sandbox.",
    ),
    63016: (
        "Failed to send freeform message because you are outside the allowed window",
        "The 24-hour customer-service window had closed; use an approved template.",
    ),
    63017: (
        "Rate limit exceeded",
        "Too many messages were sent too quickly on the channel.",
    ),
    63018: (
        "Rate limit exceeded for Channel",
        "The sender exceeded the channel's sending rate.",
    ),
    63019: (
        "Media failed to download",
        "The attached media URL could not be fetched for the channel.",
    ),
    63020: (
        "Twilio encountered a Business Manager account error",
        "The linked Meta Business Manager account has a problem.",
    ),
    63021: (
        "Channel invalid content error",
        "The content is not supported by the channel (type, components or length).",
    ),
    63022: (
        "Invalid vname certificate",
        "The sender's WhatsApp display-name certificate is invalid.",
    ),
    63024: (
        "Invalid message recipient",
        "The recipient is not valid for this channel.",
    ),
    63027: (
        "Template does not exist for a language and locale",
        "No approved template exists for the requested language or locale.",
    ),
    63028: (
        "Number of parameters provided does not match the expected number of parameters",
        "The template variables do not match what the template expects.",
    ),
    63030: (
        "Unsupported parameter for type of channels message",
        "A parameter was sent that this channel message type does not support.",
    ),
    63031: (
        "Channels message cannot have same 'From' and 'To'",
        "The sender and recipient addresses are the same.",
    ),
    63032: (
        "We cannot send this message to this user because of a WhatsApp limitation",
        "WhatsApp declined delivery to this user because of a limit on its side.",
    ),
    63033: (
        "Recipient opted out to receive message",
        "The recipient opted out on the channel.",
    ),
    63034: (
        "Media exceeds size limit",
        "The media file is larger than the channel allows.",
    ),
    63035: (
        "RCS agent not launched or recipient not a tester",
        "The RCS sender cannot reach this recipient yet (launch, tester invite, or region).",
    ),
    63037: (
        "Channel Media Upload Error",
        "Uploading the media to the channel failed.",
    ),
    63038: (
        "Account exceeded the daily messages limit",
        "The account reached its daily message limit.",
    ),
    63040: (
        "Template rejected",
        "The WhatsApp template used was rejected.",
    ),
    63041: (
        "Template paused",
        "The WhatsApp template used is paused.",
    ),
}
