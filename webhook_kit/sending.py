"""Sending messages and following them: ``kit.send``, reconciliation, media downloads.

A send is written to the ledger *before* the API call, under a correlation id, and the
StatusCallback URL carries that id signed (see :mod:`webhook_kit.correlation`), so a callback
that overtakes the API's answer still finds its send. When the API answers, the pending record
is linked to the SID; when it refuses, the record is marked failed with Twilio's code and a
:class:`~webhook_kit.errors.SendError` is raised.

The official ``twilio`` client does the HTTP (``pip install 'webhook_kit[twilio]'``); it is
imported only when a :class:`Sender` is built, so receiving webhooks never needs it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.client import HTTPResponse
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

from .config import Settings
from .correlation import TOKEN_PARAM, Correlator
from .errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidFromError,
    InvalidToError,
    MediaError,
    MediaHostError,
    MediaTooLargeError,
    MediaTypeError,
    MessageNotFoundError,
    NotMobileError,
    QueueFullError,
    RateLimitedError,
    RegionNotPermittedError,
    SenderNotCapableError,
    SendError,
    SendInDoubtError,
    TwilioUnreachableError,
    UnreachableRecipientError,
    UnsubscribedRecipientError,
)
from .events import InboundMedia, InboundMessage
from .ledger import (
    RECONCILED,
    Direction,
    MessageFacts,
    MessageRecord,
    Query,
    StatusEntry,
)
from .ledger import now as ledger_now
from .once import Claim, Once, Outcome
from .optout import refuse_opted_out
from .status import MessageStatus
from .whatsapp import Template, template_needed, window_open

if TYPE_CHECKING:
    from .stores import Store

log = logging.getLogger("webhook_kit")

T = TypeVar("T")

#: How long an unfinished send holds its idempotency key (longer than any API call takes);
#: a finished one keeps it, with the SID, for the store's retention.
_KEY_LEASE = 120.0
_ERRORS: dict[int, type[SendError]] = {
    cls.twilio_code: cls
    for cls in (
        AuthenticationError,
        MessageNotFoundError,
        RateLimitedError,
        InvalidToError,
        InvalidFromError,
        RegionNotPermittedError,
        SenderNotCapableError,
        UnsubscribedRecipientError,
        QueueFullError,
        UnreachableRecipientError,
        NotMobileError,
    )
    if cls.twilio_code is not None
}
#: Twilio's limit for one message's media is 5 MB; the default cap leaves room for overhead.
DEFAULT_MEDIA_CAP = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SentMessage:
    """The Message resource as Twilio returned it (to a send, fetch, cancel or redact)."""

    sid: str
    status: MessageStatus
    to: str | None
    from_: str | None
    body: str | None
    num_segments: int | None
    num_media: int | None
    price: str | None
    price_unit: str | None
    error_code: int | None
    messaging_service_sid: str | None
    direction: Direction | None
    date_created: datetime | None
    date_sent: datetime | None
    #: The user's reference given to ``send`` (None for fetched messages).
    ref: str | None = None

    @classmethod
    def from_instance(cls, message: Any, ref: str | None = None) -> SentMessage:
        """From twilio-python's ``MessageInstance`` (its counts and price are strings)."""
        return cls(
            sid=message.sid,
            status=MessageStatus(message.status or "queued"),
            to=message.to,
            from_=message.from_,
            body=message.body,
            num_segments=_int(message.num_segments),
            num_media=_int(message.num_media),
            price=message.price,
            price_unit=message.price_unit,
            error_code=message.error_code,
            messaging_service_sid=message.messaging_service_sid,
            direction=Direction(message.direction) if message.direction else None,
            date_created=message.date_created,
            date_sent=message.date_sent,
            ref=ref,
        )

    @classmethod
    def from_ledger(cls, record: MessageRecord | None) -> SentMessage:
        """A message sent earlier, as the ledger knows it (an idempotent send's answer)."""
        if record is None:
            raise MessageNotFoundError(
                "the message sent earlier with this key is no longer in the ledger (past "
                "WEBHOOK_KIT_LEDGER_RETENTION)"
            )
        return cls(
            sid=record.message_sid,
            status=record.status or MessageStatus.QUEUED,
            to=record.to,
            from_=record.from_,
            body=record.body,
            num_segments=record.num_segments,
            num_media=record.num_media,
            price=record.price,
            price_unit=record.price_unit,
            error_code=record.error_code,
            messaging_service_sid=None,
            direction=record.direction,
            date_created=record.created_at,
            date_sent=record.sent_at,
            ref=record.ref,
        )

    def facts(self, at: float) -> MessageFacts:
        """What the API told about the message, for the ledger."""
        return MessageFacts(
            self.sid,
            at,
            direction=self.direction.value if self.direction else None,
            from_=self.from_,
            to=self.to,
            num_segments=self.num_segments,
            num_media=self.num_media,
            status=self.status.value,
            error_code=self.error_code,
            price=self.price,
            price_unit=self.price_unit,
        )


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """What one reconciliation pass did."""

    #: Messages fetched from Twilio.
    checked: int
    #: Of those, the ones whose status in the ledger moved.
    updated: int
    #: SIDs Twilio did not know (20404): deleted there, or from another account.
    missing: tuple[str, ...]


