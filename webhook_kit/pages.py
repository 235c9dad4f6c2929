"""Rules shared by the browser pages (the emulator's inspector, the app's ledger page).

A page opens without credentials only where nobody else can reach it: the server listens on
(or the request comes from) loopback, *and* the ``Host`` header names loopback, so a web
page that rebinds its own host name to 127.0.0.1 is not let in. Everything else needs the
account's Basic auth. Pages are sent with a strict Content-Security-Policy.
"""

from __future__ import annotations

import ipaddress
from typing import Final, TypeVar

from werkzeug.wrappers import Response

R = TypeVar("R", bound=Response)

#: Headers every page response carries (with its own Content-Security-Policy).
SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.1``, ``::1``, ``[::1]``)."""
    name = (host or "").strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(host: str) -> str:
    """The name in a ``Host`` header, without its port (``[::1]:80`` -> ``[::1]``)."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rpartition(":")[0] if ":" in host else host


def protect(response: R, csp: str) -> R:
    """Add the page headers and ``csp`` (kept if the view set its own)."""
    response.headers.setdefault("Content-Security-Policy", csp)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
