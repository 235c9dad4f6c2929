"""Test your bot without Twilio: realistic payloads and a client that signs like Twilio.

>>> client = app.test_client()          # app.test_client_class = TwilioTestClient
>>> reply = client.send_message("hi")
>>> reply.messages[0].body
'Echo: hi'

The client signs every request with the app's own auth token over the URL the app will
rebuild, so tests exercise signature verification instead of switching it off.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from base64 import b64encode
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import EnvironBuilder, TestResponse

from . import conversation, events
from .emulator import Delivery, Emulator, Exchange
from .errors import ConfigurationError, TwiMLError, WebhookRejectedError
from .kit import WebhookKit
from .sending import Sender
from .signature import (
    HMAC_SHA256,
    SETTINGS_HEADER,
    SignatureSettings,
    body_sha256,
    compute_signature,
)
from .streams import INBOUND_TYPE, MESSAGE_STATUS_PREFIX
from .twiml import Message, MessagingResponse, parse

Fields = dict[str, str]
FieldValue = str | int | None

ACCOUNT_SID = "AC" + "0" * 30 + "01"
MESSAGING_SERVICE_SID = "MG" + "0" * 30 + "01"
#: A fictional customer (US 555-01xx numbers are reserved for fiction).
CUSTOMER = "+14155550100"
#: Twilio's test number that "passes all validation".
TWILIO_NUMBER = "+15005550006"


def new_sid(prefix: str = "SM") -> str:
    """A random SID of Twilio's shape: two letters and 32 hex digits."""
    return prefix + os.urandom(16).hex()


def inbound_sms(
    body: str = "Hello", *, from_: str = CUSTOMER, to: str = TWILIO_NUMBER, **fields: FieldValue
) -> Fields:
    """The 20 fields Twilio posts for an inbound SMS; keyword arguments override any field.

    Pass Twilio's names (``ToCity="Paris"``); ``None`` removes a field.
    """
    sid = new_sid("SM")
    base: Fields = {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "SAUSALITO",
        "FromZip": "94103",
        "SmsSid": sid,
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "SAN FRANCISCO",
        "Body": body,
        "FromCountry": "US",
        "To": to,
        "MessagingServiceSid": MESSAGING_SERVICE_SID,
        "ToZip": "94965",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": from_,
        "ApiVersion": "2010-04-01",
    }
    return _override(base, fields)


def inbound_mms(
    count: int = 1,
    body: str = "",
    *,
    content_type: str = "image/jpeg",
    **fields: FieldValue,
) -> Fields:
    """An MMS with ``count`` attachments (``MediaUrl0``... zero-based, as Twilio sends)."""
    sid = new_sid("MM")
    message = inbound_sms(body, MessageSid=sid, SmsMessageSid=sid, SmsSid=sid)
    message["NumMedia"] = str(count)
    for index in range(count):
        message[f"MediaContentType{index}"] = content_type
        message[f"MediaUrl{index}"] = (
            f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}"
            f"/Media/{new_sid('ME')}"
        )
    return _override(message, fields)


def whatsapp_message(
    body: str = "Hello",
    *,
    from_: str = "whatsapp:" + CUSTOMER,
    to: str = "whatsapp:" + TWILIO_NUMBER,
    profile_name: str = "Ada Lovelace",
    button: tuple[str, str] | None = None,
    location: tuple[float, float, str, str] | None = None,
    **fields: FieldValue,
) -> Fields:
    """A WhatsApp message; ``button=(text, payload)``, ``location=(lat, lon, address, label)``."""
    message = inbound_sms(body, from_=from_, to=to)
    for name in ("ToCity", "ToState", "ToZip", "FromCity", "FromState", "FromZip"):
        del message[name]
    message.update(ProfileName=profile_name, WaId=from_.rpartition("+")[2], MessageType="text")
    if button is not None:
        message.update(ButtonText=button[0], ButtonPayload=button[1], MessageType="button")
    if location is not None:
        latitude, longitude, address, label = location
        message.update(
            Latitude=repr(latitude),
            Longitude=repr(longitude),
            Address=address,
            Label=label,
            MessageType="location",
        )
    return _override(message, fields)