class Sender:
    """Sends through the official twilio client and keeps the ledger of what it sent.

    Build it with :meth:`from_config` (what ``kit.send`` does), or directly with a twilio
    ``Client`` for scripts and workers outside a request.

    :param store: the ledger's store (the app's, so callbacks and sends meet).
    :param client: a ``twilio.rest.Client``.
    :param status_url: the public URL of this kit's ``/status`` route; sends get it, with a
        correlation token, as their StatusCallback unless they pass their own.
    :param secret_key: signs the correlation tokens (the app's ``WEBHOOK_KIT_SECRET_KEY``).
    :param media_credentials: (username, password) for media downloads (default: the client's).
    :param media_origins: extra origins (``scheme://host[:port]``) trusted with them.
    :param retry_delay: first wait after a 429, doubled on each retry.
    :param metrics: count each API call in Prometheus metrics (``WEBHOOK_KIT_METRICS``).
    """

    def __init__(
        self,
        store: Store,
        client: Any,
        *,
        status_url: str | None = None,
        secret_key: str | None = None,
        media_credentials: tuple[str, str] | None = None,
        media_origins: Collection[str] = (),
        retry_delay: float = 0.5,
        max_retries: int = 6,
        metrics: bool = False,
    ) -> None:
        self.store = store
        self.client = client
        self.status_url = status_url
        self.correlator = Correlator(secret_key)
        #: Claims the idempotency keys of sends (``key=``): at most one send per key.
        self._once = Once(store, _KEY_LEASE)
        self._media_credentials = media_credentials or (client.username, client.password)
        self._media_origins = frozenset(origin.rstrip("/").lower() for origin in media_origins)
        self.retry_delay = retry_delay
        self.max_retries = max_retries
        #: Counts an API call's outcome (metrics on); None, and nothing imported, when off.
        self._count: Callable[[SendError | None], None] | None = None
        if metrics:
            from .metrics import count_send

            self._count = count_send

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        store: Store,
        *,
        status_url: str | None = None,
        client: Any = None,
        environ: Mapping[str, str] = os.environ,
    ) -> Sender:
        """A sender configured by ``WEBHOOK_KIT_*`` keys, as an app has them (docs: Sending).

        Credentials: ``WEBHOOK_KIT_ACCOUNT_SID`` (default ``$TWILIO_ACCOUNT_SID``) with the
        API key ``WEBHOOK_KIT_API_KEY``/``WEBHOOK_KIT_API_SECRET`` (default ``$TWILIO_API_KEY``/
        ``$TWILIO_API_SECRET``) if set, else the auth token. ``WEBHOOK_KIT_TWILIO_BASE_URL``
        sends to another API host (the emulator); region and edge are then not applied.
        """
        settings = Settings.from_config(dict(config), environ)

        def value(key: str, env: str | None = None) -> str | None:
            found = config.get(f"WEBHOOK_KIT_{key}") or (environ.get(env) if env else None)
            return str(found) if found else None

        if client is None:
            client = _client(
                account_sid=settings.account_sid,
                auth_token=settings.auth_tokens[0] if settings.auth_tokens else None,
                api_key=value("API_KEY", "TWILIO_API_KEY"),
                api_secret=value("API_SECRET", "TWILIO_API_SECRET"),
                region=value("REGION", "TWILIO_REGION"),
                edge=value("EDGE", "TWILIO_EDGE"),
                base_url=value("TWILIO_BASE_URL"),
                environ=environ,
            )
        base_url = value("TWILIO_BASE_URL")
        return cls(
            store,
            client,
            status_url=status_url,
            secret_key=settings.secret_key,
            media_origins=(_origin(base_url),) if base_url else (),
            metrics=settings.metrics,
        )

    # -- sending -------------------------------------------------------------------------

    def send(
        self,
        to: str | None = None,
        body: str | None = None,
        *,
        from_: str | None = None,
        messaging_service_sid: str | None = None,
        media_url: str | Sequence[str] | None = None,
        ref: str | None = None,
        in_reply_to: InboundMessage | None = None,
        status_callback: str | None = None,
        send_at: datetime | None = None,
        schedule_type: str | None = None,
        validity_period: int | None = None,
        max_price: float | None = None,
        smart_encoded: bool | None = None,
        shorten_urls: bool | None = None,
        content_sid: str | None = None,
        content_variables: Mapping[str, Any] | str | None = None,
        send_as_mms: bool | None = None,
        provide_feedback: bool | None = None,
        attempt: int | None = None,
        force_delivery: bool | None = None,
        content_retention: str | None = None,
        address_retention: str | None = None,
        persistent_action: Sequence[str] | None = None,
        traffic_type: str | None = None,
        risk_check: str | None = None,
        fallback_from: str | None = None,
        application_sid: str | None = None,
        message_intent: str | None = None,
        key: str | None = None,
        fallback_template: Template | None = None,
    ) -> SentMessage:
        """Send a message and record it in the ledger; raise a :class:`SendError` if refused.

        Every parameter of Twilio's Message create has its snake_case name here. With
        ``in_reply_to`` (an inbound message), ``to`` and ``from_`` default to its sender and
        the number it was sent to, and the record notes the message it answers. ``ref`` is
        yours: find the message later with ``kit.ledger.find(ref=...)``. ``send_at`` alone
        schedules the message (``schedule_type="fixed"`` is implied).

        ``key`` makes the send idempotent: the ledger is checked before the API is called,
        and a send whose key already sent returns that message without sending again (a
        retried background job uses its own key). An earlier send with the key whose process
        died mid-call is looked up on Twilio (same recipient, sender and body) before sending;
        one still under way elsewhere raises :class:`SendInDoubtError` (retry later).

        ``fallback_template`` (a WhatsApp send): when the recipient has not written to the
        sender in the last 24 hours (as this app's ledger saw it), the template is sent
        instead of ``body``/``media_url``, which WhatsApp would refuse with 63016.
        """
        if in_reply_to is not None:
            to = to or in_reply_to.from_
            if from_ is None and messaging_service_sid is None:
                from_ = in_reply_to.to
        if not to:
            raise TypeError("send() needs a recipient: pass to=..., or in_reply_to=message")
        # outside WhatsApp's customer-service window only the template is delivered
        body, media_url, content_sid, content_variables = template_needed(
            self.store, to, from_, fallback_template
        ) or (body, media_url, content_sid, content_variables)
        try:
            refuse_opted_out(self.store, to, from_, messaging_service_sid)
        except SendError as error:  # refused here as Twilio would: counted as refused
            if self._count is not None:
                self._count(error)
            raise
        media = [media_url] if isinstance(media_url, str) else list(media_url or ())
        now = ledger_now()
        if status_callback is None:
            correlation, token = self.correlator.new(key)
            status_callback = self._callback_url(token)
        else:
            correlation = Correlator.new_id(key)
        claim = None
        if key is not None:
            claim, earlier = self._claim_key(key, correlation, to, from_, body)
            if earlier is not None:
                return earlier
        if send_at is not None and schedule_type is None:
            schedule_type = "fixed"
        if isinstance(content_variables, Mapping):
            content_variables = json.dumps(content_variables)
        options: dict[str, Any] = {
            "from_": from_,
            "messaging_service_sid": messaging_service_sid,
            "body": body,
            "media_url": media or None,
            "status_callback": status_callback,
            "send_at": send_at,
            "schedule_type": schedule_type,
            "validity_period": validity_period,
            "max_price": max_price,
            "smart_encoded": smart_encoded,
            "shorten_urls": shorten_urls,
            "content_sid": content_sid,
            "content_variables": content_variables,
            "send_as_mms": send_as_mms,
            "provide_feedback": provide_feedback,
            "attempt": attempt,
            "force_delivery": force_delivery,
            "content_retention": content_retention,
            "address_retention": address_retention,
            "persistent_action": list(persistent_action) if persistent_action else None,
            "traffic_type": traffic_type,
            "risk_check": risk_check,
            "fallback_from": fallback_from,
            "application_sid": application_sid,
            "message_intent": message_intent,
        }
        self.store.save_message(
            MessageFacts(
                correlation,
                now,
                direction=Direction.OUTBOUND_API.value,
                from_=from_ or messaging_service_sid,
                to=to,
                body=body,
                num_media=len(media),
                created_at=now,
                ref=ref,
                in_reply_to=in_reply_to.message_sid if in_reply_to is not None else None,
            )
        )
        create = self.client.messages.create
        arguments = {name: value for name, value in options.items() if value is not None}
        try:
            message = self._call(lambda: create(to=to, **arguments))
        except SendError as error:
            if error.code is not None:  # Twilio answered: the send does not exist
                failed = MessageFacts(
                    correlation, ledger_now(), status="failed", error_code=error.code
                )
                self.store.save_message(failed)
            if claim is not None:  # nothing was sent: the key may send again
                self._once.release(f"send:{key}", claim)
            if self._count is not None:
                self._count(error)
            raise
        if self._count is not None:
            self._count(None)
        sent = SentMessage.from_instance(message, ref)
        self.store.save_message(sent.facts(ledger_now()), alias=correlation)
        if claim is not None:
            self._once.finish(f"send:{key}", claim, sent.sid.encode())
        return sent

    def _claim_key(
        self, key: str, correlation: str, to: str, from_: str | None, body: str | None
    ) -> tuple[Claim, SentMessage | None]:
        """Claim a send's idempotency key; or the message an earlier send with it created.

        A finished key holds its SID. An unfinished one whose process died (or whose claim
        lapsed) may or may not have reached Twilio: the ledger record it wrote before the
        API call, and Twilio's list of messages to the same person, tell which.
        """
        name = f"send:{key}"
        claim, replaced = self._once.take(name)
        if claim.outcome is Outcome.DONE:
            sid = claim.answer.decode()
            return claim, SentMessage.from_ledger(self.store.get_message(sid))
        if claim.outcome is Outcome.BUSY:
            if replaced:
                raise SendInDoubtError(f"another process took over the send with key {key!r}")
            raise SendInDoubtError(
                f"a send with key {key!r} is under way in another process ({claim.owner}) "
                f"or died on another host: retry after {_KEY_LEASE:g} s"
            )
        intent = self.store.get_message(correlation)
        if intent is None and not replaced:
            return claim, None  # no earlier attempt reached the API
        found = self._find_sent(intent, to, from_, body)
        if found is not None:
            self.store.save_message(found.facts(ledger_now()), alias=correlation)
            self._once.finish(name, claim, found.sid.encode())
        return claim, found

    def _find_sent(
        self, intent: MessageRecord | None, to: str, from_: str | None, body: str | None
    ) -> SentMessage | None:
        """The message an interrupted send created on Twilio, if it did."""
        since = datetime.now(UTC) - timedelta(seconds=_KEY_LEASE + 60)
        if intent is not None:
            body = intent.body if intent.body is not None else body
            if intent.created_at is not None:
                since = intent.created_at - timedelta(seconds=60)
        options: dict[str, Any] = {"to": to, "limit": 100}
        if from_ is not None:
            options["from_"] = from_
        for message in self._call(lambda: self.client.messages.list(**options)):
            created = message.date_created
            if (
                message.body == (body or "")
                and str(message.direction or "").startswith("outbound")
                and (created is None or created >= since)
            ):
                return SentMessage.from_instance(message)
        return None

    def window_open(self, to: str, from_: str | None = None) -> bool:
        """Whether WhatsApp would deliver a free-form message to ``to`` now (24-hour window)."""
        return window_open(self.store, to, from_)

    def fetch(self, sid: str) -> SentMessage:
        """The message as Twilio has it now."""
        return SentMessage.from_instance(self._call(lambda: self.client.messages(sid).fetch()))

    def cancel(self, sid: str) -> SentMessage:
        """Cancel a scheduled message (``Status=canceled``); the ledger shows it canceled."""
        return self._update(sid, status="canceled")

    def redact(self, sid: str) -> SentMessage:
        """Erase a finished message's body on Twilio (``Body=""``) and in the ledger."""
        return self._update(sid, body="")

    def confirm(self, sid: str, *, confirmed: bool = True) -> str:
        """Tell Twilio the recipient acted on a message (Message Feedback); returns the outcome.

        Send with ``provide_feedback=True`` for Twilio to track it (e.g. a one-time code that
        was entered). ``confirmed=False`` reports that they did not.
        """
        outcome = "confirmed" if confirmed else "unconfirmed"
        feedback = self._call(lambda: self.client.messages(sid).feedback.create(outcome=outcome))
        return str(feedback.outcome)

    def delete(self, sid: str) -> None:
        """Delete a finished message (and its media) from Twilio; the ledger keeps its record.

        Twilio refuses a message still under way (20009, a :class:`SendError`): cancel or
        wait for it first. ``webhook-kit conversations purge`` forgets an address locally.
        """
        self._call(lambda: self.client.messages(sid).delete())

    def _update(self, sid: str, **changes: str) -> SentMessage:
        message = self._call(lambda: self.client.messages(sid).update(**changes))
        sent = SentMessage.from_instance(message)
        facts = sent.facts(ledger_now())
        if "body" in changes:
            facts = dataclasses.replace(facts, redact=True)
        self.store.save_message(facts)
        return sent

    def _callback_url(self, token: str) -> str:
        if not self.status_url:
            raise ConfigurationError(
                "cannot build a StatusCallback URL: set WEBHOOK_KIT_PUBLIC_URL to the public "
                "address of this app, or pass status_callback=... to send"
            )
        joiner = "&" if "?" in self.status_url else "?"
        return f"{self.status_url}{joiner}{urlencode({TOKEN_PARAM: token})}"

    def _call(self, request: Callable[[], T]) -> T:
        """Run one API request: Twilio's errors become SendErrors; a 429 is retried."""
        from twilio.base.exceptions import TwilioRestException

        attempt = 0
        while True:
            try:
                return request()
            except TwilioRestException as error:
                failure = send_error(error)
                if not isinstance(failure, RateLimitedError) or attempt == self.max_retries:
                    raise failure from error
            except OSError as error:  # requests' connection errors are OSErrors
                raise TwilioUnreachableError(
                    f"could not reach Twilio ({error}); the message may or may not exist: "
                    "check the ledger later, reconciliation settles it"
                ) from error
            # Exponential backoff with jitter, as Twilio asks of clients that get 429.
            time.sleep(self.retry_delay * 2**attempt * (0.5 + random.random() / 2))
            attempt += 1

    # -- reconciliation ------------------------------------------------------------------

    def reconcile(self, older_than: float = 600.0) -> ReconcileReport:
        """Fetch every ledger message not final after ``older_than`` seconds; apply its status.

        Each status fetched is recorded as if a callback had brought it, with a history key
        starting ``reconciled:``. Sends whose API call never answered (no SID) are skipped.
        429 answers are retried with exponential backoff.
        """
        horizon = ledger_now() - older_than
        checked, updated, missing = 0, 0, []
        after: tuple[float, str] | None = None
        while True:
            page = self.store.find_messages(
                Query(open_only=True, until=horizon, after=after, limit=200)
            )
            for record in page:
                if record.pending or record.direction is Direction.INBOUND:
                    continue
                try:
                    message = self.fetch(record.message_sid)
                except MessageNotFoundError:
                    missing.append(record.message_sid)
                    continue
                checked += 1
                if self._apply_fetched(message, record.status):
                    updated += 1
            if len(page) < 200:
                return ReconcileReport(checked, updated, tuple(missing))
            last = page[-1]
            after = (last.created_at.timestamp() if last.created_at else 0.0, last.message_sid)

    def _apply_fetched(self, message: SentMessage, before: MessageStatus | None) -> bool:
        status = message.status
        now = ledger_now()
        fields = {"MessageSid": message.sid, "MessageStatus": status.value, "Reconciled": "true"}
        if message.error_code:
            fields["ErrorCode"] = str(message.error_code)
        entry = StatusEntry(
            message.sid,
            f"{RECONCILED}{message.sid}:{status.value}",
            status.value,
            status.rank,
            status.is_final,
            message.error_code,
            None,
            now,
            urlencode(fields),
        )
        applied = self.store.record_status(entry)
        self.store.save_message(message.facts(now))
        return applied.status is not None and applied.status != before

    # -- media ---------------------------------------------------------------------------

    def download(
        self,
        media: InboundMedia | str,
        dest: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MEDIA_CAP,
        timeout: float = 30.0,
    ) -> Path:
        """Stream an MMS attachment to ``dest`` (a file, or an existing directory to put it in).

        The account's credentials go only to Twilio's API hosts (``https://api.twilio.com``
        and its regional ``api.*.twilio.com`` hosts) and never follow a redirect to another
        host: Twilio redirects to a pre-signed storage URL, fetched without them. A body
        over ``max_bytes`` or of another content type than the message declared is refused
        and nothing is left at ``dest``.
        """
        url = media.url if isinstance(media, InboundMedia) else media
        declared = media.content_type if isinstance(media, InboundMedia) else None
        if not self._trusted(url):
            raise MediaHostError(
                f"refusing to send Twilio credentials to {_origin(url)}: media is downloaded "
                "only from https://api.twilio.com (or its regional api.*.twilio.com hosts)"
            )
        response = self._open_media(url, timeout)
        with response:
            content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
            if declared and content_type.lower() != declared.lower():
                raise MediaTypeError(
                    f"{url} is {content_type or 'untyped'}, but the message declared {declared}"
                )
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise MediaTooLargeError(f"{url} is {length} bytes, over the {max_bytes} cap")
            target = Path(dest)
            if target.is_dir():
                target = target / (url.rstrip("/").rsplit("/", 1)[-1] or "media")
            _stream(response, target, max_bytes, url)
        return target

    def delete_media(self, media: InboundMedia | str) -> None:
        """Delete an attachment from Twilio (its URL names the message and the media SID)."""
        url = media.url if isinstance(media, InboundMedia) else media
        parts = urlsplit(url).path.removesuffix(".json").split("/")
        try:
            message_sid = parts[parts.index("Messages") + 1]
            media_sid = parts[parts.index("Media") + 1]
        except (ValueError, IndexError):
            raise MediaError(
                f"{url} is not a Twilio media URL (.../Messages/<sid>/Media/<sid>)"
            ) from None
        self._call(lambda: self.client.messages(message_sid).media(media_sid).delete())

    def _trusted(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        official = host == "api.twilio.com" or (
            host.startswith("api.") and host.endswith(".twilio.com")
        )
        return (parts.scheme == "https" and official) or _origin(url) in self._media_origins

    def _open_media(self, url: str, timeout: float) -> HTTPResponse:
        """GET ``url``, following redirects by hand so credentials never change host."""
        opener = urllib.request.build_opener(_NoRedirect)
        for _ in range(5):
            request = urllib.request.Request(url, headers={"User-Agent": "webhook_kit"})
            if self._trusted(url):
                user, password = self._media_credentials
                request.add_unredirected_header("Authorization", _basic(user, password))
            try:
                response: HTTPResponse = opener.open(request, timeout=timeout)
            except urllib.error.HTTPError as error:
                location = error.headers.get("Location")
                if error.code in {301, 302, 303, 307, 308} and location:
                    following = urljoin(url, location)
                    if urlsplit(url).scheme == "https" and urlsplit(following).scheme != "https":
                        raise MediaHostError(f"{url} redirects to insecure {following}") from None
                    url = following
                    continue
                raise MediaError(f"{url} answered {error.code} {error.reason}") from None
            except (urllib.error.URLError, OSError) as error:
                raise MediaError(f"could not download {url}: {error}") from None
            return response
        raise MediaError(f"{url}: too many redirects")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects surface as HTTPError, so each hop is checked before it is followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _stream(response: HTTPResponse, target: Path, max_bytes: int, url: str) -> None:
    """Write to a temporary file beside ``target``, then move it in place: never a partial file."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".download-")
    try:
        with os.fdopen(handle, "wb") as file:
            total = 0
            while chunk := response.read(64 * 1024):
                total += len(chunk)
                if total > max_bytes:
                    raise MediaTooLargeError(f"{url} is over the {max_bytes}-byte cap")
                file.write(chunk)
        shutil.move(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def send_error(error: Any) -> SendError:
    """The :class:`SendError` subclass for a ``TwilioRestException``."""
    code = error.code if isinstance(error.code, int) else None
    status = error.status if isinstance(error.status, int) else None
    kind = _ERRORS.get(code or 0, SendError)
    if status == 429 and kind is SendError:
        kind = RateLimitedError
    message = str(error.msg or "").removeprefix("Unable to create record: ")
    more_info = f"https://www.twilio.com/docs/errors/{code}" if code else None
    hint = f" (Twilio error {code}, see {more_info})" if code else f" (HTTP {status})"
    return kind(f"{message}{hint}", code=code or None, more_info=more_info, status=status)


def _client(
    *,
    account_sid: str | None,
    auth_token: str | None,
    api_key: str | None,
    api_secret: str | None,
    region: str | None,
    edge: str | None,
    base_url: str | None,
    environ: Mapping[str, str],
) -> Any:
    try:
        from twilio.rest import Client
    except ImportError as error:
        raise ConfigurationError(
            "sending needs the twilio client: pip install 'webhook_kit[twilio]'"
        ) from error
    if not account_sid:
        raise ConfigurationError(
            "no account to send from: set TWILIO_ACCOUNT_SID (or WEBHOOK_KIT_ACCOUNT_SID)"
        )
    if api_key and api_secret:
        username, password = api_key, api_secret
    elif auth_token:
        username, password = account_sid, auth_token
    else:
        raise ConfigurationError(
            "no credentials to send with: set TWILIO_AUTH_TOKEN, or TWILIO_API_KEY and "
            "TWILIO_API_SECRET"
        )
    if base_url:
        # Every product domain (api, messaging, content, events) goes to the emulator, after
        # any region or edge rewrite of the host name.
        from .emulator.client import EmulatorHttpClient

        return Client(
            username,
            password,
            account_sid,
            environment=dict(environ),
            http_client=EmulatorHttpClient(base_url.rstrip("/")),
        )
    return Client(
        username, password, account_sid, region=region, edge=edge, environment=dict(environ)
    )


def _int(value: object) -> int | None:
    try:
        return int(str(value)) if value is not None else None
    except ValueError:
        return None
