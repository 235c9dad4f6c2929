"""The :class:`Account`: one Twilio account's messages, their life cycle, and its handsets.

This is the model, in moto's sense: the HTTP surface (``http/``) and the Python API both go
through it, and it knows nothing of HTTP. It owns the state, the clock and its scheduler,
the failure rules and chaos settings, and two logs: the REST requests answered and the
webhooks delivered. :class:`~webhook_kit.emulator.server.Emulator` serves it over HTTP.
"""

from __future__ import annotations

import os
import random
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin

from ..encoding import segment_count, smart_encode
from ..errors import TwiMLError
from ..twiml import Message, MessagingResponse, parse
from .clock import Clock, ManualClock, Scheduler, Task
from .content import parse_content
from .delivery import (
    LOG_LIMIT,
    Connections,
    Delivery,
    DeliveryLog,
    Transport,
    post,
    split_userinfo,
    withhold,
    wsgi_transport,
)
from .errors import ApiError, EmulatorError
from .journal import Journal
from .lifecycle import Chaos, Rule, Timing, callback_params, next_status, price_of
from .media import Attachment, Fetched, fetch, guess_type, outbound_error, reachable_offline
from .model import (
    API_KEY_SID_RE,
    API_VERSION,
    SERVICE_SID_RE,
    EmulatedMessage,
    MediaRecord,
    channel_of,
    country_of,
    new_sid,
)
from .numbers import check_area_code, check_number, friendly, number_type, parse_settings
from .outbound import Outbound
from .resource import E164_RE, CreateRequest, is_address, is_url
from .state import Number, State
from .streams import EventStreams
from .throughput import Throughput
from .webhooks_config import WebhooksConfig

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

#: Redirects followed for one inbound message before giving up (Twilio error 11215).
MAX_REDIRECTS = 10
#: Twilio's default handling of single-word replies on long codes: opt out, and back in.
OPT_OUT_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One REST request the emulator answered (for "no API call was made" checks)."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    form: tuple[tuple[str, str], ...]
    status: int
    at: float


@dataclass(frozen=True, slots=True)
class Exchange:
    """What one handset message caused: the inbound record and the replies it got."""

    inbound: EmulatedMessage
    replies: tuple[EmulatedMessage, ...]
    deliveries: tuple[Delivery, ...]


class Handset:
    """A phone (or WhatsApp user) that texts the account's numbers and reads its replies."""

    def __init__(self, emulator: Account, address: str) -> None:
        if not is_address(address):
            raise EmulatorError(f"{address!r} is not an E.164 number or channel address")
        self.emulator = emulator
        self.address = address

    def send(self, to: str, body: str = "", media: Sequence[str] = ()) -> Exchange:
        """Text one of the account's numbers; returns once the app answered."""
        return self.emulator.receive(self.address, to, body, media)

    def conversation(self) -> list[EmulatedMessage]:
        """Everything this handset sent and was sent, oldest first."""
        return self.emulator.state.conversation(self.address)

    def received(self) -> list[EmulatedMessage]:
        """The messages sent to this handset, oldest first."""
        return [m for m in self.conversation() if m.to == self.address]


