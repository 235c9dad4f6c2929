"""Event Streams: Twilio's retried channel of message events, as batches of CloudEvents.

A webhook sink receives a JSON array of CloudEvents, signed like any JSON webhook
(``bodySHA256`` in the URL), at least once, retried for hours, in any order. Status
callbacks are the opposite: sent once, never retried. The kit takes both into one ledger:
a message status event becomes the status update its callback would have been, with the
same idempotency key, so each distinct status of a message is recorded and handled once,
whichever channel brought it first; every event is also claimed by its id, so a retried or
duplicated event is applied once across retries and hosts.

An inbound message event (``inbound-message.received``) is written to the ledger as the
inbound webhook writes its message: one record per MessageSid, whichever channel came first.

This module parses and checks a batch (all of it, before anything is applied), says what
each event writes to the ledger (:meth:`Received.write`) and matches ``@kit.on_event``
handlers; the request path (``pipeline``) applies the batch in one store step.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple

from .errors import BadRequestError, ConfigurationError, PayloadTooLargeError
from .events import (
    NUMBER,
    Fields,
    InboundMessage,
    StatusCallback,
    StreamEvent,
    parse_inbound,
    parse_status,
)
from .records import STREAM_FIELD, EventWrite, MessageFacts, StatusEntry

#: Types of outbound message status events (``.sent``, ``.delivered``, ``.read``...).
MESSAGE_STATUS_PREFIX = "com.twilio.messaging.message."
#: The type of an inbound message event (``Messaging.InboundMessageV1``).
INBOUND_TYPE = "com.twilio.messaging.inbound-message.received"
#: The longest event id accepted (Twilio's are UUIDs; a CloudEvent id is any string).
MAX_ID_LENGTH = 256
#: ``Messaging.MessageStatus`` data fields -> the status callback's field of the same meaning.
_CALLBACK_FIELDS = (
    ("messageSid", "MessageSid"),
    ("accountSid", "AccountSid"),
    ("from", "From"),
    ("to", "To"),
    ("messagingServiceSid", "MessagingServiceSid"),
    ("apiVersion", "ApiVersion"),
    ("rawDlrDoneDate", "RawDlrDoneDate"),
    ("numberOfSegments", "NumSegments"),
)
#: ``Messaging.InboundMessageV1`` data fields -> the inbound webhook's field of the same meaning.
_INBOUND_FIELDS = (
    ("messageSid", "MessageSid"),
    ("accountSid", "AccountSid"),
    ("from", "From"),
    ("to", "To"),
    ("body", "Body"),
    ("messagingServiceSid", "MessagingServiceSid"),
    ("apiVersion", "ApiVersion"),
    ("numSegments", "NumSegments"),
    ("numMedia", "NumMedia"),
)
#: Counts the ledger keeps (integer columns): nine digits at most, as ``ErrorCode``.
_COUNTS = ("numSegments", "numMedia")

EventHandler = Callable[[StreamEvent], None]


class Received(NamedTuple):
    """One checked event of a batch, and the status update or inbound message it stands for."""

    event: StreamEvent
    update: StatusCallback | None
    inbound: InboundMessage | None = None

    @property
    def key(self) -> str:
        """The idempotency key of its ``on_event`` handlers: the event id, as CloudEvents
        makes ``(source, id)`` unique and Twilio's ids are unique on their own."""
        return "event:" + self.event.id

    @property
    def ledger_key(self) -> str:
        """Its dedupe record in the ledger step, apart from :attr:`key`: a retry finds its
        ledger effects done, and still runs the handlers that did not finish."""
        return "event-ledger:" + self.event.id

    def write(self, at: float) -> EventWrite:
        """What it writes to the ledger, learnt at ``at``: its status update as its callback
        would record it, or its inbound message as the inbound webhook would."""
        entry = None
        if self.update is not None:
            entry = StatusEntry.from_callback(self.update, StatusEntry.key_of(self.update), at)
        facts = None
        if self.inbound is not None:
            facts = MessageFacts.inbound(self.inbound, at)
            media = self.event.data.get("numMedia")
            facts = dataclasses.replace(
                facts,
                # What the event leaves out is not known (not "no text", not "no media").
                body=facts.body if "body" in self.event.data else None,
                num_media=None if media is None else int(media),  # checked: digits
            )
        return EventWrite(self.ledger_key, entry, facts)


def parse_batch(body: bytes, limit: int) -> list[Received]:
    """Check a whole batch; :class:`BadRequestError` (400, or 413 over ``limit`` events)
    names the first bad event, and then nothing of the batch may be applied."""
    try:
        items = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequestError("Event Streams body is not JSON (or is nested too deeply)") from None
    if not isinstance(items, list):
        raise BadRequestError("Event Streams body must be a JSON array of CloudEvents")
    if len(items) > limit:
        raise PayloadTooLargeError(
            f"batch of {len(items)} events exceeds WEBHOOK_KIT_EVENTS_MAX_BATCH={limit}"
        )
    batch = []
    for index, item in enumerate(items):
        try:
            event = parse_event(item)
            batch.append(Received(event, status_update(event), inbound_message(event)))
        except BadRequestError as error:
            raise BadRequestError(f"event {index}: {error}") from None
    return batch


