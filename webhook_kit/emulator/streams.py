"""Event Streams (events.twilio.com v1): Sinks, Subscriptions, and delivery in batches.

A webhook Sink receives a JSON array of CloudEvents, signed like any JSON webhook
(``bodySHA256`` in the URL; the Webhooks configuration Rules decide the key), with HTTP
Basic when its destination carries ``user:pass@``. Unlike status callbacks, a batch that is
not answered 2xx is retried, with exponential backoff and jitter, for up to four hours of
emulated time. Under :class:`~webhook_kit.emulator.lifecycle.Chaos` events come out of order
and duplicated (``duplicate`` is the chance that an event is sent again in a later batch),
never dropped: Event Streams is the channel that arrives.

A Sink created over REST starts ``initialized``; ``Test`` sends it a test event and
``Validate`` with that event's ``test_id`` makes it ``active`` (only active sinks can be
subscribed). :meth:`EventStreams.add_sink` does all of it at once for tests.
"""

from __future__ import annotations

import json
import random
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlencode

from ..signature import body_sha256
from ..streams import INBOUND_TYPE, MESSAGE_STATUS_PREFIX
from .clock import Scheduler, Task
from .delivery import (
    USER_AGENT,
    Delivery,
    DeliveryLog,
    Overrides,
    Signing,
    Transport,
    send_once,
    split_userinfo,
)
from .errors import ApiError
from .lifecycle import Chaos
from .model import API_VERSION, EmulatedMessage, iso8601, new_sid
from .resource import is_url

BASE_URL: Final = "https://events.twilio.com/v1"
#: The statuses Event Streams reports (``messageStatus``, upper case in the event).
STATUSES: Final = ("queued", "sent", "failed", "delivered", "undelivered", "read")
TEST_TYPE: Final = "com.twilio.eventstreams.test-event"
MESSAGING_TYPES: Final = (*(MESSAGE_STATUS_PREFIX + s for s in STATUSES), INBOUND_TYPE)
#: Events per request (Twilio's batch size is not documented; this is the emulator's).
MAX_BATCH: Final = 100
#: Emulated seconds events wait to be batched together.
BATCH_WINDOW: Final = 0.05
#: How long a batch is retried before Twilio gives up on it (emulated seconds).
RETRY_FOR: Final = 4 * 3600.0
#: Twilio waits 5 seconds for a sink's answer; connection overrides do not apply.
TIMEOUTS: Final = Overrides(connect_timeout=5.0, read_timeout=5.0, total_time=5.0)
SINK_SID_RE: Final = re.compile(r"DG[0-9a-f]{32}")
SUBSCRIPTION_SID_RE: Final = re.compile(r"DF[0-9a-f]{32}")
_SINK_TYPES = ("kinesis", "webhook", "segment", "email")


def _iso_ms(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass(slots=True)
class Sink:
    sid: str
    description: str
    sink_type: str
    configuration: dict[str, Any]
    status: str
    created: float
    updated: float
    test_id: str | None = None

    @property
    def destination(self) -> str:
        return str(self.configuration.get("destination") or "")

    def json(self) -> dict[str, Any]:
        url = f"{BASE_URL}/Sinks/{self.sid}"
        return {
            "status": self.status,
            "sink_configuration": self.configuration,
            "description": self.description,
            "sid": self.sid,
            "date_created": iso8601(self.created),
            "sink_type": self.sink_type,
            "date_updated": iso8601(self.updated),
            "url": url,
            "links": {"sink_test": f"{url}/Test", "sink_validate": f"{url}/Validate"},
        }


@dataclass(slots=True)
class Subscription:
    sid: str
    account_sid: str
    sink_sid: str
    description: str
    #: event type -> schema version
    types: dict[str, int]
    created: float
    updated: float

    def json(self) -> dict[str, Any]:
        url = f"{BASE_URL}/Subscriptions/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "sid": self.sid,
            "date_created": iso8601(self.created),
            "date_updated": iso8601(self.updated),
            "sink_sid": self.sink_sid,
            "description": self.description,
            "url": url,
            "links": {"subscribed_events": f"{url}/SubscribedEvents"},
        }


@dataclass(slots=True)
class _Batch:
    sink_sid: str
    events: list[dict[str, Any]]
    first_attempt: float = 0.0
    attempts: int = 0


