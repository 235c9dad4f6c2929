"""What decides how an outbound message leaves: services, templates, the WhatsApp window, queues.

:class:`Outbound` owns the account's Messaging Services with their sender pools, its Content
templates, the WhatsApp customer-service windows and the sender queues. The account asks it
twice per message: :meth:`Outbound.prepare` when the message is created (the service's
defaults, service-level opt-outs, the template's text, the window, a ``From`` send's place in
its queue: 21610, 21655, 21611 are synchronous), and :meth:`Outbound.assign` when a service
send is queued (the sender picked from the pool, its place in that queue, or 30001).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Final

from ..encoding import segment_count
from ..whatsapp import WINDOW
from .clock import Clock
from .content import Content, opens_conversation, render
from .errors import ApiError
from .model import EmulatedMessage, channel_of, country_of, new_sid
from .resource import CreateRequest, bad
from .services import (
    ALPHA_SENDER_RE,
    KINDS,
    SERVICE_BASE,
    MessagingService,
    PoolSender,
    parse_service,
    pick,
)
from .state import State
from .throughput import Queues, Slot, Throughput

#: A service send no sender of the pool can make: "The Messaging Service contains no phone
#: numbers" (the code is UNCONFIRMED, twilio-more.md §3.2 lists its neighbours).
NO_SENDER: Final = 21704
#: WhatsApp's customer-service window, in seconds (the kit's rule, one declaration).
WINDOW_SECONDS: Final = WINDOW.total_seconds()


@dataclass(frozen=True, slots=True)
class Prepared:
    """A create request after the service's defaults and the template, with its fate."""

    request: CreateRequest
    #: Decided now: ``failed`` and the code (63016 outside the window), else None.
    failure: tuple[str, int] | None
    #: A ``From`` send's place in its sender's queue.
    slot: Slot | None


