"""Webhook delivery as Twilio does it: signed form POSTs, connection overrides, retries.

Twilio reads retry and timeout settings from the URL fragment (``#ct=1000&rc=2&rp=5xx``); the
fragment is never sent and never signed. By default a request is retried once, and only when
the TCP connection could not be made. Every attempt is logged, so tests can see what was
posted, in which order, and what the app answered. Credentials in the URL
(``https://user:pass@host/...``) are sent as HTTP Basic on every request and left out of the
signed URL, as Twilio does; a :class:`Signing` says which key signs (see ``webhooks_config``).
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from base64 import b64encode
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from werkzeug.test import Client

from ..signature import HMAC_SHA1, SETTINGS_HEADER, SignatureSettings, compute_signature
from .model import random_hex, whole_number

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

logger = logging.getLogger("webhook_kit.emulator")
USER_AGENT: Final = "TwilioProxy/1.1"
#: Entries the request and delivery logs keep: a long-running emulator must not grow forever.
LOG_LIMIT: Final = 100_000
_POLICIES: Final = frozenset({"4xx", "5xx", "ct", "rt", "all"})


@dataclass(frozen=True, slots=True)
class Overrides:
    """Connection overrides from a URL fragment, clamped to Twilio's documented ranges."""

    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    total_time: float = 15.0
    retry_count: int = 1
    retry_policy: frozenset[str] = frozenset({"ct"})

    def retries(self, failure: str | int) -> bool:
        """True if an attempt that failed this way (``ct``, ``rt`` or an HTTP status) retries."""
        policy = self.retry_policy
        if "all" in policy:
            return True
        if isinstance(failure, int):
            return f"{failure // 100}xx" in policy
        return failure in policy


def split_overrides(url: str) -> tuple[str, Overrides]:
    """The URL to request and sign (no fragment), and the overrides its fragment sets."""
    target, _, fragment = url.partition("#")
    values = dict(parse_qsl(fragment, keep_blank_values=True))
    defaults = Overrides()

    def millis(key: str, default: float, low: int, high: int) -> float:
        value = whole_number(values.get(key))
        return default if value is None else min(max(value, low), high) / 1000

    retry = whole_number(values.get("rc"))
    policy = frozenset(p for p in values.get("rp", "").split(",") if p in _POLICIES)
    return target, Overrides(
        connect_timeout=millis("ct", defaults.connect_timeout, 100, 10000),
        read_timeout=millis("rt", defaults.read_timeout, 100, 15000),
        total_time=millis("tt", defaults.total_time, 100, 15000),
        retry_count=defaults.retry_count if retry is None else min(retry, 5),
        retry_policy=policy or defaults.retry_policy,
    )


@dataclass(frozen=True, slots=True)
class Signing:
    """How one webhook is signed and authenticated: the auth token, or a Setting's shared key
    (with ``key_id``) and its algorithm; ``basic`` credentials of the Setting, if any."""

    secret: str
    algorithm: str = HMAC_SHA1
    key_id: str | None = None
    basic: tuple[str, str] | None = None

    def headers(
        self, url: str, params: Sequence[tuple[str, str]] | None, userinfo: tuple[str, str] | None
    ) -> dict[str, str]:
        """The signature headers for ``url`` (no userinfo, no fragment) and ``params`` (None
        for JSON, whose URL carries ``bodySHA256``), and HTTP Basic: the Setting's
        credentials win over the URL's (``userinfo``)."""
        headers = {
            "X-Twilio-Signature": compute_signature(url, params, self.secret, self.algorithm)
        }
        if self.key_id is not None:
            headers[SETTINGS_HEADER] = str(SignatureSettings(self.key_id, self.algorithm))
        basic = self.basic or userinfo
        if basic is not None:
            headers["Authorization"] = "Basic " + b64encode(":".join(basic).encode()).decode()
        return headers

    def describe(self, userinfo: tuple[str, str] | None = None) -> str:
        """How a request is signed, for people: the header, algorithm and key, and Basic."""
        key = f"shared key {self.key_id}" if self.key_id else "auth token"
        basic = " + HTTP Basic" if (self.basic or userinfo) else ""
        return f"X-Twilio-Signature ({self.algorithm}, {key}){basic}"


