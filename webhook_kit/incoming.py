"""Step 1 of the request path, read: the body from the WSGI input, size-capped, as fields.

The body is read straight from the WSGI input: werkzeug's ``request.form`` would cost more
than verification, parsing and the TwiML reply together. Twilio posts forms
(``application/x-www-form-urlencoded``), sends GET parameters in the query string when a
number is configured for GET, and JSON for some channels; anything else is a 400, a body over
``WEBHOOK_KIT_MAX_BODY`` a 413.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from io import BytesIO
from typing import Any, NamedTuple
from urllib.parse import unquote_to_bytes, urlencode

from .errors import BadRequestError, PayloadTooLargeError
from .events import Fields

#: Most form fields a webhook may carry (Twilio sends a few dozen).
MAX_FIELDS = 1000


class Incoming(NamedTuple):
    """A request's fields, what its signature covers, and the form to keep in the ledger."""

    fields: Fields
    signed: Iterable[tuple[str, str]]
    json_body: bytes | None
    form: str


def read_batch(environ: dict[str, Any], max_body: int) -> Incoming:
    """An Event Streams batch: a JSON body, signed whole (no fields of its own)."""
    body = _read_body(environ, max_body)
    if media_type(environ) != "application/json":
        raise BadRequestError("Event Streams batches are application/json")
    return Incoming(Fields(()), (), body, "")


def media_type(environ: Mapping[str, Any]) -> str:
    """The request's media type, lower case, without parameters ("" when missing)."""
    return str(environ.get("CONTENT_TYPE", "")).partition(";")[0].strip().lower()


def read(environ: dict[str, Any], max_body: int) -> Incoming:
    """The request's fields, what its signature covers, and its form for the ledger."""
    if environ["REQUEST_METHOD"] in ("GET", "HEAD"):
        # Twilio appends GET parameters to the URL itself; nothing more is signed.
        query = environ.get("QUERY_STRING", "")
        return Incoming(Fields(parse_form(_latin1_to_utf8(query))), (), None, query)
    body = _read_body(environ, max_body)
    kind = media_type(environ)
    if kind == "application/x-www-form-urlencoded" or (not kind and not body):
        try:
            form = body.decode()
        except UnicodeDecodeError:
            raise BadRequestError("request body is not valid UTF-8") from None
        pairs = parse_form(form)
        return Incoming(Fields(pairs), pairs, None, form)
    if kind == "application/json":
        pairs, form = _json_fields(body)
        return Incoming(Fields(pairs), (), body, form)
    raise BadRequestError(
        f"Content-Type {kind or 'missing'!r} is not a Twilio webhook: "
        "expected application/x-www-form-urlencoded"
    )


def _read_body(environ: dict[str, Any], limit: int) -> bytes:
    try:
        return _read_input(environ, limit)
    except (BadRequestError, MemoryError):
        raise
    except Exception as error:  # each server has its own: gunicorn's NoMoreData, InvalidChunkSize
        raise BadRequestError(
            f"request body could not be read ({type(error).__name__}: a chunked body cut "
            "short or malformed?)"
        ) from None


def _read_input(environ: dict[str, Any], limit: int) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        try:
            size = int(length)
        except ValueError:
            raise BadRequestError(f"Content-Length {length!r} is not a number") from None
        if size > limit:
            raise PayloadTooLargeError(f"body of {size} bytes exceeds the {limit}-byte limit")
        body: bytes = stream.read(size) if size > 0 else b""
    elif environ.get("wsgi.input_terminated"):  # chunked: read up to one byte past the limit
        body = stream.read(limit + 1)
        if len(body) > limit:
            raise PayloadTooLargeError(f"body exceeds the {limit}-byte limit")
    else:
        body = b""
    # Leave the body readable for anything after us (request.form in a handler).
    environ["wsgi.input"] = BytesIO(body)
    return body


def parse_form(form: str) -> list[tuple[str, str]]:
    """``application/x-www-form-urlencoded`` to pairs, strictly UTF-8, in order."""
    if "+" in form:  # a literal '+' is always sent as %2B, so every '+' is a space
        form = form.replace("+", " ")
    pairs: list[tuple[str, str]] = []
    append = pairs.append
    try:
        for piece in form.split("&"):
            name, _, value = piece.partition("=")
            if "%" in piece:  # strict: invalid UTF-8 after decoding is an error, not U+FFFD
                if "%" in name:
                    name = unquote_to_bytes(name).decode()
                if "%" in value:
                    value = unquote_to_bytes(value).decode()
                append((name, value))
            elif piece:
                append((name, value))
    except UnicodeDecodeError:
        raise BadRequestError("form field is not valid UTF-8 after percent-decoding") from None
    if len(pairs) > MAX_FIELDS:
        raise BadRequestError(f"more than {MAX_FIELDS} form fields")
    return pairs


def _json_fields(body: bytes) -> tuple[list[tuple[str, str]], str]:
    """The fields of a JSON body, and the same form-encoded (which checks they are UTF-8)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequestError("request body is not valid JSON (or nested too deeply)") from None
    if not isinstance(data, dict):
        raise BadRequestError("JSON webhook body must be an object")
    pairs = [
        (str(name), value if isinstance(value, str) else json.dumps(value))
        for name, value in data.items()
    ]
    try:
        return pairs, urlencode(pairs)
    except UnicodeEncodeError:  # "\ud800": a lone surrogate is no character
        raise BadRequestError("JSON body holds a lone surrogate (\\ud800-\\udfff)") from None


def _latin1_to_utf8(text: str) -> str:
    # WSGI strings are latin-1 decoded bytes; raw UTF-8 in a query needs decoding again.
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode()
    except UnicodeError:
        raise BadRequestError("query string is not valid UTF-8") from None
