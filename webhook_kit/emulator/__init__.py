"""An offline Twilio Messaging emulator that the official twilio client talks to unchanged.

It serves Twilio's REST Message resource (create, fetch, list, update, delete, Media), moves
each message through its statuses on a clock you control, posts signed status callbacks (in
chaos mode: out of order, duplicated, late, dropped), and lets handsets text your app's
numbers, turning the TwiML answers into replies with their own life cycle::

    with Emulator(clock="manual") as emulator:
        client = emulator.client()
        message = client.messages.create(to="+15558675310", from_="+15017122661", body="Hi")
        emulator.advance(5)
        assert client.messages(message.sid).fetch().status == "delivered"

Modules, state and life cycle apart from HTTP (moto's models and responses): ``model``
(records and their JSON), ``resource`` (create/list parameters, checked with Twilio's error
codes), ``state`` (SQLite, in memory or a file), ``clock`` (real or manual time, the
scheduler), ``lifecycle`` (statuses, rules, chaos, callback forms), ``delivery`` (signed
POSTs, connection overrides, retries, and the record of each webhook), ``journal`` (the
change counter watchers wait on), ``core`` (the :class:`Account`, the model), ``http`` (the
Flask app, one module per resource family; ``http/inspector`` the page at the base URL, see
docs/inspector.md), ``server`` (the :class:`Emulator`: the account served over HTTP),
``serve`` (``webhook-kit emulator`` under gunicorn), ``client`` (the official client,
pointed here). What decides how a message leaves: ``outbound`` (Messaging Services,
templates, the WhatsApp window), ``services`` (pools and sender choice), ``content``
(templates and their rendering), ``throughput`` (sender queues). It shares
the kit's pure modules (signature, encoding, twiml, status), never its request path.
"""

from __future__ import annotations

from .clock import Clock, ManualClock
from .core import Account, Exchange, Handset, RequestRecord
from .delivery import Delivery
from .errors import ApiError, EmulatorError, ProblemError
from .lifecycle import Chaos, Rule, Timing
from .media import Attachment
from .model import EmulatedMessage, MediaRecord, media_json, message_json
from .server import Emulator
from .state import Number
from .throughput import Throughput

__all__ = [
    "Account",
    "ApiError",
    "Attachment",
    "Chaos",
    "Clock",
    "Delivery",
    "EmulatedMessage",
    "Emulator",
    "EmulatorError",
    "Exchange",
    "Handset",
    "ManualClock",
    "MediaRecord",
    "Number",
    "ProblemError",
    "RequestRecord",
    "Rule",
    "Throughput",
    "Timing",
    "media_json",
    "message_json",
]
