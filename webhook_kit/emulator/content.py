"""Content templates (``/v1/Content``) and how a send renders one (twilio-more.md §5.3).

A template has a language, default ``variables`` and one object per content type; the
emulator renders ``twilio/text`` (``body``) and ``twilio/media`` (``body`` and ``media``),
and takes any other type's ``body`` as its text. A send names the template with ``ContentSid``
and fills its ``{{1}}`` or ``{{name}}`` placeholders from ``ContentVariables`` (a JSON object
of strings), the template's defaults filling the rest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

from .errors import ApiError
from .model import iso8601
from .resource import MAX_BODY, bad, is_url

CONTENT_BASE: Final = "/v1/Content"
PLACEHOLDER_RE: Final = re.compile(r"\{\{([^{}]*)\}\}")
VARIABLE_RE: Final = re.compile(r"^[A-Za-z0-9_]{1,16}$")
MAX_VARIABLES: Final = 100
MAX_VALUE: Final = 1600
#: Types WhatsApp refuses to open a conversation with (twilio-more.md §5.2).
NOT_OPENING: Final = frozenset({"twilio/list-picker", "twilio/location"})


@dataclass(frozen=True, slots=True)
class Content:
    """One template (``HX...``)."""

    sid: str
    friendly_name: str
    language: str
    variables: dict[str, str]
    types: dict[str, dict[str, Any]]
    date_created: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def opens_conversation(content: Content) -> bool:
    """Whether WhatsApp accepts this template outside the window (not list-picker/location)."""
    return not set(content.types) <= NOT_OPENING


def invalid(message: str) -> ApiError:
    """A template Twilio would refuse to create (400)."""
    return ApiError(20001, f"Invalid content: {message}", 400)


def parse_content(payload: object, sid: str, now: float) -> Content:
    """A ``POST /v1/Content`` JSON body, checked (``language`` and ``types`` are required)."""
    if not isinstance(payload, dict):
        raise invalid("send a JSON object with language and types")
    language = payload.get("language")
    if not isinstance(language, str) or not re.fullmatch(r"[a-z]{2}([_-][A-Za-z]{2})?", language):
        raise invalid("language is required: an ISO 639-1 code such as en")
    name = payload.get("friendly_name") or ""
    if not isinstance(name, str) or len(name) > 255:
        raise invalid("friendly_name must be a string of at most 255 characters")
    variables = payload.get("variables") or {}
    if not isinstance(variables, dict) or len(variables) > MAX_VARIABLES:
        raise invalid(f"variables must be an object of at most {MAX_VARIABLES} entries")
    for key, value in variables.items():
        if not VARIABLE_RE.match(key) or not isinstance(value, str):
            raise invalid(f"variable {key!r}: names are up to 16 letters/digits, values strings")
    types = payload.get("types")
    if isinstance(types, dict):  # the official clients send every type, unused ones null
        types = {
            kind: {k: v for k, v in spec.items() if v is not None}
            if isinstance(spec, dict)
            else spec
            for kind, spec in types.items()
            if spec is not None
        }
    if not isinstance(types, dict) or not types:
        raise invalid("types is required: an object such as {'twilio/text': {'body': 'Hi'}}")
    for kind, spec in types.items():
        _check_type(kind, spec)
    return Content(sid, name, language, dict(variables), dict(types), now)


def _check_type(kind: str, spec: object) -> None:
    if not isinstance(spec, dict):
        raise invalid(f"{kind} must be an object")
    body = spec.get("body")
    if body is not None and (not isinstance(body, str) or len(body) > MAX_BODY):
        raise invalid(f"{kind} body must be text of at most {MAX_BODY} characters")
    if kind == "twilio/text" and not body:
        raise invalid("twilio/text needs a body")
    if kind == "twilio/media":
        media = spec.get("media")
        if not isinstance(media, list) or not media or len(media) > 10:
            raise invalid("twilio/media needs media: a list of 1 to 10 URLs")
        for url in media:
            if not isinstance(url, str) or not is_url(url.replace("{{", "").replace("}}", "")):
                raise invalid(f"twilio/media: {url!r} is not an http(s) URL")


def render(content: Content, variables: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    """The body and media URLs a send of ``content`` delivers (21656 if a value is missing)."""
    values = {**content.variables, **variables}

    def fill(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            key = match.group(1).strip()
            if key not in values:
                raise bad(
                    21656,
                    f"The ContentVariables Parameter is invalid: no value for {{{{{key}}}}}",
                )
            return values[key][:MAX_VALUE]

        return PLACEHOLDER_RE.sub(one, text)

    if "twilio/media" in content.types:
        spec = content.types["twilio/media"]
        urls = tuple(fill(url) for url in spec.get("media", ()))
        return fill(str(spec.get("body") or "")), urls
    if "twilio/text" in content.types:
        return fill(str(content.types["twilio/text"]["body"])), ()
    for spec in content.types.values():
        if isinstance(spec.get("body"), str):
            return fill(spec["body"]), ()
    return "", ()


def content_json(content: Content, account_sid: str, base: str) -> dict[str, Any]:
    """The Content resource (content v1)."""
    url = f"{base}{CONTENT_BASE}/{content.sid}"
    stamp = iso8601(content.date_created)
    return {
        "date_created": stamp,
        "date_updated": stamp,
        "sid": content.sid,
        "account_sid": account_sid,
        "friendly_name": content.friendly_name,
        "language": content.language,
        "variables": content.variables,
        "types": content.types,
        "url": url,
        "links": {
            "approval_create": f"{url}/ApprovalRequests/whatsapp",
            "approval_fetch": f"{url}/ApprovalRequests",
        },
    }
