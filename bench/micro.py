"""Micro benchmarks of the request path's steps, each beside the twilio-python/werkzeug one."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]
from twilio.twiml.messaging_response import MessagingResponse as TwilioResponse  # type: ignore[import-untyped]
from werkzeug.formparser import parse_form_data

from webhook_kit.encoding import segment_count
from webhook_kit.events import Fields, parse_inbound
from webhook_kit.incoming import parse_form
from webhook_kit.signature import Verifier, compute_signature
from webhook_kit.testing import inbound_sms
from webhook_kit.twiml import MessagingResponse

from .loadgen import FORM_TYPE, TOKEN, BenchError

URL = "https://example.com/twilio/messages"
TEXT = "Echo: Hello"
MEDIA = ("https://example.com/cat.jpg", "https://example.com/dog.png")
GSM_LONG = "The quick brown fox jumps over the lazy dog. " * 7  # 315 characters, 3 segments
UCS2 = "Your order shipped 📦 and arrives tomorrow 🚚, thank you! " * 2  # 2 segments


@dataclass(frozen=True)
class Micro:
    """One step: webhook_kit's time per call beside its peer's, and what each includes."""

    name: str
    webhook_kit_us: float
    peer: str | None
    peer_us: float | None
    includes: str

    @property
    def speedup(self) -> float | None:
        return self.peer_us / self.webhook_kit_us if self.peer_us is not None else None


def run(*, repeat: int, batch_seconds: float) -> list[Micro]:
    """Time every step, best of ``repeat`` batches of about ``batch_seconds`` each."""
    pairs = list(inbound_sms().items())
    body = urlencode(pairs).encode()
    signature = compute_signature(URL, pairs, TOKEN)
    verifier = Verifier([TOKEN])
    validator = RequestValidator(TOKEN)
    form = dict(pairs)

    def environ() -> dict[str, Any]:
        return {
            "REQUEST_METHOD": "POST",
            "CONTENT_TYPE": FORM_TYPE,
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": BytesIO(body),
        }

    def kit_parse() -> object:
        env = environ()
        return parse_inbound(Fields(parse_form(env["wsgi.input"].read(len(body)).decode())))

    def kit_one() -> bytes:
        reply = MessagingResponse()
        reply.message(TEXT)
        return reply.to_bytes()

    def twilio_one() -> str:
        reply = TwilioResponse()
        reply.message(TEXT)
        return str(reply)

    def kit_media() -> bytes:
        reply = MessagingResponse()
        message = reply.message()
        message.body(TEXT)
        for url in MEDIA:
            message.media(url)
        return reply.to_bytes()

    def twilio_media() -> str:
        reply = TwilioResponse()
        message = reply.message()
        message.body(TEXT)
        for url in MEDIA:
            message.media(url)
        return str(reply)

    _check(verifier.verify(URL, pairs, signature), "webhook_kit rejected its own signature")
    _check(validator.validate(URL, form, signature), "twilio-python rejected the signature")
    _check(kit_one().decode() == twilio_one(), "the one-message replies differ")
    _check(kit_media().decode() == twilio_media(), "the media replies differ")
    _check(parse_inbound(Fields(pairs)).body == "Hello", "parse_inbound lost the body")

    def pair(
        name: str,
        kit: Callable[[], object],
        peer_name: str | None,
        peer: Callable[[], object] | None,
        includes: str,
    ) -> Micro:
        kit_us, peer_us = _best_us([kit] + ([peer] if peer else []), repeat, batch_seconds)
        return Micro(name, kit_us, peer_name, peer_us, includes)

    return [
        pair(
            "verify signature, 20 fields",
            lambda: verifier.verify(URL, pairs, signature),
            "twilio-python",
            lambda: validator.validate(URL, form, signature),
            "both: sort the fields, one HMAC-SHA1 per URL spelling tried; webhook_kit stops at "
            "the first match (1 HMAC), twilio-python always computes 2 (with and without port)",
        ),
        pair(
            "parse form body into an event",
            kit_parse,
            "werkzeug",
            lambda: parse_form_data(environ()),
            "both read the body from a fresh BytesIO; webhook_kit: UTF-8 decode, split and "
            "unquote, typed InboundMessage; werkzeug parse_form_data: the MultiDict behind "
            "request.form, untyped",
        ),
        pair(
            "TwiML: one message, build + serialise",
            kit_one,
            "twilio-python",
            twilio_one,
            "MessagingResponse().message(text); webhook_kit .to_bytes(), twilio-python str()",
        ),
        pair(
            "TwiML: <Body> + 2 <Media>, build + serialise",
            kit_media,
            "twilio-python",
            twilio_media,
            "message(); .body(text); .media(url) twice; same serialisation as above",
        ),
        pair(
            "segment_count, 11 GSM-7 chars",
            lambda: segment_count(TEXT),
            None,
            None,
            "no twilio-python equivalent",
        ),
        pair(
            f"segment_count, {len(GSM_LONG)} GSM-7 chars",
            lambda: segment_count(GSM_LONG),
            None,
            None,
            f"{segment_count(GSM_LONG)} segments",
        ),
        pair(
            f"segment_count, {len(UCS2)} chars with emoji",
            lambda: segment_count(UCS2),
            None,
            None,
            f"UCS-2, {segment_count(UCS2)} segments",
        ),
    ]


def _best_us(
    functions: list[Callable[[], object]], repeat: int, batch_seconds: float
) -> tuple[float, float | None]:
    """Best time per call in µs of each function, their batches alternating (A B A B ...).

    The cost of the empty loop and call, timed the same way, is subtracted.
    """
    functions = [_nothing, *functions]
    numbers = [_calls_per_batch(function, batch_seconds) for function in functions]
    best = [float("inf")] * len(functions)
    for _ in range(repeat):
        for index, (function, number) in enumerate(zip(functions, numbers, strict=True)):
            best[index] = min(best[index], _batch(function, number) / number * 1e6)
    net = [value - best[0] for value in best[1:]]
    return net[0], net[1] if len(net) > 1 else None


def _nothing() -> None:
    return None


def _calls_per_batch(function: Callable[[], object], seconds: float) -> int:
    number = 1
    while True:
        elapsed = _batch(function, number)
        if elapsed >= seconds / 4:
            return max(1, int(number * seconds / elapsed))
        number *= 4


def _batch(function: Callable[[], object], number: int) -> float:
    calls = range(number)
    start = time.perf_counter()
    for _ in calls:
        function()
    return time.perf_counter() - start


def _check(condition: bool, problem: str) -> None:
    if not condition:
        raise BenchError(problem)