def split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without ``user:password@``, and those credentials (percent-decoded)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), (unquote(user), unquote(password))


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook as delivered (after its retries): what was sent and how it ended.

    Under chaos a status callback may be withheld: it is logged all the same, with
    ``attempts`` 0 and ``"dropped"`` in ``chaos``, so a watcher sees what never came.
    """

    kind: str  # "status", "inbound", "fallback", "redirect"
    url: str
    params: tuple[tuple[str, str], ...]
    idempotency_token: str
    attempts: int
    at: float
    #: The last response, or None if no attempt got one.
    response: Response | None
    #: ``ct``/``rt`` for a connection/read failure of the last attempt, else None.
    failure: str | None = None
    #: The body of a JSON webhook (Event Streams); form webhooks have ``params`` instead.
    body: bytes = b""
    #: Wall-clock seconds from the first attempt's start to the last one's end.
    latency: float = 0.0
    #: How the request was signed (:meth:`Signing.describe`); empty if it never was.
    signature: str = ""
    #: What chaos did to it: ``delayed`` (jitter), ``late``, ``duplicate``, ``dropped``.
    chaos: tuple[str, ...] = ()

    @property
    def form(self) -> dict[str, str]:
        """The posted parameters as a dict (each name once)."""
        return dict(self.params)

    @property
    def message_sid(self) -> str | None:
        """The message the webhook was about."""
        for name, value in self.params:
            if name == "MessageSid":
                return value
        return None

    @property
    def dropped(self) -> bool:
        """True when chaos withheld it: the app never got it."""
        return "dropped" in self.chaos


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    """A webhook as posted and how it ended (``status`` None: no answer, see ``failure``).

    ``answer`` is what the app answered (its TwiML, for an incoming message), as text.
    """
    response = delivery.response
    return {
        "kind": delivery.kind,
        "url": delivery.url,
        "message_sid": delivery.message_sid,
        "params": delivery.form,
        "events": json.loads(delivery.body) if delivery.body else None,  # an Event Streams batch
        "signature": delivery.signature,
        "attempts": delivery.attempts,
        "retries": max(delivery.attempts - 1, 0),
        "status": response.status if response else None,
        "failure": delivery.failure,
        "latency": round(delivery.latency, 6),
        "answer": (
            {
                "content_type": response.content_type,
                "body": response.body.decode("utf-8", "replace"),
            }
            if response
            else None
        ),
        "chaos": list(delivery.chaos),
        "at": delivery.at,
    }


class DeliveryLog:
    """The latest deliveries (``LOG_LIMIT``), in the order they finished (thread-safe).

    ``notify`` is called after each one is added (the emulator's journal counts it).
    """

    def __init__(self, notify: Callable[[], None] | None = None) -> None:
        self._items: deque[Delivery] = deque(maxlen=LOG_LIMIT)
        self._lock = threading.Lock()
        self._notify = notify

    def add(self, delivery: Delivery) -> None:
        with self._lock:
            self._items.append(delivery)
        if self._notify is not None:
            self._notify()

    def all(self) -> list[Delivery]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


#: Sends one request in-process: (method, url, body, headers) -> the app's response.
Transport = Callable[[str, str, bytes, dict[str, str]], Response]


def wsgi_transport(app: WSGIApplication) -> Transport:
    """Deliver to a WSGI app in this process, as if over HTTP (an app error is a 500)."""

    def send(method: str, url: str, body: bytes, headers: dict[str, str]) -> Response:
        parts = urlsplit(url)
        # The query stays in the target: werkzeug then puts it in RAW_URI too, and the app
        # checks the signature over the URL exactly as requested.
        target = f"{parts.path or '/'}?{parts.query}" if parts.query else parts.path or "/"
        client = Client(app)
        try:
            reply = client.open(
                target,
                method=method,
                base_url=f"{parts.scheme}://{parts.netloc}",
                data=body,
                headers=headers,
            )
        except Exception:  # the app raised (e.g. a Flask app with testing=True): a 500
            logger.exception("the app mounted at %s raised", url)
            return Response(500, "text/plain", b"")
        return Response(reply.status_code, reply.headers.get("Content-Type", ""), reply.get_data())

    return send


def post(
    url: str,
    params: Sequence[tuple[str, str]],
    auth_token: str,
    *,
    kind: str,
    now: float,
    log: DeliveryLog,
    transport: Transport | None = None,
    signing: Signing | None = None,
    method: str = "POST",
    connections: Connections | None = None,
    chaos: tuple[str, ...] = (),
) -> Delivery:
    """POST a signed form to ``url`` with Twilio's headers, retrying as its fragment says.

    ``method="GET"`` (a number's ``SmsMethod``) puts the parameters in the query string
    instead, signed as part of the URL. ``transport`` delivers in-process instead of over
    HTTP (an app mounted on the emulator); ``signing`` replaces signing with ``auth_token``
    (a Webhooks configuration Setting); ``connections`` keeps connections alive between
    webhooks; ``chaos`` is recorded with it (what chaos did to its timing).
    """
    target, overrides = split_overrides(url)
    target, userinfo = split_userinfo(target)
    signed: Sequence[tuple[str, str]] = params
    if method == "GET":
        target = f"{target}{'&' if '?' in target else '?'}{urlencode(params)}"
        signed, body = (), b""
    else:
        body = urlencode(params).encode()
    signer = signing or Signing(auth_token)
    headers = {
        **signer.headers(target, signed, userinfo),
        "I-Twilio-Idempotency-Token": random_hex(),
        "User-Agent": USER_AGENT,
        "X-Home-Region": "us1",
    }
    if method == "POST":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    started = time.monotonic()
    deadline = started + overrides.total_time
    attempts = 0
    response: Response | None = None
    failure: str | None = None
    while True:
        attempts += 1
        response, failure = send_once(
            target, body, headers, transport, overrides, method=method, connections=connections
        )
        outcome: str | int | None = failure or (response.status if response else None)
        if response is not None and response.status < 400:
            break
        if attempts > overrides.retry_count or time.monotonic() >= deadline:
            break
        if outcome is None or not overrides.retries(outcome):
            break
    delivery = Delivery(
        kind,
        target,
        tuple(params),
        headers["I-Twilio-Idempotency-Token"],
        attempts,
        now,
        response,
        failure,
        latency=time.monotonic() - started,
        signature=signer.describe(userinfo),
        chaos=chaos,
    )
    log.add(delivery)
    return delivery


def withhold(
    url: str,
    params: Sequence[tuple[str, str]],
    *,
    kind: str,
    now: float,
    log: DeliveryLog,
) -> Delivery:
    """Log a webhook that chaos kept from being posted (never signed, no attempt, no answer)."""
    target, _ = split_overrides(url)
    delivery = Delivery(kind, target, tuple(params), "", 0, now, None, chaos=("dropped",))
    log.add(delivery)
    return delivery


def send_once(
    url: str,
    body: bytes,
    headers: dict[str, str],
    transport: Transport | None,
    overrides: Overrides,
    *,
    method: str = "POST",
    connections: Connections | None = None,
) -> tuple[Response | None, str | None]:
    """One attempt, no retry (the caller retries its own way): the response, or ``ct``/``rt``."""
    if transport is not None:
        return transport(method, url, body, headers), None
    return _attempt(method, url, body, headers, overrides, connections=connections)


class Connections:
    """Idle keep-alive connections to webhook hosts, shared by the delivery threads.

    A real-clock emulator posts thousands of callbacks to the same app; reusing a connection
    spares both sides a TCP handshake per webhook. :meth:`close` (on ``Emulator.stop``) closes
    every idle one; a connection the server closed meanwhile is replaced transparently.
    """

    def __init__(self, per_host: int = 16) -> None:
        self.per_host = per_host
        self._idle: dict[tuple[str, str], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def take(self, key: tuple[str, str]) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def give(self, key: tuple[str, str], connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if not self._closed and len(idle) < self.per_host:
                idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            idle = [c for connections in self._idle.values() for c in connections]
            self._idle.clear()
            self._closed = True
        for connection in idle:
            connection.close()


def _attempt(
    method: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    overrides: Overrides,
    *,
    connections: Connections | None,
) -> tuple[Response | None, str | None]:
    parts = urlsplit(url)
    key = (parts.scheme, parts.netloc)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    reused = connections.take(key) if connections is not None else None
    if reused is not None:
        if reused.sock is not None:
            reused.sock.settimeout(overrides.read_timeout)
        try:
            return _exchange(reused, method, path, body, headers, key=key, connections=connections)
        except (ConnectionError, http.client.BadStatusLine):  # closed while idle: a new one
            reused.close()
        except (OSError, http.client.HTTPException):
            reused.close()
            return None, "rt"
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    try:
        connection = connection_class(
            parts.hostname or "", parts.port, timeout=overrides.connect_timeout
        )
    except (http.client.InvalidURL, ValueError):
        return None, "ct"
    try:
        connection.connect()
    except OSError:
        connection.close()
        return None, "ct"
    if connection.sock is not None:
        connection.sock.settimeout(overrides.read_timeout)
    try:
        return _exchange(connection, method, path, body, headers, key=key, connections=connections)
    except (OSError, http.client.HTTPException):  # timed out, reset or garbled: no answer
        connection.close()
        return None, "rt"


def _exchange(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    *,
    key: tuple[str, str],
    connections: Connections | None,
) -> tuple[Response | None, str | None]:
    """One request and its answer; the connection goes back to the pool if it can be reused."""
    connection.request(method, path, body=body or None, headers=headers)
    reply = connection.getresponse()
    content = reply.read(64 * 1024 + 1)
    content_type = reply.getheader("Content-Type") or ""
    if connections is not None and reply.isclosed() and not reply.will_close:
        connections.give(key, connection)
    else:
        connection.close()
    return Response(reply.status, content_type, content), None