def parse_event(item: object) -> StreamEvent:
    """One CloudEvent (JSON object); its required attributes must be non-empty strings."""
    if not isinstance(item, dict):
        raise BadRequestError("a CloudEvent must be a JSON object")
    for name in ("id", "type", "source", "specversion"):
        value = item.get(name)
        if not isinstance(value, str) or not value:
            raise BadRequestError(f"CloudEvent attribute {name!r} must be a non-empty string")
    if len(item["id"]) > MAX_ID_LENGTH:
        raise BadRequestError(f"CloudEvent id is longer than {MAX_ID_LENGTH} characters")
    for name in ("time", "dataschema"):
        if item.get(name) is not None and not isinstance(item[name], str):
            raise BadRequestError(f"CloudEvent attribute {name!r} must be a string")
    data = item.get("data", {})
    if not isinstance(data, dict):
        raise BadRequestError("CloudEvent data must be a JSON object")
    try:
        json.dumps(item).encode()  # kept in the ledger: it must be text a store can hold
    except UnicodeEncodeError:
        raise BadRequestError("CloudEvent holds a lone surrogate (\\ud800-\\udfff)") from None
    except RecursionError:
        raise BadRequestError("CloudEvent is nested too deeply") from None
    return StreamEvent(
        item["id"],
        item["type"],
        item["source"],
        _time(item.get("time")),
        item.get("dataschema"),
        MappingProxyType(data),
        MappingProxyType(item),
    )


def status_update(event: StreamEvent) -> StatusCallback | None:
    """The status update a message status event stands for; None for any other event.

    ``messageStatus`` is upper case in Event Streams (``DELIVERED``) and lower case in
    callbacks; ``READ`` comes as a callback with ``EventType=READ``, so it is given one
    here too. The update's ``raw`` holds the callback fields and, under
    :data:`~webhook_kit.records.STREAM_FIELD`, the whole CloudEvent.
    """
    if not event.type.startswith(MESSAGE_STATUS_PREFIX):
        return None
    data = event.data
    pairs = _pairs(data, _CALLBACK_FIELDS)
    status = data.get("messageStatus")
    if not isinstance(status, str) or not status:
        raise BadRequestError("data.messageStatus must be a non-empty string")
    pairs.append(("MessageStatus", status.lower()))
    if status.lower() == "read":
        pairs.append(("EventType", "READ"))
    code = data.get("errorCode")
    if isinstance(code, int) and not isinstance(code, bool) and code >= 0:
        pairs.append(("ErrorCode", str(code)))
    elif isinstance(code, str) and code:  # the changelog's example sends "400"
        pairs.append(("ErrorCode", code))
    elif code not in (None, ""):
        raise BadRequestError("data.errorCode must be a number")
    pairs.append((STREAM_FIELD, json.dumps(dict(event.raw), separators=(",", ":"))))
    return parse_status(Fields(pairs))


def inbound_message(event: StreamEvent) -> InboundMessage | None:
    """The message an inbound message event stands for, read as its webhook's fields (the
    same checks: a SID, ``from`` and ``to``); None for any other event."""
    if event.type != INBOUND_TYPE:
        return None
    return parse_inbound(Fields(_pairs(event.data, _INBOUND_FIELDS)))


def _pairs(data: Mapping[str, Any], fields: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """The webhook fields of ``data``'s fields: strings or numbers; a count the ledger keeps
    is 0 to 999999999, as a number or its digits."""
    pairs = []
    for name, field in fields:
        value = data.get(name)
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            if name in _COUNTS and not NUMBER.fullmatch(str(value)):
                raise BadRequestError(f"data.{name} must be a number from 0 to 999999999")
            pairs.append((field, str(value)))
        elif value is not None:
            raise BadRequestError(f"data.{name} must be a string")
    return pairs


@dataclass(frozen=True, slots=True)
class EventRoute:
    """An ``@kit.on_event`` handler and the event types it takes (None: every type)."""

    handler: EventHandler
    types: frozenset[str] | None
    #: Type prefixes, from patterns ending in ``.*``.
    prefixes: tuple[str, ...]

    def accepts(self, event: StreamEvent) -> bool:
        if self.types is None and not self.prefixes:
            return True
        return (self.types is not None and event.type in self.types) or event.type.startswith(
            self.prefixes
        )


def event_route(handler: EventHandler, types: Collection[str]) -> EventRoute:
    """Normalise ``on_event`` arguments: exact types, or prefixes written ``com.twilio.*``."""
    exact, prefixes = set(), []
    for pattern in types:
        if not isinstance(pattern, str) or not pattern or "*" in pattern.removesuffix(".*"):
            raise ConfigurationError(
                f"on_event({pattern!r}): give event types, e.g. "
                "'com.twilio.messaging.message.delivered', or a prefix ending in '.*'"
            )
        if pattern.endswith(".*"):
            prefixes.append(pattern[:-1])
        else:
            exact.add(pattern)
    return EventRoute(handler, frozenset(exact) if exact else None, tuple(prefixes))


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
