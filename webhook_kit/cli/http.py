"""The one HTTP client of the commands that talk to a server (``simulate``, ``emulator``).

A server that answers, even with an error status, gives an `HttpAnswer`; one that cannot be
reached, or does not speak HTTP, is one ``error:`` line.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from .common import check_url, fail


@dataclass(frozen=True)
class HttpAnswer:
    """What the server answered."""

    status: int
    reason: str
    body: bytes
    content_type: str


def post(
    url: str,
    data: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    server: str,
    origin: str,
    hint: str = "",
) -> HttpAnswer:
    """POST ``data``: ``server`` names who cannot be reached, ``origin`` who did not answer
    HTTP and ``hint`` what that may mean."""
    request = urllib.request.Request(url, data=data, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpAnswer(
                response.status,
                response.reason,
                response.read(),
                response.headers.get("Content-Type", ""),
            )
    except urllib.error.HTTPError as error:
        return HttpAnswer(
            error.code, error.reason, error.read(), error.headers.get("Content-Type", "")
        )
    except (urllib.error.URLError, OSError) as error:
        fail(f"cannot reach {server}: {getattr(error, 'reason', error)}")
    except (http.client.HTTPException, ValueError) as error:
        fail(f"no HTTP answer from {origin}: {f'{hint} ({error!r})' if hint else repr(error)}")


def control(
    base: str, path: str, fields: Sequence[tuple[str, str]], account_sid: str, auth_token: str
) -> dict[str, Any]:
    """POST to the emulator's control API and decode its JSON answer."""
    check_url(base, "http://127.0.0.1:8010")
    credentials = b64encode(f"{account_sid}:{auth_token}".encode()).decode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": f"Basic {credentials}",
    }
    answer = post(
        base.rstrip("/") + path,
        urlencode(list(fields)).encode(),
        headers,
        timeout=60,
        server=f"the emulator at {base}",
        origin=base,
        hint="is it the emulator?",
    )
    if not 200 <= answer.status < 300:  # what urllib calls an HTTPError
        try:
            message = json.loads(answer.body).get("message", answer.reason)
        except ValueError:
            message = answer.reason
        hint = " (check --account-sid and --auth-token)" if answer.status == 401 else ""
        fail(f"the emulator answered {answer.status}: {message}{hint}")
    try:
        decoded: dict[str, Any] = json.loads(answer.body)
    except ValueError:
        fail(f"the server at {base} did not answer JSON: is it the emulator?")
    return decoded
