"""Event Streams: Twilio's retried channel of message events, as batches of CloudEvents.

A webhook sink receives a JSON array of CloudEvents, signed like any JSON webhook
(``bodySHA256`` in the URL), at least once, retried for hours, in any order. Status
callbacks are the opposite: sent once, never retried. The kit takes both into one ledger:
a message status event becomes the status update its callback would have been, with the
same idempotency key, so each distinct status of a message is recorded and handled once,
whichever channel brought it first; every event is also claimed by its id, so a retried or
duplicated event is applied once across retries and hosts.

This module parses and checks a batch (all of it, before anything is applied) and matches
``@kit.on_event`` handlers; the request path (``pipeline``) applies it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple

from .errors import BadRequestError, ConfigurationError, PayloadTooLargeError
from .events import Fields, StatusCallback, StreamEvent, parse_status
from .records import STREAM_FIELD

#: Types of outbound message status events (``.sent``, ``.delivered``, ``.read``...).
MESSAGE_STATUS_PREFIX = "com.twilio.messaging.message."
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

EventHandler = Callable[[StreamEvent], None]


class Received(NamedTuple):
    """One checked event of a batch, and the status update it stands for (if it is one)."""

    event: StreamEvent
    update: StatusCallback | None

    @property
    def key(self) -> str:
        """Its idempotency key: the event id, as CloudEvents makes ``(source, id)`` unique
        and Twilio's ids are unique on their own."""
        return "event:" + self.event.id


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
            batch.append(Received(event, status_update(event)))
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
    pairs = []
    for name, field in _CALLBACK_FIELDS:
        value = data.get(name)
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            pairs.append((field, str(value)))
        elif value is not None:
            raise BadRequestError(f"data.{name} must be a string")
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