def opt_out_message(keyword: str = "STOP", **fields: FieldValue) -> Fields:
    """What Advanced Opt-Out forwards: the keyword and ``OptOutType`` (STOP, START or HELP)."""
    kind = {"STOP": "STOP", "START": "START", "HELP": "HELP", "UNSTOP": "START"}.get(
        keyword.upper(), "STOP"
    )
    return _override(inbound_sms(keyword, OptOutType=kind), fields)


def status_callback(
    message_sid: str | None = None,
    status: str = "delivered",
    *,
    error_code: int | None = None,
    from_: str = TWILIO_NUMBER,
    to: str = CUSTOMER,
    **fields: FieldValue,
) -> Fields:
    """A delivery status callback; ``RawDlrDoneDate`` is added for delivered/undelivered."""
    sid = message_sid or new_sid("SM")
    callback: Fields = {
        "AccountSid": ACCOUNT_SID,
        "From": from_,
        "To": to,
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "MessagingServiceSid": MESSAGING_SERVICE_SID,
        "ApiVersion": "2010-04-01",
    }
    if status in {"delivered", "undelivered"}:
        callback["RawDlrDoneDate"] = "2611231530"
    if error_code is not None:
        callback["ErrorCode"] = str(error_code)
    return _override(callback, fields)


def cloud_event(type: str, data: Mapping[str, Any], *, id: str | None = None) -> dict[str, Any]:
    """One CloudEvent as Event Streams sends it (a batch is a list of these)."""
    return {
        "specversion": "1.0",
        "type": type,
        "source": "/2010-04-01/Accounts/" + ACCOUNT_SID,
        "id": id or str(uuid.uuid4()),
        "dataschema": "https://events-schemas.twilio.com/Messaging.MessageStatus/8",
        "datacontenttype": "application/json",
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "data": dict(data),
    }


def message_event(
    message_sid: str | None = None,
    status: str = "delivered",
    *,
    error_code: int | None = None,
    from_: str = TWILIO_NUMBER,
    to: str = CUSTOMER,
    id: str | None = None,
    **data: Any,
) -> dict[str, Any]:
    """An Event Streams message status event (``messageStatus`` upper case, as Twilio sends
    it); keyword arguments add or override ``data`` fields (``None`` removes one)."""
    type = MESSAGE_STATUS_PREFIX + status.lower()
    fields: dict[str, Any] = {
        "messageSid": message_sid or new_sid("SM"),
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "accountSid": ACCOUNT_SID,
        "eventName": type,
        "apiVersion": "2010-04-01",
        "from": from_,
        "to": to,
        "messageStatus": status.upper(),
        "messagingServiceSid": MESSAGING_SERVICE_SID,
    }
    if error_code is not None:
        fields["errorCode"] = error_code
    fields.update(data)
    return cloud_event(type, {k: v for k, v in fields.items() if v is not None}, id=id)


def inbound_event(
    message_sid: str | None = None,
    body: str = "",
    *,
    from_: str = CUSTOMER,
    to: str = TWILIO_NUMBER,
    id: str | None = None,
    **data: Any,
) -> dict[str, Any]:
    """An Event Streams inbound message event (``Messaging.InboundMessageV1``); keyword
    arguments add or override ``data`` fields (``None`` removes one)."""
    type = INBOUND_TYPE
    fields: dict[str, Any] = {
        "messageSid": message_sid or new_sid("SM"),
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "accountSid": ACCOUNT_SID,
        "eventName": type,
        "from": from_,
        "to": to,
        "body": body,
        "numMedia": 0,
    }
    fields.update(data)
    event = cloud_event(type, {k: v for k, v in fields.items() if v is not None}, id=id)
    event["dataschema"] = "https://events-schemas.twilio.com/Messaging.InboundMessageV1/6"
    return event


