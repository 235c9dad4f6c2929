"""Signed correlation tokens: how a status callback finds the send it belongs to.

A send is recorded under a correlation id *before* the API call, and its StatusCallback URL
carries that id signed with itsdangerous (``?c=<token>``). So a callback that overtakes the
API's answer still finds its send, and a forged or foreign token is simply not trusted.
Sending signs tokens; the request path checks them: both import this module, and the request
path never imports the sending half.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from urllib.parse import parse_qsl

from itsdangerous import BadSignature, Signer

from .errors import ConfigurationError
from .records import PENDING

log = logging.getLogger("webhook_kit")

#: The query parameter of the StatusCallback URL that carries the signed correlation id.
TOKEN_PARAM = "c"
_SALT = "webhook_kit.correlation"


class Correlator:
    """Signs and checks the correlation ids carried in StatusCallback URLs."""

    __slots__ = ("_signer",)

    def __init__(self, secret_key: str | None) -> None:
        self._signer = Signer(secret_key, salt=_SALT) if secret_key else None

    @staticmethod
    def new_id(key: str | None = None) -> str:
        """A correlation id: the ledger key of a send until its SID is known.

        Fresh, or the same for every send with idempotency ``key``, so that a retried send
        finds the record its earlier attempt wrote before calling the API.
        """
        if key is None:
            return PENDING + secrets.token_hex(16)
        return PENDING + hashlib.blake2b(key.encode(), digest_size=16).hexdigest()

    def new(self, key: str | None = None) -> tuple[str, str]:
        """A correlation id (see :meth:`new_id`) and its signed token."""
        correlation = self.new_id(key)
        if self._signer is None:
            raise ConfigurationError(
                "no key to sign correlation tokens: set WEBHOOK_KIT_SECRET_KEY (or the auth "
                "token, or Flask's SECRET_KEY)"
            )
        return correlation, self._signer.sign(correlation).decode()

    def verify(self, token: str | None) -> str | None:
        """The correlation id a genuine token carries; None for a missing or forged one."""
        if not token or self._signer is None:
            return None
        try:
            correlation = self._signer.unsign(token).decode()
        except BadSignature:
            log.warning("ignored a status callback correlation token with a bad signature")
            return None
        return correlation if correlation.startswith(PENDING) else None

    def verify_query(self, query: str) -> str | None:
        """:meth:`verify` the token in a raw query string."""
        if not query:  # the usual callback URL: nothing to parse
            return None
        for name, value in parse_qsl(query):
            if name == TOKEN_PARAM:
                return self.verify(value)
        return None
