"""HTTP Basic credentials that Twilio must present to the kit's routes.

Twilio authenticates to an endpoint with the credentials of the webhook URL's userinfo
(``https://user:pass@host/...``) or of a Webhooks configuration Setting, and sends them on
every request without waiting for a challenge. Requiring them keeps anonymous traffic away
from the signature check; it does not replace it (the kit checks both). Several pairs may
be configured at once, so credentials can be rotated without refusing a webhook.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from werkzeug.datastructures import Authorization

from .errors import UnauthorizedError

#: The challenge a 401 carries, as RFC 7617 asks.
CHALLENGE = 'Basic realm="webhook_kit", charset="UTF-8"'


class BasicAuth:
    """The accepted ``(user, password)`` pairs; empty accepts every request."""

    __slots__ = ("_pairs",)

    def __init__(self, pairs: Sequence[tuple[str, str]] = ()) -> None:
        self._pairs = tuple((user.encode(), password.encode()) for user, password in pairs)

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def check(self, header: str | None) -> None:
        """Raise :class:`UnauthorizedError` unless ``header`` carries an accepted pair.

        Every configured pair is compared, each part with :func:`hmac.compare_digest`, so
        the time taken tells nothing about which part or which pair nearly matched.
        """
        if not self._pairs:
            return
        if not header:
            raise UnauthorizedError("missing Authorization header: HTTP Basic is required")
        given = Authorization.from_header(header)
        if given is None or given.type != "basic":
            raise UnauthorizedError("Authorization header is not valid HTTP Basic")
        user = (given.username or "").encode()
        password = (given.password or "").encode()
        matched = False
        for expected_user, expected_password in self._pairs:
            same_user = hmac.compare_digest(user, expected_user)
            same_password = hmac.compare_digest(password, expected_password)
            matched |= same_user and same_password
        if not matched:
            raise UnauthorizedError("wrong HTTP Basic credentials")