@dataclass
class EventStreams:
    """The account's sinks and subscriptions, and the events on their way to them.

    ``signing(url)`` says how a request to ``url`` is signed, ``transport(url)`` whether it
    goes to an app mounted in-process, and ``run(task)`` runs a delivery (inline on a
    manual clock, on the emulator's pool on a real one).
    """

    account_sid: str
    scheduler: Scheduler
    signing: Callable[[str], Signing]
    transport: Callable[[str], Transport | None]
    run: Callable[[Task], None]
    log: DeliveryLog
    chaos: Chaos | None = None
    seed: int = 0
    sinks: dict[str, Sink] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    #: Events acknowledged by a sink, sent again by chaos, and given up after four hours.
    delivered: int = 0
    duplicated: int = 0
    abandoned: int = 0
    #: Per sink: events waiting for their batch, each with whether it is a chaos copy.
    _pending: dict[str, list[tuple[dict[str, Any], bool]]] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng.seed((self.chaos.seed if self.chaos else self.seed) + 1)

    def now(self) -> float:
        return self.scheduler.clock.now()

    # -- sinks and subscriptions ----------------------------------------------------------

    def create_sink(self, description: str, configuration: dict[str, Any], sink_type: str) -> Sink:
        if not description:
            raise ApiError(20001, "Missing required parameter Description in the post body")
        if sink_type not in _SINK_TYPES:
            raise ApiError(20001, f"SinkType must be one of {', '.join(_SINK_TYPES)}")
        if sink_type == "webhook":
            destination = str(configuration.get("destination") or "")
            if not is_url(split_userinfo(destination)[0]):
                raise ApiError(20001, "SinkConfiguration.destination must be an http(s) URL")
            if str(configuration.get("method", "POST")).upper() != "POST":
                raise ApiError(20001, "the emulator delivers to webhook sinks with POST only")
        now = self.now()
        sink = Sink(new_sid("DG"), description, sink_type, configuration, "initialized", now, now)
        with self._lock:
            self.sinks[sink.sid] = sink
        return sink

    def test_sink(self, sid: str) -> None:
        """Send the sink a test event; validating with its ``test_id`` activates the sink."""
        sink = self.sink(sid)
        test_id = str(uuid.uuid4())
        with self._lock:
            sink.test_id, sink.status = test_id, "validating"
            sink.updated = self.now()
        event = self._event(TEST_TYPE, "Sink", {"test_id": test_id}, "EventStreams.TestSink/1")
        self._enqueue(sink.sid, [event])

    def validate_sink(self, sid: str, test_id: str) -> None:
        sink = self.sink(sid)
        with self._lock:
            if not test_id or test_id != sink.test_id:
                raise ApiError(20001, "TestId does not match the sink's last test event")
            sink.status, sink.updated = "active", self.now()

    def delete_sink(self, sid: str) -> None:
        self.sink(sid)
        with self._lock:
            if any(s.sink_sid == sid for s in self.subscriptions.values()):
                raise ApiError(20001, "the sink is in use by a subscription: delete that first")
            del self.sinks[sid]
            self._pending.pop(sid, None)

    def subscribe(
        self, sink_sid: str, types: Sequence[tuple[str, int]], description: str
    ) -> Subscription:
        if not description:
            raise ApiError(20001, "Missing required parameter Description in the post body")
        if not types:
            raise ApiError(20001, "Missing required parameter Types in the post body")
        sink = self.sink(sink_sid)
        if sink.status != "active":
            raise ApiError(20001, f"sink {sink_sid} is {sink.status}: validate it first")
        now = self.now()
        subscription = Subscription(
            new_sid("DF"), self.account_sid, sink_sid, description, dict(types), now, now
        )
        with self._lock:
            self.subscriptions[subscription.sid] = subscription
        return subscription

    def add_sink(
        self,
        destination: str,
        *,
        types: Sequence[str] = MESSAGING_TYPES,
        batch_events: bool = True,
    ) -> Sink:
        """An active webhook sink subscribed to ``types`` (default: every messaging type)."""
        configuration = {"destination": destination, "method": "POST", "batch_events": batch_events}
        sink = self.create_sink(f"sink to {destination}", configuration, "webhook")
        with self._lock:
            sink.status = "active"
        self.subscribe(sink.sid, [(kind, 1) for kind in types], f"{destination}: messaging")
        return sink

    def sink(self, sid: str) -> Sink:
        """The sink ``sid``; a 404 ``ApiError`` if there is none."""
        with self._lock:
            sink = self.sinks.get(sid)
        if sink is None:
            raise ApiError(20404, f"The requested resource /v1/Sinks/{sid} was not found", 404)
        return sink

    def reset(self) -> None:
        with self._lock:
            self.sinks.clear()
            self.subscriptions.clear()
            self._pending.clear()
            self.delivered = self.duplicated = self.abandoned = 0
            self.__post_init__()

    # -- events ---------------------------------------------------------------------------

    def message_changed(self, record: EmulatedMessage) -> None:
        """Publish the event of a message's new status (or of an inbound message)."""
        if record.direction == "inbound":
            kind = INBOUND_TYPE
        elif record.status in STATUSES:
            kind = MESSAGE_STATUS_PREFIX + record.status
        else:
            return
        with self._lock:  # only webhook sinks have somewhere to go in the emulator
            sinks = {
                s.sink_sid
                for s in self.subscriptions.values()
                if kind in s.types and self.sinks[s.sink_sid].sink_type == "webhook"
            }
        if not sinks:
            return
        event = self._event(kind, self._source(record), _data(record, kind), _schema(kind))
        for sink in sorted(sinks):
            self._enqueue(sink, [event])

    def _source(self, record: EmulatedMessage) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{record.sid}.json"

    def _event(self, kind: str, source: str, data: dict[str, Any], schema: str) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "type": kind,
            "source": source,
            "id": str(uuid.uuid4()),
            "dataschema": f"https://events-schemas.twilio.com/{schema}",
            "datacontenttype": "application/json",
            "time": _iso_ms(self.now()),
            "data": data,
        }

    def _enqueue(
        self, sink_sid: str, events: list[dict[str, Any]], delay: float = 0.0, copy: bool = False
    ) -> None:
        with self._lock:
            pending = self._pending.setdefault(sink_sid, [])
            first = not pending
            pending.extend((event, copy) for event in events)
        if first or delay:
            self.scheduler.after(BATCH_WINDOW + delay, lambda: self._flush(sink_sid))

    def _flush(self, sink_sid: str) -> None:
        """Cut the sink's pending events into batches (chaos: shuffled, some sent again)."""
        with self._lock:
            pending = self._pending.pop(sink_sid, [])
            sink = self.sinks.get(sink_sid)
            if not pending or sink is None:
                return
            chaos, rng = self.chaos, self._rng
            again: list[dict[str, Any]] = []
            if chaos is not None:
                if rng.random() < chaos.reorder:
                    rng.shuffle(pending)
                # A copy is not copied again: each event comes at most twice.
                again = [e for e, copy in pending if not copy and rng.random() < chaos.duplicate]
                self.duplicated += len(again)
            events = [event for event, _ in pending]
            size = MAX_BATCH if sink.configuration.get("batch_events", True) else 1
        for start in range(0, len(events), size):
            batch = _Batch(sink_sid, events[start : start + size])
            self.run(lambda batch=batch: self._send(batch))  # type: ignore[misc]
        if again and chaos is not None:
            delay = rng.uniform(0, chaos.jitter) + BATCH_WINDOW
            self._enqueue(sink_sid, again, delay, copy=True)

    def _send(self, batch: _Batch) -> None:
        with self._lock:
            sink = self.sinks.get(batch.sink_sid)
        if sink is None:
            return
        now = self.now()
        if batch.attempts == 0:
            batch.first_attempt = now
        batch.attempts += 1
        body = json.dumps(batch.events, separators=(",", ":")).encode()
        target, userinfo = split_userinfo(sink.destination.partition("#")[0])
        url = (
            target + ("&" if "?" in target else "?") + urlencode({"bodySHA256": body_sha256(body)})
        )
        signer = self.signing(url)
        headers = {
            "Content-Type": "application/json",
            **signer.headers(url, None, userinfo),
            "User-Agent": USER_AGENT,
            "X-Home-Region": "us1",
        }
        response, failure = send_once(url, body, headers, self.transport(target), TIMEOUTS)
        self.log.add(
            Delivery(
                "events",
                url,
                (),
                "",
                batch.attempts,
                now,
                response,
                failure,
                body,
                signature=signer.describe(userinfo),
            )
        )
        if response is not None and 200 <= response.status < 300:
            with self._lock:
                self.delivered += len(batch.events)
            return
        if now - batch.first_attempt >= RETRY_FOR:
            with self._lock:
                self.abandoned += len(batch.events)
            return
        with self._lock:
            delay = min(2.0 ** (batch.attempts - 1), 300.0) * self._rng.uniform(0.5, 1.5)
        self.scheduler.after(delay, lambda: self.run(lambda: self._send(batch)))


def _schema(kind: str) -> str:
    if kind == INBOUND_TYPE:
        return "Messaging.InboundMessageV1/6"
    return "Messaging.MessageStatus/8"


def _data(record: EmulatedMessage, kind: str) -> dict[str, Any]:
    """``Messaging.MessageStatus`` (or ``InboundMessageV1``) data of the record, as now."""
    data: dict[str, Any] = {
        "messageSid": record.sid,
        "timestamp": _iso_ms(record.date_updated),
        "accountSid": record.account_sid,
        "eventName": kind,
        "apiVersion": API_VERSION,
        "from": record.from_,
        "to": record.to,
    }
    if kind == INBOUND_TYPE:
        data.update(numMedia=record.num_media, body=record.body)
    else:
        data["messageStatus"] = record.status.upper()
        data["numberOfSegments"] = record.num_segments
        data["dateUpdated"] = _iso_ms(record.date_updated)
        if record.error_code is not None:
            data["errorCode"] = record.error_code
    if record.messaging_service_sid:
        data["messagingServiceSid"] = record.messaging_service_sid
    return data
