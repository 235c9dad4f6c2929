"""Twilio's Webhooks configuration API (Public Beta, 2026): how each webhook is signed.

SharedKeys hold secrets; a Setting names a SharedKey and an algorithm (``signature``) and how
Twilio authenticates to the endpoint (``auth``); Rules pick a Setting per destination URL:
exact matches (longest first), then prefixes (longest first), then the ``DEFAULT`` rule. A
rule may split traffic between two Settings by percentage, which is how a key is rotated
without refusing a webhook. Without a matching Rule a webhook is signed with the auth token.

The shapes follow twilio-node 6.3's Webhooks v1 models (JSON, camelCase, RFC 9457 errors,
token-paged lists). Unlike Twilio, changes apply at once: a Rule's operation is ``COMPLETED``
when it is created, so a test can rotate keys without waiting out propagation.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..signature import ALGORITHMS
from .delivery import Signing, split_userinfo
from .errors import ProblemError
from .model import iso8601
from .resource import is_url

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
MATCH_TYPES = ("EXACT_MATCH", "PREFIX_MATCH", "DEFAULT")


def invalid(detail: str) -> ProblemError:
    """The API's 400 for a request it cannot accept (an RFC 9457 problem, code 59000)."""
    return ProblemError(59000, detail, 400)


def new_id(prefix: str) -> str:
    """A resource ID as the API forms them: ``prefix`` and 26 Crockford base-32 characters."""
    return prefix + "".join(_CROCKFORD[byte % 32] for byte in os.urandom(26))


@dataclass(slots=True)
class SharedKey:
    id: str
    friendly_name: str
    secret: str
    created_at: float

    def json(self, *, secret: bool = False) -> dict[str, Any]:
        """The resource; its secret only in the answer to its creation."""
        body: dict[str, Any] = {
            "id": self.id,
            "friendlyName": self.friendly_name,
            "createdAt": iso8601(self.created_at),
            "updatedAt": iso8601(self.created_at),
        }
        if secret:
            body["secret"] = self.secret
        return body


@dataclass(slots=True)
class Setting:
    id: str
    friendly_name: str
    description: str
    auth: dict[str, Any]
    signature: dict[str, Any] | None
    created_at: float

    @property
    def shared_key_id(self) -> str | None:
        if self.signature is None or str(self.signature.get("type", "")).lower() == "none":
            return None
        return str(self.signature.get("sharedKeyId") or "") or None

    @property
    def basic(self) -> tuple[str, str] | None:
        """Inline HTTP Basic credentials (``auth.value.scheme`` Basic), if that is the auth."""
        value = self.auth.get("value")
        inline = str(self.auth.get("source", "")).upper() == "INLINE"
        if inline and isinstance(value, dict) and str(value.get("scheme", "")).lower() == "basic":
            return str(value.get("username", "")), str(value.get("password", ""))
        return None

    def json(self) -> dict[str, Any]:
        auth = dict(self.auth)
        if isinstance(auth.get("value"), dict):  # secrets are write-only
            auth["value"] = {
                k: v for k, v in auth["value"].items() if k not in ("password", "clientSecret")
            }
        return {
            "id": self.id,
            "type": "CUSTOMER",
            "friendlyName": self.friendly_name,
            "description": self.description,
            "auth": auth,
            "signature": self.signature,
            "connection": None,
            "edgeZones": None,
            "createdAt": iso8601(self.created_at),
            "updatedAt": iso8601(self.created_at),
        }


@dataclass(slots=True)
class SigningRule:
    """A Webhooks configuration Rule: which Setting signs webhooks to the URLs it matches."""

    id: str
    match_type: str
    #: The URL (EXACT_MATCH), the prefix (PREFIX_MATCH), or "" (DEFAULT).
    pattern: str
    #: ``(setting id, percentage)``, one or two, summing to 100.
    settings: list[tuple[str, int]]
    friendly_name: str
    description: str
    created_at: float

    def matches(self, url: str) -> bool:
        if self.match_type == "EXACT_MATCH":  # the endpoint, whatever its query string
            return url.partition("?")[0] == self.pattern
        if self.match_type == "PREFIX_MATCH":
            return url.startswith(self.pattern)
        return True

    def json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "friendlyName": self.friendly_name,
            "description": self.description,
            "matchType": self.match_type,
            "settings": [{"settingId": s, "percentage": p} for s, p in self.settings],
            "createdAt": iso8601(self.created_at),
            "updatedAt": iso8601(self.created_at),
        }
        if self.match_type == "EXACT_MATCH":
            body["value"] = self.pattern
        elif self.match_type == "PREFIX_MATCH":
            body["prefix"] = self.pattern
        return body


