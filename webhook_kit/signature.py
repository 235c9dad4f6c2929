"""X-Twilio-Signature: compute it, verify it, and rebuild the URL Twilio signed.

Twilio signs ``HMAC-SHA1(auth_token, url + name1 + value1 + name2 + value2 ...)``, with the
POST parameters sorted by name and then value (code-point order, repeated identical pairs
counted once), and sends it base64-encoded. An account that signs with a shared key (the
Webhooks configuration API, 2026) sends ``X-Twilio-Webhooks-Signature-Settings:
key=<id>,algorithm=HMAC_SHA256``: the same string is then signed with that key's secret and
that algorithm, and the auth token is not used at all. Verification fails in real deployments mostly
because the URL the app sees is not the one Twilio requested; :func:`request_url` rebuilds
that one from a configured public URL, or from proxy headers trusted for exactly the
configured number of hops, and always from the *raw* path and query string.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from binascii import b2a_base64
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl, quote, urlsplit

from werkzeug.middleware.proxy_fix import ProxyFix

from .basic_auth import BasicAuth
from .errors import BadRequestError, SignatureError, UnauthorizedError
from .incoming import Incoming

log = logging.getLogger("webhook_kit")

Params = Mapping[str, str] | Mapping[str, Sequence[str]] | Iterable[tuple[str, str]]

_DEFAULT_PORTS = {"http": "80", "https": "443"}
#: ``host[:port]`` as RFC 3986 allows it: a bracketed IPv6 literal or a registered name.
_AUTHORITY = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::[0-9]{0,5})?")


#: The header naming the shared key and algorithm a webhook was signed with.
SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
HMAC_SHA1 = "HMAC_SHA1"
HMAC_SHA256 = "HMAC_SHA256"
#: Twilio's algorithm names -> hashlib's; anything else is refused (as twilio-node does).
ALGORITHMS = {HMAC_SHA1: "sha1", HMAC_SHA256: "sha256"}


def compute_signature(
    url: str, params: Params | None, token: str, algorithm: str = HMAC_SHA1
) -> str:
    """Return the ``X-Twilio-Signature`` Twilio would send for this URL, form and token.

    ``params`` may be a dict, a werkzeug ``MultiDict`` (every value of a repeated key
    counts) or a sequence of ``(name, value)`` pairs. Pass ``None`` for JSON bodies, whose
    URL carries ``bodySHA256`` instead (see :func:`body_sha256`). ``token`` is the auth
    token, or a shared key's secret with its ``algorithm`` (``HMAC_SHA1``/``HMAC_SHA256``).
    """
    digest = ALGORITHMS.get(algorithm.upper())
    if digest is None:
        raise ValueError(f"unsupported signature algorithm {algorithm!r}: use {_SUPPORTED}")
    return b2a_base64(
        hmac.digest(token.encode(), _payload(url, _pairs(params)), digest), newline=False
    ).decode("ascii")


_SUPPORTED = " or ".join(ALGORITHMS)
_HASHES = tuple(ALGORITHMS.items())


@dataclass(frozen=True, slots=True)
class SignatureSettings:
    """``X-Twilio-Webhooks-Signature-Settings``: which shared key signed, and how."""

    #: The shared key's id (``webhooks_sharedkey_...``); None when the header names none.
    key: str | None
    #: As sent, stripped; compared case-insensitively. Missing or empty: ``HMAC_SHA1``.
    algorithm: str

    @classmethod
    def parse(cls, header: str) -> SignatureSettings:
        """Parse the header as twilio-node does: ``name=value`` parts split on commas, in
        any order, spaces around names and values ignored; the first non-empty one counts."""
        found: dict[str, str] = {}
        for part in header.split(","):
            name, equals, value = part.partition("=")
            if equals and value.strip():
                found.setdefault(name.strip(), value.strip())
        return cls(found.get("key"), found.get("algorithm", HMAC_SHA1))

    def __str__(self) -> str:
        return f"key={self.key},algorithm={self.algorithm}"


def body_sha256(body: bytes) -> str:
    """The ``bodySHA256`` query value Twilio adds to the URL of a JSON request."""
    return hashlib.sha256(body).hexdigest()


def url_variants(url: str) -> Iterator[str]:
    """The URL as given, then with its port removed or the default one added, then quote swaps.

    Twilio keeps an explicit port when signing SMS webhooks but drops it for other HTTPS
    callbacks, and proxies differ on escaping ``'`` in a query, so the SDKs accept each of
    these spellings (all still need the token). Lazy: a match on the first computes no others.
    """
    yield url
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL that can be re-spelled; only its own spelling can match
        return
    spellings = [url]
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    if default is not None and parts.netloc:
        rest = url[len(parts.scheme) + 3 + len(parts.netloc) :]
        host, colon, port = parts.netloc.rpartition(":")
        if colon and port.isdigit() and not host.endswith(":"):
            spellings.append(f"{parts.scheme}://{host}{rest}")
        else:
            spellings.append(f"{parts.scheme}://{parts.netloc}:{default}{rest}")
        yield spellings[1]
    if "'" in parts.query or "%27" in parts.query:
        for spelling in spellings:
            head, _, query = spelling.partition("?")
            swapped = query.replace("%27", "'") if "%27" in query else query.replace("'", "%27")
            yield f"{head}?{swapped}"


class Verifier:
    """Checks signatures against the auth tokens, or the shared key a request names.

    Several tokens allow rotation (primary and secondary); ``token_loader`` maps an
    ``AccountSid`` to that account's tokens for apps serving subaccounts. ``shared_keys``
    maps shared key ids to secrets (several at once for a rotation): a request whose
    settings header names a key is checked with that key only. The common case, a correct
    signature for the URL as rebuilt, costs one HMAC.
    """

    __slots__ = ("_macs", "_shared", "_token_loader")

    def __init__(
        self,
        tokens: Sequence[str],
        token_loader: Callable[[str], str | Sequence[str] | None] | None = None,
        shared_keys: Mapping[str, str] | None = None,
    ) -> None:
        self._macs = _macs(tokens)
        self._token_loader = token_loader
        self._shared = {
            key: {name: hmac.new(secret.encode(), digestmod=hashed) for name, hashed in _HASHES}
            for key, secret in (shared_keys or {}).items()
        }

    def verify(
        self,
        url: str,
        params: Iterable[tuple[str, str]],
        signature: str | None,
        *,
        json_body: bytes | None = None,
        account_sid: str | None = None,
        settings: str | None = None,
    ) -> bool:
        """True if ``signature`` matches for any configured token and URL spelling.

        For a JSON request pass the raw body as ``json_body``: the URL must then carry a
        matching ``bodySHA256`` and is signed without parameters. ``settings`` is the
        ``X-Twilio-Webhooks-Signature-Settings`` header, if any. Never raises.
        """
        return (
            self.refusal(
                url,
                params,
                signature,
                json_body=json_body,
                account_sid=account_sid,
                settings=settings,
            )
            is None
        )

    def refusal(
        self,
        url: str,
        params: Iterable[tuple[str, str]],
        signature: str | None,
        *,
        json_body: bytes | None = None,
        account_sid: str | None = None,
        settings: str | None = None,
    ) -> str | None:
        """Why the request is refused, in a few words for the log; None if it verifies."""
        if not signature:
            return "missing X-Twilio-Signature header"
        if settings:
            parsed = SignatureSettings.parse(settings)
            keyed = self._shared.get(parsed.key) if parsed.key is not None else None
            algorithm = parsed.algorithm.upper()
            if parsed.key is None:
                return f"{SETTINGS_HEADER} {settings[:100]!r} names no key="
            if algorithm not in ALGORITHMS:
                return f"unsupported signature algorithm {parsed.algorithm[:40]!r} ({_SUPPORTED})"
            if keyed is None:
                return (
                    f"shared key {parsed.key[:100]!r} is not configured (WEBHOOK_KIT_SHARED_KEYS)"
                )
            macs: tuple[hmac.HMAC, ...] = (keyed[algorithm],)
            mismatch = f"invalid signature for shared key {parsed.key!r} ({algorithm})"
        else:
            macs = self._macs_for(account_sid)
            mismatch = "invalid signature"
        if json_body is not None:
            if not _body_hash_matches(url, json_body):
                return "body does not match the bodySHA256 in the URL"
            params = ()
        expected = signature.encode("ascii", "replace")
        suffix = _joined(params)
        for candidate in url_variants(url):
            payload = (candidate + suffix).encode()
            for mac in macs:
                signer = mac.copy()
                signer.update(payload)
                if hmac.compare_digest(b2a_base64(signer.digest(), newline=False), expected):
                    return None
        return mismatch

    def _macs_for(self, account_sid: str | None) -> tuple[hmac.HMAC, ...]:
        if self._token_loader is None or not account_sid:
            return self._macs
        loaded = self._token_loader(account_sid)
        if not loaded:
            return self._macs
        return _macs([loaded] if isinstance(loaded, str) else loaded) + self._macs


def _macs(tokens: Iterable[str]) -> tuple[hmac.HMAC, ...]:
    """One keyed HMAC-SHA1 per token, copied per check: the key is set up once, not per call."""
    return tuple(hmac.new(token.encode(), digestmod="sha1") for token in tokens if token)


class SignatureCheck:
    """Step 2 of the request path, verify: a request Twilio did not sign is answered 403.

    ``mode`` is ``WEBHOOK_KIT_VALIDATE``: ``on``, ``log-only`` (log what would be rejected,
    let it through) or ``off``. A failure is logged with the URL checked, and with a hint when
    the request came through a proxy that the configuration does not mention: the most
    common cause of failed signatures.
    """

    __slots__ = ("basic_auth", "mode", "url_of", "verifier")

    def __init__(
        self,
        verifier: Verifier,
        url_of: URLBuilder,
        mode: str = "on",
        basic_auth: BasicAuth | None = None,
    ) -> None:
        self.verifier = verifier
        self.url_of = url_of
        self.mode = mode
        #: HTTP Basic credentials required first (``WEBHOOK_KIT_BASIC_AUTH``), if any.
        self.basic_auth = basic_auth or BasicAuth()

    def __call__(self, environ: Mapping[str, Any], incoming: Incoming) -> None:
        """Return if ``incoming`` is signed (or checks are off); else raise SignatureError
        (or UnauthorizedError, 401, when required Basic credentials are wrong)."""
        if self.basic_auth:  # Twilio's credentials first: the signature is checked too
            try:
                self.basic_auth.check(environ.get("HTTP_AUTHORIZATION"))
            except UnauthorizedError as refused:
                log.warning("rejected %s: %s", environ.get("PATH_INFO"), refused)
                raise
        if self.mode == "off":
            return
        url = self.url_of(environ)
        reason = self.verifier.refusal(
            url,
            incoming.signed,
            environ.get("HTTP_X_TWILIO_SIGNATURE"),
            json_body=incoming.json_body,
            account_sid=incoming.fields.get("AccountSid"),
            settings=environ.get("HTTP_X_TWILIO_WEBHOOKS_SIGNATURE_SETTINGS"),
        )
        if reason is None:
            return
        hint = self._hint(environ, incoming.fields.get("AccountSid"))
        if self.mode == "log-only":
            log.warning("log-only: would reject %s for %s%s", reason, url, hint)
            return
        log.warning("rejected %s for %s%s", reason, url, hint)
        raise SignatureError(f"{reason}: request not from Twilio")

    def _hint(self, environ: Mapping[str, Any], account_sid: str | None) -> str:
        """What to check: the URL when a proxy is not configured (the most common cause of
        failed signatures), else the auth token."""
        forwarded = "HTTP_X_FORWARDED_PROTO" in environ or "HTTP_X_FORWARDED_HOST" in environ
        if forwarded and not self.url_of.configured:
            return (
                " (the request came through a proxy: set WEBHOOK_KIT_PROXY_HOPS or "
                "WEBHOOK_KIT_PUBLIC_URL so the URL matches the one Twilio called)"
            )
        if "HTTP_X_TWILIO_SIGNATURE" not in environ:
            return ""
        known = account_sid is not None and _ACCOUNT_SID.fullmatch(account_sid)  # unverified
        account = f"account {account_sid}" if known else "the account that sent it"
        return (
            " (if that is the URL Twilio called, check that TWILIO_AUTH_TOKEN or "
            f"WEBHOOK_KIT_AUTH_TOKEN is the auth token of {account})"
        )


_ACCOUNT_SID = re.compile(r"AC[0-9a-f]{32}")


class URLBuilder:
    """Rebuilds the URL Twilio requested from a WSGI environ.

    In order: the configured public base URL joined with the raw path; else the scheme and
    host as werkzeug's ``ProxyFix`` corrects them trusting exactly ``proxy_hops`` proxies
    (0: the ``X-Forwarded-*`` headers are ignored, as anyone can send them); then the
    path and query exactly as received, never werkzeug's decoded ``request.url``. A host
    that is no valid ``host[:port]`` (``[``, ``[::1``) raises :class:`BadRequestError`: a
    URL that cannot be rebuilt cannot be verified.
    """

    __slots__ = ("_base", "_proxy_fix")

    def __init__(self, public_url: str | None = None, proxy_hops: int = 0) -> None:
        self._base = _public_base(public_url) if public_url else None
        self._proxy_fix = (
            ProxyFix(
                cast(Any, _echo_environ),
                x_for=0,
                x_proto=proxy_hops,
                x_host=proxy_hops,
                x_port=proxy_hops,
                x_prefix=0,
            )
            if proxy_hops > 0 and self._base is None
            else None
        )

    def __call__(self, environ: Mapping[str, Any]) -> str:
        target = _raw_target(environ)
        if self._base is not None:
            return self._base + target
        if self._proxy_fix is not None:
            environ = self._forwarded(environ)
        scheme = environ.get("wsgi.url_scheme", "http")
        host = environ.get("HTTP_HOST")
        if not host:
            host = environ.get("SERVER_NAME", "localhost")
            port = environ.get("SERVER_PORT")
            if port and port != _DEFAULT_PORTS.get(scheme):
                host = f"{host}:{port}"
        if not _AUTHORITY.fullmatch(host):
            raise BadRequestError(f"host {host[:100]!r} is not a valid host[:port]")
        return f"{scheme}://{host}{target}"

    @property
    def configured(self) -> bool:
        """True when a public URL or trusted proxy hops say which URL Twilio called."""
        return self._base is not None or self._proxy_fix is not None

    def _forwarded(self, environ: Mapping[str, Any]) -> Mapping[str, Any]:
        # ProxyFix rewrites the environ it is given: hand it a copy of what it reads.
        copy = {key: value for key, value in environ.items() if key in _PROXY_FIX_KEYS}
        assert self._proxy_fix is not None
        return cast(Mapping[str, Any], self._proxy_fix(copy, cast(Any, None)))


def _echo_environ(environ: dict[str, Any], start_response: object) -> dict[str, Any]:
    return environ


_PROXY_FIX_KEYS = frozenset(
    {
        "wsgi.url_scheme",
        "HTTP_HOST",
        "SERVER_NAME",
        "SERVER_PORT",
        "REMOTE_ADDR",
        "SCRIPT_NAME",
        "HTTP_X_FORWARDED_PROTO",
        "HTTP_X_FORWARDED_HOST",
        "HTTP_X_FORWARDED_PORT",
    }
)


def _public_base(public_url: str) -> str:
    # Fragments (#rc=..., Twilio's connection overrides) are never part of the signed URL.
    base = public_url.split("#", 1)[0].rstrip("/")
    if "://" not in base:
        raise ValueError(f"public URL must start with http:// or https://, got {public_url!r}")
    return base


def _raw_target(environ: Mapping[str, Any]) -> str:
    """Path and query string as the client sent them, percent-escapes intact."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    query = environ.get("QUERY_STRING")
    if raw:
        if raw[0] != "/":  # absolute-form request target: drop scheme://host
            scheme_end = raw.find("://")
            slash = raw.find("/", scheme_end + 3) if scheme_end >= 0 else -1
            raw = raw[slash:] if slash >= 0 else "/"
        raw = cast(str, raw).split("#", 1)[0]
        # Some WSGI layers (werkzeug's test client given query_string=) leave it out.
        return f"{raw}?{query}" if query and "?" not in raw else raw
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    # WSGI gives the decoded path as latin-1; re-escape it the way clients send it.
    target = quote(path.encode("latin-1").decode("utf-8", "replace"), safe="/:@!$&'()*+,;=-._~")
    return f"{target}?{query}" if query else target


def _pairs(params: Params | None) -> Iterable[tuple[str, str]]:
    if params is None:
        return ()
    getlist = getattr(params, "getlist", None)
    if getlist is not None:  # werkzeug MultiDict, Django QueryDict: every value counts
        names = cast(Iterable[str], params)
        return [(name, value) for name in names for value in getlist(name)]
    if isinstance(params, Mapping):
        return _flatten(params)
    return params


def _flatten(mapping: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for name, value in mapping.items():
        if isinstance(value, str):
            yield name, value
        else:
            for item in value:
                yield name, item


def _joined(params: Iterable[tuple[str, str]]) -> str:
    return "".join([name + value for name, value in sorted(set(params))])


def _payload(url: str, params: Iterable[tuple[str, str]]) -> bytes:
    return (url + _joined(params)).encode()


def _body_hash_matches(url: str, body: bytes) -> bool:
    query = url.partition("?")[2]
    claimed = [value for name, value in parse_qsl(query) if name == "bodySHA256"]
    return len(claimed) == 1 and hmac.compare_digest(
        body_sha256(body).encode(), claimed[0].encode("ascii", "replace")
    )
