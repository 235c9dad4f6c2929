"""Media bytes: fetched without credentials, checked against Twilio's outbound limits.

Twilio fetches each outbound ``MediaUrl`` and fails the message asynchronously when it cannot
(11200), when it is empty (63019), of a type no carrier takes (12300), or too large (11751:
5 MB in all; 500 KB for types other than JPEG, PNG and GIF) (twilio-more.md §7.3-7.4). The
emulator can only know this for URLs it reaches offline, so it checks loopback URLs and
trusts the rest, guessing their type from the name as before.
"""

from __future__ import annotations

import http.client
import ipaddress
import mimetypes
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

MAX_TOTAL: Final = 5 * 1024 * 1024
MAX_OTHER: Final = 500 * 1024
#: JPEG, PNG and GIF are resized by Twilio, so only the 5 MB total applies to them.
RESIZED: Final = frozenset({"image/jpeg", "image/jpg", "image/png", "image/gif"})
#: Types Twilio accepts for MMS besides those (accepted-mime-types.md, by family).
ACCEPTED_FAMILIES: Final = ("image/", "audio/", "video/")
ACCEPTED_OTHER: Final = frozenset(
    {
        "application/pdf",
        "application/vcard",
        "application/rtf",
        "application/zip",
        "text/vcard",
        "text/x-vcard",
        "text/csv",
        "text/rtf",
        "text/richtext",
        "text/calendar",
        "text/directory",
    }
)
_LIMIT: Final = MAX_TOTAL + 1
_LOCAL_NAMES: Final = frozenset({"localhost"})


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file a handset sends: its bytes and their type (``MediaContentType{N}``)."""

    content: bytes
    content_type: str = "image/jpeg"
    filename: str = "media"


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a media URL answered: bytes and type, or the Twilio error code for why not."""

    content_type: str = ""
    content: bytes = b""
    error: int | None = None


def guess_type(url: str) -> str:
    """The type a URL's name suggests (``image/jpeg`` when it says nothing)."""
    return mimetypes.guess_type(urlsplit(url).path)[0] or "image/jpeg"


def reachable_offline(url: str) -> bool:
    """True for a loopback URL: the only media the emulator can fetch without a network."""
    host = (urlsplit(url).hostname or "").lower()
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fetch(url: str, timeout: float = 5.0) -> Fetched:
    """GET ``url`` with no credentials (Twilio's fetcher sends none); 11200 when it fails."""
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection = kind(parts.hostname or "", parts.port, timeout=timeout)
        try:
            connection.request("GET", path, headers={"User-Agent": "TwilioProxy/1.1"})
            reply = connection.getresponse()
            content = reply.read(_LIMIT)
        finally:
            connection.close()
    except (OSError, http.client.HTTPException, ValueError):
        return Fetched(error=11200)
    if not 200 <= reply.status < 300:
        return Fetched(error=11200)
    content_type = (reply.getheader("Content-Type") or "").split(";")[0].strip().lower()
    return Fetched(content_type, content)


def outbound_error(items: list[Fetched]) -> int | None:
    """The asynchronous error Twilio gives a message with these fetched media, if any."""
    total = 0
    for item in items:
        if item.error is not None:
            return item.error
        if not item.content:
            return 63019
        kind = item.content_type
        accepted = kind in RESIZED or kind in ACCEPTED_OTHER or kind.startswith(ACCEPTED_FAMILIES)
        if not accepted:
            return 12300
        if kind not in RESIZED and len(item.content) > MAX_OTHER:
            return 11751
        total += len(item.content)
    return 11751 if total > MAX_TOTAL else None
