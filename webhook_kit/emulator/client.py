"""Point the official twilio client at an emulator, whatever its region or edge settings.

``Client.api.base_url = emulator.url`` works too, but a region or edge (``TWILIO_REGION``,
``TWILIO_EDGE``) makes the client rewrite that host (``127.0.0.1`` becomes ``127.ie1.0.1``).
This HTTP client swaps scheme and host after that rewrite, for every product domain at once.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigurationError

try:
    from twilio.http.http_client import TwilioHttpClient
    from twilio.http.response import Response
    from twilio.rest import Client
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ConfigurationError(
        "the official twilio client is not installed: pip install twilio"
    ) from error


class EmulatorHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """Sends every request the client makes to ``base_url`` instead of Twilio's hosts."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        """``kwargs`` go to ``TwilioHttpClient`` (timeout, logger, ...)."""
        super().__init__(**kwargs)
        parts = urlsplit(base_url)
        self.scheme, self.netloc = parts.scheme, parts.netloc

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        """Send the request to the emulator: Twilio's path and query on ``base_url``'s host."""
        parts = urlsplit(url)
        local = urlunsplit((self.scheme, self.netloc, parts.path, parts.query, ""))
        return super().request(method, local, *args, **kwargs)


def emulator_client(base_url: str, account_sid: str, auth_token: str, **kwargs: Any) -> Client:
    """A ``twilio.rest.Client`` for the emulator at ``base_url`` (extra kwargs go to Client)."""
    return Client(account_sid, auth_token, http_client=EmulatorHttpClient(base_url), **kwargs)