class Outbound:
    """Services, senders, templates, windows and queues of one account (thread-safe)."""

    def __init__(self, state: State, clock: Clock, throughput: Throughput | None = None) -> None:
        self.state = state
        self.clock = clock
        self.queues = Queues(throughput or Throughput())
        self._lock = threading.RLock()
        #: Sender address -> its service's SID (every send asks; rebuilt after a change).
        self._pools: dict[str, str] | None = None

    def clear(self) -> None:
        """Forget the queues and what was read from the state (the state was reset)."""
        with self._lock:
            self.queues.clear()
            self._pools = None

    # -- Messaging Services ---------------------------------------------------------------

    def create_service(self, form: dict[str, str], sid: str | None = None) -> MessagingService:
        """``POST /v1/Services`` (``FriendlyName`` is required)."""
        if not form.get("FriendlyName"):
            raise bad(20001, "Missing required parameter FriendlyName in the post body")
        now = self.clock.now()
        service = parse_service(form, MessagingService(sid or new_sid("MG"), "", now, now))
        self.state.put_resource("service", service.sid, service.to_dict())
        return service

    def service(self, sid: str) -> MessagingService:
        data = self.state.resource("service", sid)
        if data is None:
            raise _missing(f"{SERVICE_BASE}/{sid}")
        return MessagingService(**data)

    def services(self) -> list[MessagingService]:
        return [MessagingService(**data) for data in self.state.resources("service")]

    def update_service(self, sid: str, form: dict[str, str]) -> MessagingService:
        with self._lock:
            service = parse_service(form, self.service(sid))
            service = replace(service, date_updated=self.clock.now())
            self.state.put_resource("service", sid, service.to_dict())
        return service

    def delete_service(self, sid: str) -> None:
        with self._lock:
            self.service(sid)
            for sender in self.senders(sid):
                self.remove_sender(sid, sender.kind, sender.sid)
            self.state.delete_resource("service", sid)

    # -- sender pools ---------------------------------------------------------------------

    def add_sender(
        self, service_sid: str, kind: str, sid: str, address: str, country: str | None = None
    ) -> PoolSender:
        """Put a phone number, short code (by SID) or alphanumeric ID in a service's pool.

        ``country``: where it sends from (a number's own country when not given).
        """
        with self._lock:
            self.service(service_sid)
            for other in self.state.resources("sender"):
                if other["kind"] == kind and other["address"] == address:
                    if other["service_sid"] == service_sid:
                        raise bad(21710, f"{address} has already been added to this Service")
                    raise bad(21712, f"{address} is already in another Messaging Service")
            if country is None:
                country = country_of(address) if kind == "phone_number" else ""
            sender = PoolSender(sid, service_sid, kind, address, self.clock.now(), country)
            self.state.put_resource("sender", sid, sender.to_dict(), parent=service_sid)
            self._pools = None
        return sender

    def add_alpha_sender(self, service_sid: str, alpha: str) -> PoolSender:
        if not ALPHA_SENDER_RE.match(alpha):
            raise bad(
                21716,
                f"Invalid AlphaSender {alpha!r}: up to 11 letters, digits, spaces and + - _ &,"
                " not only digits",
            )
        return self.add_sender(service_sid, "alpha_sender", new_sid("AI"), alpha)

    def senders(self, service_sid: str, kind: str | None = None) -> list[PoolSender]:
        pool = [PoolSender(**data) for data in self.state.resources("sender", service_sid)]
        return [s for s in pool if kind is None or s.kind == kind]

    def sender(self, service_sid: str, kind: str, sid: str) -> PoolSender:
        for sender in self.senders(service_sid, kind):
            if sender.sid == sid:
                return sender
        raise _missing(f"{SERVICE_BASE}/{service_sid}/{KINDS[kind][0]}/{sid}")

    def remove_sender(self, service_sid: str, kind: str, sid: str) -> None:
        """Take a sender out of the pool; its sticky mappings go with it."""
        with self._lock:
            sender = self.sender(service_sid, kind, sid)
            self.state.delete_resource("sender", sid)
            self._pools = None
            for mapping in self.state.resources("sticky", service_sid):
                if mapping["from"] == sender.address:
                    self.state.delete_resource("sticky", f"{service_sid}:{mapping['to']}")

    def service_of(self, address: str) -> MessagingService | None:
        """The service whose pool holds ``address``, if any."""
        with self._lock:
            pools = self._pools
            if pools is None:
                senders = self.state.resources("sender")
                pools = self._pools = {data["address"]: data["service_sid"] for data in senders}
            service_sid = pools.get(address)
        return None if service_sid is None else self.service(service_sid)

    # -- Content --------------------------------------------------------------------------

    def add_content(self, content: Content) -> Content:
        self.state.put_resource("content", content.sid, content.to_dict())
        return content

    def content(self, sid: str) -> Content:
        data = self.state.resource("content", sid)
        if data is None:
            raise _missing(f"/v1/Content/{sid}")
        return Content(**data)

    def contents(self) -> list[Content]:
        return [Content(**data) for data in self.state.resources("content")]

    def delete_content(self, sid: str) -> None:
        self.content(sid)
        self.state.delete_resource("content", sid)

    # -- the WhatsApp window --------------------------------------------------------------

    def user_wrote(self, business: str, user: str, at: float) -> None:
        """A WhatsApp user's message opens (or renews) the 24-hour window with the business."""
        self.state.put_resource("window", f"{business}|{user}", {"at": at})

    def window_open(self, business: str, user: str, at: float) -> bool:
        data = self.state.resource("window", f"{business}|{user}")
        return data is not None and at - float(data["at"]) < WINDOW_SECONDS

    # -- sends ----------------------------------------------------------------------------

    def prepare(self, request: CreateRequest, now: float, ready: float) -> Prepared:
        """Apply the service's defaults and the template; decide what is known now.

        ``ready``: when a ``From`` send could leave its queue at the earliest.
        """
        service = None
        if request.messaging_service_sid is not None:
            data = self.state.resource("service", request.messaging_service_sid)
            if data is None:
                raise bad(
                    21705, f"The Messaging Service Sid {request.messaging_service_sid} is invalid."
                )
            service = MessagingService(**data)
        elif request.from_ is not None:
            service = self.service_of(request.from_)
        if service is not None and self.state.opted_out(service.sid, request.to):
            raise ApiError(21610, "Attempt to send to unsubscribed recipient")
        if request.content_sid is not None:
            data = self.state.resource("content", request.content_sid)
            if data is None:
                raise bad(21655, f"The ContentSid {request.content_sid} is Invalid")
            body, media = render(Content(**data), dict(request.content_variables))
            request = replace(request, body=body, media_urls=request.media_urls or media)
        if service is not None and request.messaging_service_sid is not None:
            request = replace(
                request,
                status_callback=request.status_callback or service.status_callback,
                validity_period=request.validity_period or service.validity_period,
            )
        failure = None
        sender = request.from_
        if sender is not None and self._outside_window(
            sender, request.to, request.content_sid, now
        ):
            failure = ("failed", 63016)
        slot = None
        if sender is not None and request.send_at is None and request.messaging_service_sid is None:
            validity = request.validity_period
            deadline = None if validity is None else now + validity
            slot = self._join(sender, request, now, ready, deadline)
            if slot is None:
                raise bad(
                    21611, "This 'From' number has exceeded the maximum number of queued messages"
                )
        return Prepared(request, failure, slot)

    def assign(self, record: EmulatedMessage, ready: float) -> bool:
        """A service send is queued: pick its sender and its place; False: 30001 (full)."""
        service_sid = record.messaging_service_sid
        now = self.clock.now()
        if not record.from_ and service_sid is not None:
            with self._lock:
                service = self.service(service_sid)
                sticky = self.state.resource("sticky", f"{service_sid}:{record.to}")
                chosen = pick(
                    service,
                    self.senders(service_sid),
                    record.to,
                    sticky["from"] if sticky else None,
                )
                if chosen is not None:
                    record.from_ = chosen.address
                    if service.sticky_sender and (
                        sticky is None or sticky["from"] != chosen.address
                    ):
                        mapping = {"to": record.to, "from": chosen.address}
                        self.state.put_resource(
                            "sticky", f"{service_sid}:{record.to}", mapping, parent=service_sid
                        )
        if not record.from_:  # nobody in the pool can reach the recipient
            record.outcome, record.outcome_error = "failed", NO_SENDER
            return True
        if record.outcome_error is None and self._outside_window(
            record.from_, record.to, record.content_sid, now
        ):
            record.outcome, record.outcome_error = "failed", 63016
        deadline = None
        if record.validity_period is not None:
            deadline = record.date_created + record.validity_period
        slot = self.queues.join(
            record.from_,
            record.to,
            now=now,
            ready=ready,
            units=self._units(record.from_, record.body, record.num_media > 0),
            media=record.num_media > 0,
            deadline=deadline,
        )
        if slot is None:
            return False
        record.departs_at, record.expired = slot.departs_at, slot.expired
        return True

    def _outside_window(self, business: str, to: str, content_sid: str | None, at: float) -> bool:
        """A WhatsApp message WhatsApp refuses now (63016): free-form, or a template that may
        not open a conversation, with no user message in the last 24 hours."""
        if channel_of(to) != "whatsapp" or self.window_open(business, to, at):
            return False
        if content_sid is None:
            return True
        data = self.state.resource("content", content_sid)  # None: deleted since the send
        return data is not None and not opens_conversation(Content(**data))

    def _join(
        self, sender: str, request: CreateRequest, now: float, ready: float, deadline: float | None
    ) -> Slot | None:
        media = bool(request.media_urls)
        units = self._units(sender, request.body, media)
        return self.queues.join(
            sender, request.to, now=now, ready=ready, units=units, media=media, deadline=deadline
        )

    @staticmethod
    def _units(sender: str, body: str, media: bool) -> int:
        """What a message costs its sender's rate: segments, or 1 for MMS and WhatsApp."""
        return 1 if media or channel_of(sender) == "whatsapp" else segment_count(body)


def _missing(path: str) -> ApiError:
    return ApiError(20404, f"The requested resource {path} was not found", 404)