class Account:
    """An offline Twilio Messaging account: life cycle, signed webhooks, handsets; no HTTP.

    ``clock="manual"`` freezes time until :meth:`advance`; otherwise time is real, sped up by
    ``speed``. Without ``account_sid``/``auth_token`` one is made up. :meth:`start` runs the
    clock and the webhook pool; :class:`~webhook_kit.emulator.server.Emulator` adds HTTP.
    """

    def __init__(
        self,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        api_keys: dict[str, str] | None = None,
        state: str = "memory://",
        clock: Literal["real", "manual"] | Clock = "real",
        speed: float = 1.0,
        timing: Timing | None = None,
        chaos: Chaos | None = None,
        seed: int = 0,
        rate_limit: float | None = None,
        throughput: Throughput | None = None,
    ) -> None:
        self.account_sid = account_sid or new_sid("AC")
        self.auth_token = auth_token or os.urandom(16).hex()
        self.api_keys = dict(api_keys or {})
        for key, secret in self.api_keys.items():
            if not API_KEY_SID_RE.match(key) or not secret:
                raise EmulatorError(f"API key {key!r}: give an SK... SID and a non-empty secret")
        self.state = State(state)
        if isinstance(clock, Clock):
            self.clock = clock
        else:
            self.clock = ManualClock() if clock == "manual" else Clock(speed)
        self.scheduler = Scheduler(self.clock)
        #: Messaging Services, Content templates, WhatsApp windows and sender queues.
        self.outbound = Outbound(self.state, self.clock, throughput)
        #: When the account was opened (the Account resource's dates).
        self.created = self.clock.now()
        self.timing = timing or Timing()
        self.chaos = chaos
        self.rate_limit = rate_limit
        self.rules: list[Rule] = []
        #: The change counter the inspector page waits on.
        self.journal = Journal()
        self.deliveries_log = DeliveryLog(self.journal.touch)
        #: The ledger page of the app beside the emulator, linked from the inspector.
        self.ledger_url: str | None = None
        self.dropped_callbacks = 0
        self._seed = seed
        self._rng = random.Random(seed)
        self._chaos_rng = random.Random(chaos.seed if chaos else seed)
        self._lock = threading.RLock()
        self._requests: deque[RequestRecord] = deque(maxlen=LOG_LIMIT)
        self._pool: ThreadPoolExecutor | None = None
        self._connections: Connections | None = None
        self._mounts: dict[str, Transport] = {}
        #: Where clients reach the REST API (``MediaUrl{N}`` point there); a server sets it.
        self.api_base = "https://api.twilio.com"
        #: Shared keys, Settings and Rules: how each webhook URL is signed.
        self.webhooks = WebhooksConfig(self.clock.now, random.Random(seed))
        #: Event Streams sinks and subscriptions, and the events on their way.
        self.streams = EventStreams(
            self.account_sid,
            self.scheduler,
            lambda url: self.webhooks.signing(url, self.auth_token),
            self._transport,
            self._background,
            self.deliveries_log,
            chaos,
            seed,
        )
        self._resume()

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> Account:
        """Start the clock, and on a real clock the pool that posts webhooks."""
        self.journal.reopen()
        if not self.clock.manual and self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="emulator-hook")
            self._connections = Connections()
        self.scheduler.start()
        return self

    def stop(self) -> None:
        """Stop the clock; pending tasks are kept for :meth:`advance` or a restart."""
        self.scheduler.stop()
        self.journal.close()  # ends the inspector's live streams, so the server can stop
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._connections is not None:
            self._connections.close()
            self._connections = None

    # -- configuration --------------------------------------------------------------------

    def add_number(
        self,
        number: str,
        *,
        sms_url: str | None = None,
        fallback_url: str | None = None,
        status_callback: str | None = None,
        messaging_service_sid: str | None = None,
        sms_method: str = "POST",
        friendly_name: str | None = None,
    ) -> Number:
        """Give the account a number (or channel address) with its webhook URLs.

        An E.164 number becomes an IncomingPhoneNumber (``PN...``), listed by the REST API;
        adding it again replaces its settings and keeps its SID. With
        ``messaging_service_sid`` the number is in that service's sender pool (the service
        is made if it does not exist): inbound webhooks carry the SID, and sends through the
        service go out from it.
        """
        if not is_address(number):
            raise EmulatorError(f"{number!r} is not an E.164 number or channel address")
        if messaging_service_sid is not None and not SERVICE_SID_RE.match(messaging_service_sid):
            raise EmulatorError(f"{messaging_service_sid!r} is not a Messaging Service SID (MG...)")
        form = {"SmsUrl": sms_url or "", "SmsFallbackUrl": fallback_url or ""}
        form |= {"StatusCallback": status_callback or "", "SmsMethod": sms_method}
        if friendly_name is not None:
            form["FriendlyName"] = friendly_name
        with self._lock:
            current = self.state.number(number) or self._new_number(number)
            try:
                entry = parse_settings(form, current)
            except ApiError as error:
                raise EmulatorError(error.message) from None
            self.state.put_number(entry)
            if messaging_service_sid is not None:
                self._join_pool(messaging_service_sid, entry)
        self.journal.touch()
        return entry

    def _join_pool(self, service_sid: str, entry: Number) -> None:
        """Put a number in a service's pool, making the service if it does not exist yet."""
        outbound = self.outbound
        if self.state.resource("service", service_sid) is None:
            outbound.create_service({"FriendlyName": service_sid}, service_sid)
        if not any(s.address == entry.number for s in outbound.senders(service_sid)):
            sid = entry.sid or new_sid("PN")
            try:
                outbound.add_sender(service_sid, "phone_number", sid, entry.number)
            except ApiError as error:
                raise EmulatorError(error.message) from None

    def add_service(self, friendly_name: str = "Emulated service", **settings: str) -> str:
        """A Messaging Service, as ``POST /v1/Services`` makes it; returns its SID.

        ``settings`` are the REST parameters (``StatusCallback="..."``); ``sid="MG..."``
        chooses the SID (a test's fixed one).
        """
        sid = settings.pop("sid", None)
        if sid is not None and not SERVICE_SID_RE.match(sid):
            raise EmulatorError(f"{sid!r} is not a Messaging Service SID (MG...)")
        form = {"FriendlyName": friendly_name, **settings}
        try:
            return self.outbound.create_service(form, sid).sid
        except ApiError as error:
            raise EmulatorError(error.message) from None

    def add_template(
        self,
        types: dict[str, dict[str, Any]],
        variables: dict[str, str] | None = None,
        *,
        language: str = "en",
        friendly_name: str = "",
    ) -> str:
        """A Content template, as ``POST /v1/Content`` makes it; returns its ``HX...`` SID.

        ``emulator.add_template({"twilio/text": {"body": "Hi {{1}}"}}, {"1": "there"})``
        """
        payload = {"types": types, "variables": variables or {}, "language": language}
        try:
            content = parse_content(
                {**payload, "friendly_name": friendly_name}, new_sid("HX"), self.clock.now()
            )
        except ApiError as error:
            raise EmulatorError(error.message) from None
        return self.outbound.add_content(content).sid

    def add_short_code(self, code: str, country: str = "US") -> str:
        """An account short code (``SC...``) of ``country``, for a service's pool (by SID)."""
        if not code.isascii() or not code.isdigit() or not 3 <= len(code) <= 8:
            raise EmulatorError(f"{code!r} is not a short code (3 to 8 digits)")
        sid = new_sid("SC")
        data = {"sid": sid, "short_code": code, "country": country}
        self.state.put_resource("short_code", sid, data)
        return sid

    def provision(self, form: Mapping[str, str], kind: str | None = None) -> Number:
        """``POST IncomingPhoneNumbers.json``: a new number (``PhoneNumber`` or ``AreaCode``).

        ``kind`` (``local``, ``mobile``, ``tollfree``) is the subresource posted to
        (``IncomingPhoneNumbers/Local.json``...): it takes no AreaCode (21457), and only
        numbers of its type (21458).
        """
        raw, area = form.get("PhoneNumber"), form.get("AreaCode")
        if kind in {"local", "tollfree"} and area:
            raise ApiError(21457, "AreaCode Parameter not Supported on this subresource", 400)
        with self._lock:
            if raw:
                number = check_number(raw)
                if kind is not None and kind != "mobile" and number_type(number) != kind:
                    raise ApiError(
                        21458,
                        f"PhoneNumber {number} is not a {kind} number: provision it from "
                        "IncomingPhoneNumbers.json or the matching subresource",
                        400,
                    )
                if self.state.number(number) is not None:
                    raise ApiError(21422, f"PhoneNumber {number} is not available", 400)
            elif area:
                number = self._free_number(check_area_code(area))
            else:
                raise ApiError(21421, "PhoneNumber or AreaCode is required to provision", 400)
            entry = parse_settings(form, self._new_number(number))
            self.state.put_number(entry)
        return entry

    def update_number(self, sid: str, form: Mapping[str, str]) -> Number:
        """``POST IncomingPhoneNumbers/{Sid}.json``: only the parameters given change."""
        with self._lock:
            entry = parse_settings(form, self.number_by_sid(sid))
            entry = replace(entry, date_updated=self.clock.now())
            self.state.put_number(entry)
        return entry

    def release_number(self, sid: str) -> None:
        """``DELETE IncomingPhoneNumbers/{Sid}.json``: the number no longer receives messages."""
        with self._lock:
            self.state.delete_number(self.number_by_sid(sid).number)

    def number_by_sid(self, sid: str) -> Number:
        for entry in self.state.numbers():
            if entry.sid == sid:
                return entry
        raise ApiError(
            20404,
            f"The requested resource /2010-04-01/Accounts/{self.account_sid}/"
            f"IncomingPhoneNumbers/{sid}.json was not found",
            404,
        )

    def phone_numbers(self) -> list[Number]:
        """The account's IncomingPhoneNumbers (E.164 numbers, not channel addresses)."""
        return [n for n in self.state.numbers() if E164_RE.match(n.number)]

    def _new_number(self, number: str) -> Number:
        now = self.clock.now()
        return Number(
            number,
            sid=new_sid("PN"),
            friendly_name=friendly(number),
            date_created=now,
            date_updated=now,
        )

    def _free_number(self, area: str) -> str:
        """A number in ``area`` the account does not have yet (from the 555-01XX range)."""
        taken = {n.number for n in self.state.numbers()}
        for line in range(100, 200):
            candidate = f"+1{area}55501{line % 100:02d}"
            if candidate not in taken:
                return candidate
        raise ApiError(21452, f"No phone numbers found in area code {area}", 400)

    def add_rule(
        self,
        status: str,
        error_code: int | None = None,
        *,
        to: str | None = None,
        body: str | None = None,
        probability: float = 1.0,
    ) -> Rule:
        """Make matching new messages end ``failed``/``undelivered``/...; first match wins."""
        rule = Rule(status, error_code, to, body, probability)
        with self._lock:
            self.rules.append(rule)
        self.journal.touch()
        return rule

    def set_chaos(self, chaos: Chaos | None) -> None:
        """Turn chaos on (with these settings, its generator seeded afresh) or off (None)."""
        with self._lock:
            self.chaos = chaos
            self._chaos_rng.seed(chaos.seed if chaos else self._seed)
        self.journal.touch()

    def mount(self, base_url: str, app: WSGIApplication) -> None:
        """Deliver webhooks for URLs under ``base_url`` to ``app`` in this process, not over HTTP.

        ``emulator.mount("http://bot.test", flask_app)``, then give the number
        ``sms_url="http://bot.test/twilio/messages"``: a test needs no server for its app.
        """
        if not is_url(base_url):
            raise EmulatorError(f"{base_url!r} is not an http(s) base URL, e.g. http://bot.test")
        self._mounts[base_url.rstrip("/")] = wsgi_transport(app)

    def _transport(self, url: str) -> Transport | None:
        url = split_userinfo(url)[0]  # credentials in a URL do not change where it goes
        for base, transport in self._mounts.items():
            if url == base or url.startswith((base + "/", base + "?", base + "#")):
                return transport
        return None

    def handset(self, address: str) -> Handset:
        """A handset at ``address`` (``+1...`` or ``whatsapp:+1...``) to text the account with."""
        return Handset(self, address)

    def reset(self) -> None:
        """Forget messages, numbers, rules, logs and pending work (between tests)."""
        with self._lock:
            self.scheduler.clear()
            self.state.reset()
            self.outbound.clear()
            self.rules.clear()
            self._requests.clear()
            self.deliveries_log.clear()
            self.dropped_callbacks = 0
            self.webhooks.reset()
            self.streams.reset()
            self._rng.seed(self._seed)
            self._chaos_rng.seed(self.chaos.seed if self.chaos else self._seed)
            self.journal.touch()

    # -- reading --------------------------------------------------------------------------

    def advance(self, seconds: float) -> int:
        """Move the manual clock forward; every transition and callback due runs before return."""
        ran = self.scheduler.advance(seconds)
        self.journal.touch()
        return ran

    def history(self, sid: str) -> list[tuple[str, float]]:
        """Every status a message took, oldest first, with its emulated time."""
        record = self.state.get(sid)
        return [(str(status), float(at)) for status, at in record.history] if record else []

    def message(self, sid: str) -> EmulatedMessage | None:
        """The record of one message (its true status, even if a callback was dropped)."""
        return self.state.get(sid)

    def messages(self, *, to: str | None = None, from_: str | None = None) -> list[EmulatedMessage]:
        """The account's messages, oldest first, optionally filtered by address."""
        return [
            m
            for m in self.state.messages()
            if (to is None or m.to == to) and (from_ is None or m.from_ == from_)
        ]

    @property
    def requests(self) -> list[RequestRecord]:
        """The REST requests answered (the latest 100,000), oldest first."""
        return list(self._requests)

    @property
    def deliveries(self) -> list[Delivery]:
        """Every webhook delivered (status callbacks, inbound, fallback, redirects)."""
        return self.deliveries_log.all()

    def idle(self) -> bool:
        """True when no transition or callback is waiting to happen."""
        return self.scheduler.pending() == 0

    def log_request(self, record: RequestRecord) -> None:
        self._requests.append(record)  # deque.append is atomic: no lock to contend for

    # -- outbound -------------------------------------------------------------------------

    def create(self, request: CreateRequest, *, direction: str = "outbound-api") -> EmulatedMessage:
        """Store a new outbound message and start its life cycle.

        Raises :class:`ApiError` 21610 when the recipient texted STOP to the sender.
        """
        if request.from_ and self.state.opted_out(request.from_, request.to):
            raise ApiError(21610, "Attempt to send to unsubscribed recipient")
        now = self.clock.now()
        prepared = self.outbound.prepare(request, now, now + self.timing.queue)
        request = prepared.request
        body = smart_encode(request.body).text if request.smart_encoded else request.body
        sid = new_sid("MM" if request.media_urls else "SM")
        if request.send_at is not None:
            first = "scheduled"
        elif request.messaging_service_sid is not None:
            first = "accepted"
        else:
            first = "queued"
        outcome, error = self._outcome(request.to, body)
        fetched = [fetch(url) if reachable_offline(url) else None for url in request.media_urls]
        media_error = outbound_error([f for f in fetched if f is not None])
        if media_error is not None:
            outcome, error = "failed", media_error
        elif prepared.failure is not None:
            outcome, error = prepared.failure
        slot = prepared.slot
        record = EmulatedMessage(
            sid=sid,
            account_sid=self.account_sid,
            direction=direction,
            from_=request.from_ or "",
            to=request.to,
            body=body,
            status=first,
            date_created=now,
            date_updated=now,
            history=[[first, now]],
            num_segments=0 if first != "queued" else segment_count(body),
            num_media=len(request.media_urls),
            messaging_service_sid=request.messaging_service_sid,
            status_callback=request.status_callback,
            outcome=outcome,
            outcome_error=error,
            validity_period=request.validity_period,
            max_price=request.max_price,
            send_at=request.send_at,
            feedback="unconfirmed" if request.provide_feedback else None,
            departs_at=slot.departs_at if slot else None,
            expired=slot.expired if slot else False,
            content_sid=request.content_sid,
        )
        self._save(record)
        for url, got in zip(request.media_urls, fetched, strict=True):
            media = MediaRecord(new_sid("ME"), sid, url, guess_type(url), now)
            if got is not None and got.error is None and got.content_type:
                media.content_type = got.content_type
                self.state.put_media_content(media.sid, got.content_type, got.content)
            self.state.add_media(media)
        self._plan(record)
        return record

    def give_feedback(self, sid: str, outcome: str) -> EmulatedMessage:
        """``POST Messages/{Sid}/Feedback.json``: the recipient did (or did not) act on it."""
        if outcome not in {"confirmed", "unconfirmed"}:
            raise ApiError(
                20001, f"Invalid parameter Outcome: {outcome!r} is not confirmed or unconfirmed"
            )
        with self._lock:
            record = self._get(sid)
            record.feedback, record.feedback_at = outcome, self.clock.now()
            self._save(record)
        return record

    # -- media bytes ----------------------------------------------------------------------

    def media_url(self, message_sid: str, media_sid: str) -> str:
        """Where Twilio says a media item is (``MediaUrl{N}``): the API, which redirects."""
        return (
            f"{self.api_base}/{API_VERSION}/Accounts/{self.account_sid}/Messages/"
            f"{message_sid}/Media/{media_sid}"
        )

    def media_content(self, media: MediaRecord) -> Fetched:
        """The bytes of a media item: as given, else fetched from its URL (then kept)."""
        stored = self.state.media_content(media.sid)
        if stored is not None:
            return Fetched(stored[0], stored[1])
        got = fetch(media.url) if is_url(media.url) else Fetched(error=11200)
        if got.error is None:
            self.state.put_media_content(
                media.sid, got.content_type or media.content_type, got.content
            )
        return got

    def _outcome(self, to: str, body: str) -> tuple[str, int | None]:
        if not self.rules:  # no lock to take for the common case
            return "delivered", None
        with self._lock:
            for rule in self.rules:
                if rule.matches(to, body, self._rng):
                    return rule.status, rule.error_code
        return "delivered", None

    def _plan(self, record: EmulatedMessage) -> None:
        sid, status = record.sid, record.status
        if status == "scheduled" and record.send_at is not None:
            self.scheduler.at(record.send_at, lambda: self._step(sid, status))
            return
        if status == "queued" and record.departs_at is not None:  # its turn in the queue
            self.scheduler.at(record.departs_at, lambda: self._step(sid, status))
            return
        step = next_status(record, self.timing)
        if step is not None:
            self.scheduler.after(step[1], lambda: self._step(sid, status))

    def _step(self, sid: str, expected: str) -> None:
        """Move a message one status on, if nobody (cancel, delete) moved it meanwhile."""
        with self._lock:
            record = self.state.get(sid)
            if record is None or record.status != expected:
                return
            step = next_status(record, self.timing)
            if step is None:
                return
            status = step[0]
            now = self.clock.now()
            if status == "queued":
                record.num_segments = segment_count(record.body)
                if not self.outbound.assign(record, now + self.timing.queue):
                    status, record.outcome_error = "failed", 30001
            elif status == "sending":
                record.date_sent = now
                if record.expired:
                    status, record.outcome_error = "failed", 30036
            elif status == "sent":
                record.price = price_of(record)
                if record.max_price is not None and abs(float(record.price)) > record.max_price:
                    status, record.outcome_error = "failed", 30010
            record.set_status(status, now)
            if status in {"failed", "undelivered", "partially_delivered"}:
                record.error_code = record.outcome_error
            self._save(record, handed_over=True)  # only read from here on
        self._callback(record)
        self._plan(record)

    def cancel(self, sid: str) -> EmulatedMessage:
        """``Status=canceled`` on a scheduled message."""
        with self._lock:
            record = self._get(sid)
            if record.status != "scheduled":
                raise ApiError(30409, "This message cannot be canceled", 400)
            record.set_status("canceled", self.clock.now())
            self._save(record)
        self._callback(record)
        return record

    def redact(self, sid: str) -> EmulatedMessage:
        """``Body=""``: empty the body of a message that has finished."""
        with self._lock:
            record = self._get(sid)
            if not record.is_final:
                raise ApiError(
                    20009, "Cannot redact this message before it is complete: try again later"
                )
            record.body = ""
            record.date_updated = self.clock.now()
            self._save(record)
        return record

    def delete(self, sid: str) -> None:
        with self._lock:
            record = self._get(sid)
            if not record.is_final:
                raise ApiError(20009, "Cannot delete this resource before it is complete", 409)
            self.state.delete(sid)
        self.journal.touch()

    def _save(self, record: EmulatedMessage, *, handed_over: bool = False) -> None:
        """Store a new or changed record (``handed_over``: see :meth:`State.save`); whoever
        watches the journal sees the change."""
        self.state.save(record, handed_over=handed_over)
        self.journal.touch()

    def _get(self, sid: str) -> EmulatedMessage:
        record = self.state.get(sid)
        if record is None or record.account_sid != self.account_sid:
            raise ApiError(
                20404,
                f"The requested resource /2010-04-01/Accounts/{self.account_sid}/Messages/"
                f"{sid}.json was not found",
                404,
            )
        return record

    # -- callbacks ------------------------------------------------------------------------

    def _callback(self, record: EmulatedMessage) -> None:
        """Schedule the status callback of the record's current status (chaos permitting),
        and publish its Event Streams event (which chaos never drops)."""
        self.streams.message_changed(record)
        url = record.status_callback
        if url is None:
            return
        params = callback_params(record)
        plans: list[tuple[float, tuple[str, ...]]] = [(0.0, ())]
        chaos = self.chaos
        if chaos is not None:
            with self._lock:
                rng = self._chaos_rng
                if record.is_final and rng.random() < chaos.drop_final:
                    self.dropped_callbacks += 1
                    now = self.clock.now()
                    withhold(url, params, kind="status", now=now, log=self.deliveries_log)
                    return
                plans = [self._chaos_delay(chaos, rng)]
                if rng.random() < chaos.duplicate:
                    delay, marks = self._chaos_delay(chaos, rng)
                    plans.append((delay, (*marks, "duplicate")))
        for delay, marks in plans:
            if delay == 0 and self._pool is not None:  # now, on a real clock: no task needed
                self._deliver(url, params, "status", marks)
            else:
                self.scheduler.after(delay, partial(self._deliver, url, params, "status", marks))

    @staticmethod
    def _chaos_delay(chaos: Chaos, rng: random.Random) -> tuple[float, tuple[str, ...]]:
        """A callback's delay, and its marks: ``delayed`` (jitter), ``late``."""
        marks: list[str] = []
        delay = 0.0
        if rng.random() < chaos.reorder:
            delay = rng.uniform(0, chaos.jitter)
            marks.append("delayed")
        if rng.random() < chaos.late:
            delay += chaos.late_by
            marks.append("late")
        return delay, tuple(marks)

    def _deliver(
        self, url: str, params: list[tuple[str, str]], kind: str, chaos: tuple[str, ...] = ()
    ) -> None:
        """Post a webhook: inline on a manual clock, on the delivery pool on a real one."""
        connections = self._connections

        def send() -> None:
            now = self.clock.now()
            post(
                url,
                params,
                self.auth_token,
                kind=kind,
                now=now,
                log=self.deliveries_log,
                transport=self._transport(url),
                chaos=chaos,
                connections=connections,
                signing=self.webhooks.signing(url, self.auth_token),
            )

        self._background(send)

    def _background(self, task: Task) -> None:
        """Run a delivery inline on a manual clock, on the delivery pool on a real one."""
        pool = self._pool
        if pool is None:
            task()
        else:
            pool.submit(task)

    # -- inbound --------------------------------------------------------------------------

    def receive(
        self, from_: str, to: str, body: str, media: Sequence[str | Attachment] = ()
    ) -> Exchange:
        """A handset texts ``to``: post the signed webhook, then send each TwiML reply.

        Each media item is a URL (fetched, without credentials, when someone reads its
        bytes) or an :class:`Attachment`. ``MediaUrl{N}`` is the item's Media URL on this
        emulator, which answers with a redirect to its media host, as Twilio does.
        """
        number = self.state.number(to)
        if number is None:
            raise EmulatorError(f"{to} is not a number of this account: add_number({to!r}, ...)")
        service = self.outbound.service_of(to)
        if (
            service is not None
            and service.inbound_request_url
            and not service.use_inbound_webhook_on_number
        ):  # the service's webhooks win over the number's (twilio-more.md §3.4)
            number = replace(
                number,
                sms_url=service.inbound_request_url,
                sms_method=service.inbound_method,
                fallback_url=service.fallback_url,
                sms_fallback_method=service.fallback_method,
            )
        if not number.sms_url:
            raise EmulatorError(f"{to} has no incoming-message URL: add_number(sms_url=...)")
        for item in media:
            if isinstance(item, str) and not is_url(item):
                raise EmulatorError(f"{item!r} is not an http(s) media URL")
        now = self.clock.now()
        sid = new_sid("MM" if media else "SM")
        segments = segment_count(body)
        # A long message arrives in segments: ``receiving`` until the last is in.
        first = "receiving" if segments > 1 else "received"
        record = EmulatedMessage(
            sid=sid,
            account_sid=self.account_sid,
            direction="inbound",
            from_=from_,
            to=to,
            body=body,
            status=first,
            date_created=now,
            date_updated=now,
            date_sent=now,
            num_segments=segments,
            num_media=len(media),
            history=[[first, now]],
        )
        self._save(record)
        if first == "receiving":
            record.set_status("received", self.clock.now())
            self._save(record)
        items: list[tuple[str, str]] = []
        for item in media:
            media_sid = new_sid("ME")
            if isinstance(item, Attachment):
                self.state.put_media_content(media_sid, item.content_type, item.content)
                url, kind = self.media_url(sid, media_sid), item.content_type
            else:
                url, kind = item, guess_type(item)
            self.state.add_media(MediaRecord(media_sid, sid, url, kind, now))
            items.append((self.media_url(sid, media_sid), kind))
        self.streams.message_changed(record)
        word = body.strip().upper()
        if word in OPT_OUT_WORDS or word in OPT_IN_WORDS:  # still passed on to the app
            self.state.set_opt_out(to, from_, word in OPT_OUT_WORDS)
            if service is not None:  # opting out of one sender opts out of the service
                self.state.set_opt_out(service.sid, from_, word in OPT_OUT_WORDS)
        if channel_of(from_) == "whatsapp":
            self.outbound.user_wrote(to, from_, now)
        params = inbound_params(record, items, service.sid if service is not None else None)
        deliveries: list[Delivery] = []
        answer = self._fetch_twiml(number, params, deliveries)
        replies: list[EmulatedMessage] = []
        if answer is not None:
            replies = self._reply(number, record, answer, params, deliveries)
        return Exchange(record, tuple(replies), tuple(deliveries))

    def _post_now(
        self,
        url: str,
        params: list[tuple[str, str]],
        kind: str,
        into: list[Delivery],
        method: str = "POST",
    ) -> Delivery:
        delivery = post(
            url,
            params,
            self.auth_token,
            kind=kind,
            now=self.clock.now(),
            log=self.deliveries_log,
            transport=self._transport(url),
            signing=self.webhooks.signing(url, self.auth_token),
            method=method,
        )
        into.append(delivery)
        return delivery

    def _fetch_twiml(
        self, number: Number, params: list[tuple[str, str]], into: list[Delivery]
    ) -> tuple[str, MessagingResponse] | None:
        """The primary URL's answer, else the fallback's (with ErrorCode/ErrorUrl)."""
        assert number.sms_url is not None
        delivery = self._post_now(number.sms_url, params, "inbound", into, number.sms_method)
        answer, error = _read_answer(delivery)
        if answer is not None:
            return number.sms_url, answer
        if number.fallback_url is None:
            return None
        fallback = [*params, ("ErrorCode", str(error)), ("ErrorUrl", number.sms_url)]
        delivery = self._post_now(
            number.fallback_url, fallback, "fallback", into, number.sms_fallback_method
        )
        answer, _ = _read_answer(delivery)
        return (number.fallback_url, answer) if answer is not None else None

    def _reply(
        self,
        number: Number,
        inbound: EmulatedMessage,
        answer: tuple[str, MessagingResponse],
        params: list[tuple[str, str]],
        into: list[Delivery],
    ) -> list[EmulatedMessage]:
        replies: list[EmulatedMessage] = []
        url, response = answer
        redirects = 0
        while True:
            redirect = None
            for verb in response.verbs:
                if isinstance(verb, Message):
                    try:
                        replies.append(self._send_reply(number, inbound, verb, url))
                    except ApiError:  # the handset opted out: Twilio sends nothing to it
                        continue
                else:
                    redirect = urljoin(url, verb.url)
            if redirect is None or redirects == MAX_REDIRECTS:
                break
            redirects += 1
            delivery = self._post_now(redirect, params, "redirect", into)
            read, _ = _read_answer(delivery)
            if read is None:
                break
            url, response = redirect, read
        return replies

    def _send_reply(
        self, number: Number, inbound: EmulatedMessage, verb: Message, document_url: str
    ) -> EmulatedMessage:
        """A ``<Message>`` becomes an outbound-reply; relative URLs resolve against the TwiML's."""
        attribute = verb.status_callback or verb.action
        callback = urljoin(document_url, attribute) if attribute else number.status_callback
        request = CreateRequest(
            to=verb.to or inbound.from_,
            from_=verb.from_ or inbound.to,
            messaging_service_sid=None,
            body=str(verb.body),
            media_urls=verb.media_urls,
            status_callback=callback if callback and is_url(callback) else None,
            validity_period=None,
            max_price=None,
            send_at=None,
            smart_encoded=False,
        )
        return self.create(request, direction="outbound-reply")

    # -- persistence ----------------------------------------------------------------------

    def _resume(self) -> None:
        """Continue the life cycle of messages a previous run left unfinished (SQLite state)."""
        for record in self.state.messages(pending=True):
            if record.direction != "inbound":
                if record.status == "queued" and record.departs_at is not None:
                    self.outbound.queues.restore(record.from_, record.departs_at)
                self._plan(record)