def fallback_request(
    body: str = "Hello",
    *,
    error_code: int = 11200,
    error_url: str = "https://example.com/twilio/messages",
    **fields: FieldValue,
) -> Fields:
    """What Twilio posts to the fallback URL: the message plus ``ErrorCode`` and ``ErrorUrl``."""
    message = inbound_sms(body)
    message.update(ErrorCode=str(error_code), ErrorUrl=error_url)
    return _override(message, fields)


def _override(base: Fields, fields: Mapping[str, FieldValue]) -> Fields:
    for name, value in fields.items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = str(value)
    return base


@dataclass(frozen=True)
class WebhookReply:
    """The app's answer to one webhook, with its TwiML parsed."""

    response: TestResponse
    #: The parsed ``<Response>``, or None when the answer was not TwiML (a 4xx, say).
    twiml: MessagingResponse | None

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def messages(self) -> tuple[Message, ...]:
        return self.twiml.messages if self.twiml is not None else ()

    @property
    def texts(self) -> list[str]:
        """The body of every ``<Message>``, in order."""
        return [str(message.body) for message in self.messages]


class TwilioTestClient(FlaskClient):
    """A Flask test client that sends signed Twilio webhooks.

    Use it as ``app.test_client_class = TwilioTestClient`` (the pytest plugin does).
    Requests are signed with the first configured auth token, or ``auth_token=``; with
    ``shared_key=(key_id, secret)`` they are signed as a Webhooks configuration Setting
    would, with that key and ``algorithm``. ``basic_auth=(user, password)`` sends HTTP
    Basic credentials, as Twilio does for a URL or Setting that carries them.
    """

    def __init__(
        self,
        *args: Any,
        auth_token: str | None = None,
        shared_key: tuple[str, str] | None = None,
        algorithm: str = HMAC_SHA256,
        basic_auth: tuple[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.auth_token = auth_token
        self.shared_key = shared_key
        self.algorithm = algorithm
        self.basic_auth = basic_auth

    def send_message(
        self,
        body: str = "Hello",
        *,
        from_: str = CUSTOMER,
        to: str = TWILIO_NUMBER,
        media: Sequence[str] = (),
        fields: Mapping[str, FieldValue] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> WebhookReply:
        """Post an inbound message from ``from_`` and return the parsed reply."""
        payload = _override(inbound_sms(body, from_=from_, to=to), fields or {})
        for index, url in enumerate(media):
            payload[f"MediaUrl{index}"] = url
            payload[f"MediaContentType{index}"] = "image/jpeg"
        if media:
            payload["NumMedia"] = str(len(media))
        return self.send("messages", payload, headers=headers)

    def send_status(
        self,
        message_sid: str,
        status: str = "delivered",
        *,
        error_code: int | None = None,
        fields: Mapping[str, FieldValue] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> WebhookReply:
        """Post a status callback for ``message_sid``."""
        payload = _override(
            status_callback(message_sid, status, error_code=error_code), fields or {}
        )
        return self.send("status", payload, headers=headers)

    def send(
        self,
        route: str,
        payload: Mapping[str, str] | Iterable[tuple[str, str]],
        *,
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
    ) -> WebhookReply:
        """Sign and send any payload to one of the kit's routes (messages/status/fallback)."""
        path = f"{self._kit_prefix()}/{route}"
        return _reply(self.post_signed(path, payload, method=method, headers=headers))

    def post_signed(
        self,
        path: str,
        payload: Mapping[str, str] | Iterable[tuple[str, str]],
        *,
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
    ) -> TestResponse:
        """Send ``payload`` to ``path`` with the signature Twilio would compute."""
        pairs = list(payload.items() if isinstance(payload, Mapping) else payload)
        form = urlencode(pairs)
        if method == "GET":
            separator = "&" if "?" in path else "?"
            builder = EnvironBuilder(
                path=path + separator + form, method="GET", headers=list((headers or {}).items())
            )
            signed: list[tuple[str, str]] = []
        else:
            builder = EnvironBuilder(
                path=path,
                method=method,
                data=form,
                content_type="application/x-www-form-urlencoded",
                headers=list((headers or {}).items()),
            )
            signed = pairs
        return self._open_signed(builder, signed)

    def send_events(
        self, events: Sequence[Mapping[str, Any]], *, headers: Mapping[str, str] | None = None
    ) -> TestResponse:
        """Post an Event Streams batch (see :func:`message_event`) to the kit's sink, signed
        as Twilio signs JSON: ``bodySHA256`` in the URL, the URL alone signed."""
        body = json.dumps(list(events)).encode()
        path = f"{self._kit_prefix()}/events?bodySHA256={body_sha256(body)}"
        builder = EnvironBuilder(
            path=path,
            method="POST",
            data=body,
            content_type="application/json",
            headers=list((headers or {}).items()),
        )
        return self._open_signed(builder, None)

    def _open_signed(
        self, builder: EnvironBuilder, signed: list[tuple[str, str]] | None
    ) -> TestResponse:
        try:
            environ = builder.get_environ()
            url = self._kit().pipeline(self._app()).url_of(environ)
            if self.shared_key is not None:
                key, secret = self.shared_key
                signature = compute_signature(url, signed, secret, self.algorithm)
                settings = SignatureSettings(key, self.algorithm)
                builder.headers.setdefault(SETTINGS_HEADER, str(settings))
            else:
                signature = compute_signature(url, signed, self._token())
            builder.headers.setdefault("X-Twilio-Signature", signature)
            if self.basic_auth is not None:
                pair = ":".join(self.basic_auth).encode()
                builder.headers.setdefault("Authorization", "Basic " + b64encode(pair).decode())
            return self.open(builder)
        finally:
            builder.close()

    def conversation(self, from_: str = CUSTOMER, to: str = TWILIO_NUMBER) -> Chat:
        """A chat from one number: ``chat.send("hi")``, then ``chat.replies``."""
        return Chat(self, from_, to)

    def _app(self) -> Flask:
        return self.application

    def _kit(self) -> WebhookKit:
        kit = self._app().extensions.get("webhook_kit")
        if not isinstance(kit, WebhookKit):
            raise ConfigurationError("this app has no WebhookKit: call kit.init_app(app) first")
        return kit

    def _kit_prefix(self) -> str:
        rule = next(self._app().url_map.iter_rules("webhook_kit.messages")).rule
        return rule.rsplit("/", 1)[0]

    def _token(self) -> str:
        if self.auth_token:
            return self.auth_token
        tokens = self._kit().pipeline(self._app()).settings.auth_tokens
        return tokens[0] if tokens else "validation-off"


@dataclass
class Chat:
    """Messages from one sender and the replies they got, in order, as a test sends them.

    Its :attr:`saved` is the kit's :class:`~webhook_kit.conversation.Conversation` with
    this sender, as the store holds it.
    """

    client: TwilioTestClient
    from_: str
    to: str
    replies: list[WebhookReply] = field(default_factory=list)

    def send(self, body: str, **kwargs: Any) -> WebhookReply:
        reply = self.client.send_message(body, from_=self.from_, to=self.to, **kwargs)
        self.replies.append(reply)
        return reply

    def send_all(self, bodies: Iterable[str]) -> list[str]:
        """Send each body in turn; the texts of all replies, flattened in order."""
        texts: list[str] = []
        for body in bodies:
            texts.extend(self.send(body).texts)
        return texts

    @property
    def saved(self) -> conversation.Conversation | None:
        """The kit's conversation with this sender as the store holds it (None: none)."""
        fields = events.Fields(inbound_sms(from_=self.from_, to=self.to).items())
        id = conversation.conversation_id(events.parse_inbound(fields))
        data = self.client._kit().pipeline(self.client._app()).store.get_conversation(id)
        return None if data is None else conversation.loads(id, data, time.time())


def _reply(response: TestResponse) -> WebhookReply:
    twiml: MessagingResponse | None = None
    if response.mimetype in {"text/xml", "application/xml"}:
        try:
            twiml = parse(response.get_data())
        except TwiMLError:
            twiml = None
    return WebhookReply(response, twiml)


#: Where :class:`EmulatedApp` mounts an app without a public URL.
EMULATED_BASE_URL = "http://bot.test"


@dataclass
class EmulatedApp:
    """An app wired to an :class:`~webhook_kit.emulator.Emulator`, as in production.

    The two share the account's auth token (so every webhook verifies), the app is mounted
    in the emulator at its public URL (``WEBHOOK_KIT_PUBLIC_URL``, else
    :data:`EMULATED_BASE_URL`), the emulator's number ``number`` sends its incoming
    messages, fallbacks and reply status callbacks to the app's routes, and :attr:`sender`
    (``kit.send``) goes through the emulator. A webhook the app answers with an error makes
    :meth:`text` and :meth:`advance` raise :class:`WebhookRejectedError` with the app's
    reason, instead of the test seeing no reply.
    """

    app: Flask
    emulator: Emulator
    number: str = TWILIO_NUMBER
    base_url: str = EMULATED_BASE_URL

    @classmethod
    def wire(cls, app: Flask, emulator: Emulator, number: str = TWILIO_NUMBER) -> EmulatedApp:
        """Mount ``app`` in ``emulator`` and give the emulator ``number`` pointing at it."""
        kit = app.extensions.get("webhook_kit")
        if not isinstance(kit, WebhookKit):
            raise ConfigurationError("this app has no WebhookKit: call kit.init_app(app) first")
        settings = kit.pipeline(app).settings
        if settings.validate != "off" and emulator.auth_token not in settings.auth_tokens:
            raise ConfigurationError(
                "the emulator signs with another auth token than the app verifies: create "
                "the Emulator with auth_token= the app's WEBHOOK_KIT_AUTH_TOKEN"
            )
        base = (settings.public_url or EMULATED_BASE_URL).rstrip("/")
        emulator.mount(base, app)
        routes = base + next(app.url_map.iter_rules("webhook_kit.messages")).rule
        routes = routes.rsplit("/", 1)[0]
        emulator.add_number(
            number,
            sms_url=f"{routes}/messages",
            fallback_url=f"{routes}/fallback",
            status_callback=f"{routes}/status",
        )
        return cls(app, emulator, number, base)

    @property
    def kit(self) -> WebhookKit:
        kit = self.app.extensions["webhook_kit"]
        assert isinstance(kit, WebhookKit)
        return kit

    @cached_property
    def sender(self) -> Sender:
        """The app's :class:`~webhook_kit.sending.Sender` (what ``kit.send`` uses), sending
        through the emulator."""
        if self.app.config.get("WEBHOOK_KIT_TWILIO_BASE_URL") == self.emulator.url:
            return self.kit.sender(self.app)
        return self.kit.sender(self.app, client=self.emulator.client())

    def text(self, body: str = "", *, from_: str = CUSTOMER, media: Sequence[str] = ()) -> Exchange:
        """A handset at ``from_`` texts the app's number; the exchange once the app answered."""
        exchange = self.emulator.handset(from_).send(self.number, body, media)
        self._raise_rejected(exchange.deliveries)
        return exchange

    def advance(self, seconds: float) -> int:
        """Move the emulator's manual clock (status callbacks are delivered meanwhile)."""
        seen = len(self.emulator.deliveries)
        ran = self.emulator.advance(seconds)
        self._raise_rejected(self.emulator.deliveries[seen:])
        return ran

    def _raise_rejected(self, deliveries: Iterable[Delivery]) -> None:
        for delivery in deliveries:
            if not delivery.url.startswith(self.base_url):
                continue
            response = delivery.response
            if response is not None and 200 <= response.status < 300:
                continue
            if response is None:
                raise WebhookRejectedError(
                    f"the app gave no answer to the {delivery.kind} webhook {delivery.url} "
                    f"({delivery.failure})"
                )
            reason = " ".join(response.body.decode(errors="replace").split())[:300]
            hint = (
                " (the app and the emulator share the token: check that the URL the app "
                "rebuilds is the one signed, e.g. WEBHOOK_KIT_PUBLIC_URL)"
                if response.status == 403
                else ""
            )
            raise WebhookRejectedError(
                f"the app answered {response.status} to the {delivery.kind} webhook "
                f"{delivery.url}: {reason or '(no body: see the log captured above)'}{hint}"
            )
