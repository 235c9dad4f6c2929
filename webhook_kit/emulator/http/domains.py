"""Which Twilio product domain each path belongs to: one port serves them all.

The official clients keep one base URL per product (``api.twilio.com``,
``messaging.twilio.com``, ...); pointed at the emulator, they all land on one host, so
their paths must never collide. This is the one declaration of that split: the app factory
rate-limits and logs every domain's requests by it, and a test checks it against the paths
twilio-python builds and that no path belongs to two domains.
"""

from __future__ import annotations

from typing import Final

#: Domain (the host's first label) -> the first two path segments it serves here.
DOMAINS: Final[dict[str, frozenset[tuple[str, str]]]] = {
    "api": frozenset({("2010-04-01", "Accounts")}),
    "messaging": frozenset({("v1", "Services")}),
    "content": frozenset({("v1", "Content"), ("v2", "Content"), ("v1", "ContentAndApprovals")}),
    "events": frozenset({("v1", "Sinks"), ("v1", "Subscriptions"), ("v1", "Types")}),
    "webhooks": frozenset({("v1", "Webhooks")}),
}


def domain_of(path: str) -> str | None:
    """The product domain a request path belongs to, or None (the control API, a typo)."""
    segments = tuple(path.strip("/").split("/")[:2])
    for domain, prefixes in DOMAINS.items():
        if segments in prefixes:
            return domain
    return None