def inbound_params(
    record: EmulatedMessage, media: Iterable[tuple[str, str]], service: str | None = None
) -> list[tuple[str, str]]:
    """Every parameter Twilio posts to an incoming-message webhook (twilio-protocol.md §1)."""
    params = [
        ("AccountSid", record.account_sid),
        ("ApiVersion", "2010-04-01"),
        ("Body", record.body),
        ("From", record.from_),
        ("FromCity", ""),
        ("FromCountry", country_of(record.from_)),
        ("FromState", ""),
        ("FromZip", ""),
        ("MessageSid", record.sid),
        ("NumMedia", str(record.num_media)),
        ("NumSegments", str(record.num_segments)),
        ("SmsMessageSid", record.sid),
        ("SmsSid", record.sid),
        ("SmsStatus", "received"),
        ("To", record.to),
        ("ToCity", ""),
        ("ToCountry", country_of(record.to)),
        ("ToState", ""),
        ("ToZip", ""),
    ]
    for index, (url, content_type) in enumerate(media):
        params.append((f"MediaContentType{index}", content_type))
        params.append((f"MediaUrl{index}", url))
    if service is not None:
        params.append(("MessagingServiceSid", service))
    if channel_of(record.from_) == "whatsapp":
        wa_id = record.from_.partition(":")[2].lstrip("+")
        params += [("ProfileName", wa_id), ("WaId", wa_id)]
    return params


def _read_answer(delivery: Delivery) -> tuple[MessagingResponse | None, int]:
    """The TwiML of a webhook answer, or None and Twilio's error code for why not."""
    response = delivery.response
    if response is None:
        return None, 11205
    if not 200 <= response.status < 300:
        return None, 11200
    content_type = response.content_type.split(";")[0].strip().lower()
    if content_type == "text/plain":
        reply = MessagingResponse()
        text = response.body.decode("utf-8", "replace").strip()
        if text:
            reply.message(text[:1600])
        return reply, 0
    if not response.body.strip():
        return MessagingResponse(), 0
    try:
        return parse(response.body), 0
    except TwiMLError:
        return None, 12100
