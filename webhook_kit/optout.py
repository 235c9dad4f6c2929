"""Opt-out compliance: STOP/START/HELP recognised, answered once, and kept in a registry.

When Twilio's Advanced Opt-Out has answered a message, the request carries ``OptOutType``
and the kit only records it. Without it (a number with no Advanced Opt-Out), the kit
recognises Twilio's default keywords itself (the whole body, one word, any case) and
answers with the configured compliance text. Either way the registry in the store keeps,
per sender (our number and, if any, the Messaging Service) and recipient, whether the
person opted out; replies to an opted-out person are dropped and logged, as Twilio would
refuse them (error 21610).
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import IO

from .errors import ConfigurationError, UnsubscribedRecipientError
from .events import InboundMessage, OptOutType
from .stores import OptOut, Store
from .twiml import MessagingResponse

log = logging.getLogger("webhook_kit")

#: Twilio's default keywords (Messaging Services' Advanced Opt-Out documents the same).
KEYWORDS: dict[str, OptOutType] = {
    **dict.fromkeys(
        ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"),
        OptOutType.STOP,
    ),
    **dict.fromkeys(("START", "YES", "UNSTOP"), OptOutType.START),
    **dict.fromkeys(("HELP", "INFO"), OptOutType.HELP),
}
#: The compliance texts answered by default (``WEBHOOK_KIT_STOP_REPLY`` and so on).
DEFAULT_REPLIES: dict[OptOutType, str] = {
    OptOutType.STOP: (
        "You have been unsubscribed and will receive no more messages from this number. "
        "Reply START to subscribe again."
    ),
    OptOutType.START: (
        "You are subscribed again to messages from this number. Reply HELP for help, "
        "STOP to unsubscribe. Msg&data rates may apply."
    ),
    OptOutType.HELP: (
        "Reply STOP to unsubscribe, START to subscribe again. Msg&data rates may apply."
    ),
}
#: Twilio's error for a message to a recipient who replied STOP.
OPTED_OUT_ERROR = 21610
_CSV_FIELDS = ("sender", "address", "opted_out", "updated_at", "source")
_PUNCTUATION = ".,!?;:'\"()"


def keyword_type(body: str) -> OptOutType | None:
    """The opt-out type of a body that is exactly one default keyword, else None."""
    word = body.strip().strip(_PUNCTUATION).upper()
    return KEYWORDS.get(word) if word and " " not in word else None


def senders_of(message: InboundMessage) -> tuple[str, ...]:
    """Whom an opt-out sent in ``message`` applies to: our number and its Messaging Service."""
    if message.messaging_service_sid:
        return (message.to, message.messaging_service_sid)
    return (message.to,)


class OptOuts:
    """The opt-out registry of one app (``kit.opt_outs``, inside an app context)."""

    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        self._store = store

    def is_opted_out(self, address: str, *senders: str) -> bool:
        """True if ``address`` opted out of any of ``senders`` (numbers or Messaging Services)."""
        return self._store.opted_out(address, senders)

    def get(self, address: str, sender: str) -> OptOut | None:
        """The record of ``address`` for ``sender``, or None if it never opted in or out."""
        return self._store.get_opt_out(sender, address)

    def opt_out(self, address: str, *senders: str, source: str = "api") -> None:
        """Record that ``address`` opted out of ``senders`` (e.g. asked by e-mail)."""
        self.record(address, senders, True, source)

    def opt_in(self, address: str, *senders: str, source: str = "api") -> None:
        """Record that ``address`` may be messaged again by ``senders``."""
        self.record(address, senders, False, source)

    def list(self, sender: str | None = None, *, opted_out_only: bool = True) -> list[OptOut]:
        """The opted-out recipients (of one ``sender``); ``opted_out_only=False``: all records."""
        records = self._store.list_opt_outs(sender)
        return [r for r in records if r.opted_out] if opted_out_only else records

    def export_csv(self, out: IO[str], sender: str | None = None) -> int:
        """Write every record (opted in again too) as CSV with a header; how many rows."""
        records = self.list(sender, opted_out_only=False)  # a store error writes nothing
        writer = csv.writer(out)
        writer.writerow(_CSV_FIELDS)
        for r in records:
            writer.writerow((r.sender, r.address, int(r.opted_out), repr(r.updated_at), r.source))
        return len(records)

    def import_csv(self, rows: Iterable[str], *, source: str = "import") -> int:
        """Read CSV with ``sender`` and ``address`` columns (``opted_out`` 1/0, default 1).

        Each row replaces the record of its sender and address; how many rows were read.
        A bad row refuses the whole file, so that nothing is half imported.
        """
        reader = csv.DictReader(rows)
        missing = {"sender", "address"} - set(reader.fieldnames or ())
        if missing:
            raise ConfigurationError(
                f"opt-out CSV lacks the column(s) {', '.join(sorted(missing))}: the header "
                "must name sender and address (and optionally opted_out)"
            )
        records = []  # every row is checked before any is written
        for line, row in enumerate(reader, start=2):
            sender, address = (row["sender"] or "").strip(), (row["address"] or "").strip()
            flag = (row.get("opted_out") or "1").strip().lower()
            if not sender or not address or flag not in ("1", "0", "true", "false"):
                raise ConfigurationError(
                    f"opt-out CSV line {line}: needs a sender, an address and opted_out 1 or 0"
                    " (nothing was imported)"
                )
            records.append((address, sender, flag in ("1", "true")))
        for address, sender, opted_out in records:
            self.record(address, (sender,), opted_out, source)
        return len(records)

    def record(self, address: str, senders: Iterable[str], opted_out: bool, source: str) -> None:
        """Record ``opted_out`` for ``address`` and each sender."""
        now = time.time()
        for sender in senders:
            self._store.set_opt_out(OptOut(sender, address, opted_out, now, source))


def refuse_opted_out(store: Store, to: str, *senders: str | None) -> None:
    """Raise Twilio's 21610 error, locally, if ``to`` opted out of any of ``senders``.

    ``kit.send`` calls this before any API request: Twilio would refuse the message anyway,
    and a number that keeps texting opted-out people risks being filtered by carriers.
    """
    named = [sender for sender in senders if sender]
    if named and OptOuts(store).is_opted_out(to, *named):
        raise UnsubscribedRecipientError(
            f"{to} replied STOP to {' / '.join(named)}: they receive nothing from it until "
            "they reply START (or kit.opt_outs.opt_in() records their consent)",
            code=OPTED_OUT_ERROR,
            status=400,
        )


class OptOutPolicy:
    """The opt-out step of the request path."""

    __slots__ = ("_recognise", "_replies", "registry")

    def __init__(self, store: Store, *, recognise: bool, replies: Mapping[str, str]) -> None:
        """``replies`` overrides :data:`DEFAULT_REPLIES` by type name (``""``: no reply)."""
        self.registry = OptOuts(store)
        self._recognise = recognise
        self._replies = {**DEFAULT_REPLIES, **{OptOutType(k): v for k, v in replies.items()}}

    def classify(
        self, message: InboundMessage, opted_out: bool
    ) -> tuple[InboundMessage, MessagingResponse | None]:
        """Record what an opt-out keyword asks, and say what the kit answers to it.

        ``opted_out``: whether the sender had opted out of ``senders_of(message)``.

        A keyword Advanced Opt-Out answered is recorded and answered by nobody but the
        app's ``opt_out=`` handlers. One the kit recognises is returned with its
        ``opt_out_type`` set (so it reaches only those handlers too) and the compliance
        reply to send if none of them replies. START, YES and UNSTOP from someone who has
        not opted out are ordinary messages (a "yes" answering a question).
        """
        kind = message.opt_out_type
        source = "advanced"
        if kind is None:
            kind = keyword_type(message.body) if self._recognise else None
            if kind is None or (kind is OptOutType.START and not opted_out):
                return message, None  # "yes" from a subscriber is an answer, not an opt-in
            message = replace(message, opt_out_type=kind)
            source = "keyword"
        if kind in (OptOutType.STOP, OptOutType.START):
            opted_out = kind is OptOutType.STOP
            self.registry.record(message.from_, senders_of(message), opted_out, source)
        text = self._replies.get(kind) if source == "keyword" else None
        if not text:
            return message, None
        reply = MessagingResponse()
        reply.message(text)
        return message, reply

    def screen(
        self, message: InboundMessage, reply: MessagingResponse, opted_out: bool
    ) -> MessagingResponse:
        """``reply``, or no reply if it would go to a person who opted out (``opted_out``)."""
        if not opted_out or message.opt_out_type is not None or not reply.messages:
            return reply
        log.warning(
            "reply to %s dropped: %s opted out of %s (Twilio would refuse it: error %d)",
            message.message_sid,
            message.from_,
            message.to,
            OPTED_OUT_ERROR,
        )
        return MessagingResponse()