@dataclass
class WebhooksConfig:
    """The account's SharedKeys, Settings and Rules, and the signing each webhook URL gets."""

    now: Callable[[], float]
    rng: random.Random = field(default_factory=random.Random)
    shared_keys: dict[str, SharedKey] = field(default_factory=dict)
    settings: dict[str, Setting] = field(default_factory=dict)
    rules: dict[str, SigningRule] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def signing(self, url: str, auth_token: str) -> Signing:
        """How a webhook to ``url`` is signed: the first matching Rule's Setting (drawn by
        percentage), else the auth token with HMAC-SHA1."""
        target = split_userinfo(url.partition("#")[0])[0]
        with self._lock:
            rule = self._rule_for(target)
            if rule is None:
                return Signing(auth_token)
            setting = self.settings[self._draw(rule)]
            key_id = setting.shared_key_id
            if key_id is None:
                return Signing(auth_token, basic=setting.basic)
            algorithm = str((setting.signature or {}).get("algorithm", "")).upper()
            return Signing(self.shared_keys[key_id].secret, algorithm, key_id, setting.basic)

    def _rule_for(self, url: str) -> SigningRule | None:
        for match_type in MATCH_TYPES:
            found = [r for r in self.rules.values() if r.match_type == match_type]
            for rule in sorted(found, key=lambda r: len(r.pattern), reverse=True):
                if rule.matches(url):
                    return rule
        return None

    def _draw(self, rule: SigningRule) -> str:
        if len(rule.settings) == 1:
            return rule.settings[0][0]
        (first, share), (second, _) = rule.settings
        return first if self.rng.uniform(0, 100) < share else second

    # -- resources ------------------------------------------------------------------------

    def create_shared_key(self, friendly_name: str = "") -> SharedKey:
        key = SharedKey(
            new_id("webhooks_sharedkey_"), _text(friendly_name, "friendlyName", 255),
            os.urandom(32).hex(), self.now(),
        )  # fmt: skip
        with self._lock:
            self.shared_keys[key.id] = key
        return key

    def create_setting(self, payload: dict[str, Any]) -> Setting:
        auth = payload.get("auth")
        if not isinstance(auth, dict) or str(auth.get("source", "")).upper() not in (
            "INLINE",
            "REFERENCE",
        ):
            raise invalid("auth is required: {source: INLINE, value: {...}} or REFERENCE")
        signature = payload.get("signature")
        if signature is not None and not isinstance(signature, dict):
            raise invalid("signature must be an object")
        setting = Setting(
            new_id("webhooks_setting_"),
            _text(payload.get("friendlyName"), "friendlyName", 255),
            _text(payload.get("description"), "description", 1024),
            dict(auth),
            dict(signature) if signature is not None else None,
            self.now(),
        )
        key_id = setting.shared_key_id
        if signature is not None and str(signature.get("type", "")).lower() != "none":
            algorithm = str(signature.get("algorithm", ""))
            if algorithm.upper() not in ALGORITHMS:
                raise invalid(f"signature.algorithm must be one of {', '.join(ALGORITHMS)}")
            with self._lock:
                if key_id is None or key_id not in self.shared_keys:
                    raise invalid(f"signature.sharedKeyId {key_id!r} is not a SharedKey")
        with self._lock:
            self.settings[setting.id] = setting
        return setting

    def create_rule(self, payload: dict[str, Any]) -> SigningRule:
        match_type = str(payload.get("matchType", ""))
        if match_type not in MATCH_TYPES:
            raise invalid(f"matchType must be one of {', '.join(MATCH_TYPES)}")
        pattern = ""
        if match_type == "EXACT_MATCH":
            pattern = str(payload.get("value") or "")
            if not is_url(pattern) or pattern.endswith("/") or len(pattern) > 2048:
                raise invalid("value must be one URL, without a trailing slash")
        elif match_type == "PREFIX_MATCH":
            pattern = str(payload.get("prefix") or "")
            if not is_url(pattern) or not pattern.endswith("/") or len(pattern) > 2048:
                raise invalid("prefix must be a URL ending with '/'")
        references = payload.get("settings")
        if not isinstance(references, list) or not 1 <= len(references) <= 2:
            raise invalid("settings must list one or two {settingId, percentage}")
        settings: list[tuple[str, int]] = []
        for reference in references:
            if not isinstance(reference, dict):
                raise invalid("each of settings must be {settingId, percentage}")
            setting_id, share = reference.get("settingId"), reference.get("percentage", 100)
            if not isinstance(share, int) or isinstance(share, bool) or not 0 <= share <= 100:
                raise invalid("percentage must be a whole number from 0 to 100")
            settings.append((str(setting_id), share))
        if sum(share for _, share in settings) != 100:
            raise invalid("the percentages of settings must sum to 100")
        rule = SigningRule(
            new_id("webhooks_rule_"), match_type, pattern, settings,
            _text(payload.get("friendlyName"), "friendlyName", 255),
            _text(payload.get("description"), "description", 1024), self.now(),
        )  # fmt: skip
        with self._lock:
            for setting_id, _ in settings:
                setting = self.settings.get(setting_id)
                if setting is None:
                    raise invalid(f"settingId {setting_id!r} is not a Setting")
                if match_type == "DEFAULT" and setting.basic is not None:
                    raise ProblemError(59202, "Basic auth is not allowed on the DEFAULT rule", 400)
            for other in self.rules.values():
                if (other.match_type, other.pattern) == (match_type, pattern):
                    raise ProblemError(59103, f"a {match_type} rule for this exists", 409)
            self.rules[rule.id] = rule
        return rule

    def delete(self, kind: str, id: str) -> None:
        """Delete a SharedKey, Setting or Rule; one still referenced is 59100."""
        with self._lock:
            table: dict[str, Any] = getattr(self, kind)
            if id not in table:
                raise ProblemError(20404, f"{id} was not found", 404)
            if kind == "shared_keys" and any(s.shared_key_id == id for s in self.settings.values()):
                raise ProblemError(59100, f"{id} is used by a Setting", 409)
            if kind == "settings" and any(
                s == id for r in self.rules.values() for s, _ in r.settings
            ):
                raise ProblemError(59100, f"{id} is used by a Rule", 409)
            del table[id]

    def get(self, kind: str, id: str) -> Any:
        with self._lock:
            found = getattr(self, kind).get(id)
        if found is None:
            raise ProblemError(20404, f"{id} was not found", 404)
        return found

    def reset(self) -> None:
        with self._lock:
            self.shared_keys.clear()
            self.settings.clear()
            self.rules.clear()


def _text(value: object, name: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise invalid(f"{name} must be a string of at most {limit} characters")
    return value
