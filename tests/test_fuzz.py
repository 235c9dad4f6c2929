"""Hostile input over real HTTP: thousands of generated requests, never a 5xx or a traceback.

Every request is built as raw bytes and sent on its own socket, so the test can send what
no HTTP client would: chunked bodies cut short, bad chunk sizes, hosts that are no valid
authority, JSON nested thousands deep. Good requests are mixed in and must still get their
answer. The run is bounded in requests and in time, and reproducible from its seed.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from server import TOKEN, Gunicorn

from webhook_kit.signature import body_sha256, compute_signature
from webhook_kit.testing import fallback_request, inbound_sms, status_callback
from webhook_kit.twiml import MAX_BODY_LENGTH, parse

pytestmark = pytest.mark.timeout(240)

SEED = 1717
REQUESTS = 8000
TIME_LIMIT = 45.0
HOST = "webhooks.example.com"
ROUTES = ("/twilio/messages", "/twilio/fallback", "/twilio/status")
STATUSES = ("queued", "sent", "delivered", "undelivered", "failed", "read", "warp_speed")
ALPHABET = "abc XYZ 019 <>&'\" é ß ж 中 👋 \t\n\r\x00\x07\x1b\ufffe\u2028 %+=&;"
MAX_BODY = 64 * 1024


@dataclass
class Request:
    kind: str
    raw: bytes
    #: What a correct server answers (None: anything below 500).
    expect: int | None = None


def form_request(
    path: str,
    pairs: list[tuple[str, str]],
    *,
    sign: bool = True,
    headers: dict[str, str] | None = None,
    signed_pairs: list[tuple[str, str]] | None = None,
) -> bytes:
    body = urlencode(pairs).encode()
    head = {"Host": HOST, "Content-Type": "application/x-www-form-urlencoded"}
    if sign:
        signed = pairs if signed_pairs is None else signed_pairs
        head["X-Twilio-Signature"] = compute_signature(f"http://{HOST}{path}", signed, TOKEN)
    head.update(headers or {})
    return http_request("POST", path, head, body)


def http_request(
    method: str, target: str, headers: dict[str, str], body: bytes = b"", *, length: bool = True
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + body


def text(rng: random.Random, longest: int) -> str:
    size = rng.choice((0, 1, 5, 40, 160, 161, 700, longest, longest - 1))
    return "".join(rng.choice(ALPHABET) for _ in range(min(size, longest)))


def good_inbound(rng: random.Random) -> Request:
    path = rng.choice(ROUTES[:2])
    body = text(rng, MAX_BODY_LENGTH)
    fields = fallback_request(body) if path.endswith("fallback") else inbound_sms(body)
    return Request("good inbound", form_request(path, list(fields.items())), 200)


def good_status(rng: random.Random) -> Request:
    status = rng.choice(STATUSES)
    error = rng.choice((None, None, 30003, 30008, 0))
    fields = status_callback(status=status, error_code=error)
    if status == "read" and rng.random() < 0.5:
        fields["EventType"] = "READ"
    return Request("good status", form_request("/twilio/status", list(fields.items())), 200)


def resplit(rng: random.Random) -> Request:
    """The same signed string, split at another boundary: the signature still matches."""
    if rng.random() < 0.5:
        fields = inbound_sms("re-split")
        service = fields.pop("MessagingServiceSid")
        fields["MessageSid"] += "MessagingServiceSid" + service
        fields["SmsMessageSid"] = fields["SmsSid"] = fields["MessageSid"]
        path = "/twilio/messages"
    else:
        fields = status_callback(status="delivered", error_code=30003, ErrorMessage="x")
        nxt = rng.choice(("ErrorMessage", "RawDlrDoneDate"))
        if nxt == "ErrorMessage":
            fields["ErrorCode"] += "ErrorMessage" + fields.pop("ErrorMessage")
        else:
            fields["MessageStatus"] += "RawDlrDoneDate" + fields.pop("RawDlrDoneDate")
        path = "/twilio/status"
    return Request("re-split", form_request(path, list(fields.items())), 400)


def mutated(rng: random.Random) -> Request:
    """A correctly signed request whose fields an attacker chose: any 2xx or 4xx."""
    path = rng.choice(ROUTES)
    base = status_callback() if path.endswith("status") else inbound_sms("x")
    pairs = list(base.items())
    for _ in range(rng.randint(1, 4)):
        index = rng.randrange(len(pairs))
        name, _value = pairs[index]
        choice = rng.random()
        if choice < 0.3:
            pairs[index] = (name, text(rng, 300))
        elif choice < 0.5:
            junk = ("", "SM", "SM" + "g" * 32, "ZZ" + "0" * 32, "9" * 5000)
            pairs[index] = (name, rng.choice(junk))
        elif choice < 0.7:
            del pairs[index]
        elif choice < 0.85:
            pairs.append((name, text(rng, 40)))
        else:
            pairs.append((text(rng, 20), text(rng, 40)))
    return Request("signed junk", form_request(path, pairs))


def forged(rng: random.Random) -> Request:
    path = rng.choice(ROUTES)
    fields = list(inbound_sms("forged").items())
    headers = {"X-Twilio-Signature": rng.choice(("", "x", "AAAA" * 7, "é" * 3))}
    signed = [(name, value + "!") for name, value in fields]
    raw = form_request(path, fields, headers=headers, signed_pairs=signed, sign=False)
    return Request("forged", raw, 403)


def chunked(rng: random.Random) -> Request:
    path = rng.choice(ROUTES)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    ).encode()
    body = urlencode(inbound_sms("chunked")).encode()
    shape = rng.choice(("short", "size", "nocrlf", "huge", "good"))
    if shape == "short":
        tail = f"{len(body) + 50:x}\r\n".encode() + body
    elif shape == "size":
        tail = b"zz\r\n" + body + b"\r\n0\r\n\r\n"
    elif shape == "nocrlf":
        tail = f"{len(body):x}\r\n".encode() + body + b"0\r\n\r\n"
    elif shape == "huge":
        tail = b"7fffffff\r\n" + body[:100]
    else:  # a correct chunked body, unsigned
        tail = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    return Request(f"chunked {shape}", head + tail, 403 if shape == "good" else None)


def bad_host(rng: random.Random) -> Request:
    value = rng.choice(("[", "[::1", "::1]", "a b", "[::1]:x", "ex ample:80", "é.com", "", "a,b"))
    header = rng.choice(("Host", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port"))
    headers = {"Host": HOST, "Content-Type": "application/x-www-form-urlencoded"}
    headers[header] = value
    body = urlencode(inbound_sms("host")).encode()
    return Request(header, http_request("POST", rng.choice(ROUTES), headers, body))


def json_body(rng: random.Random) -> Request:
    depth = rng.choice((2, 1000, 5000, 50000))
    shape = rng.choice(("deep", "surrogate", "object", "scalar", "broken"))
    if shape == "deep":
        body = b'{"MessageSid": ' + b"[" * depth + b"]" * depth + b"}"
    elif shape == "surrogate":
        body = rng.choice((b'{"Body": "\\ud800"}', b'{"\\udfff": "x"}', b'{"a": ["\\ud800"]}'))
    elif shape == "object":
        fields = dict(inbound_sms(text(rng, 200)))
        fields["Nested"] = {"a": [1, 2.5, None, True]}  # type: ignore[assignment]
        body = json.dumps(fields).encode()
    elif shape == "scalar":
        body = rng.choice((b"1", b'"x"', b"null", b"[]", b"1e999999"))
    else:
        body = b'{"a": ' + bytes(rng.randrange(256) for _ in range(20))
    path = rng.choice(ROUTES) + f"?bodySHA256={body_sha256(body)}"
    headers = {
        "Host": HOST,
        "Content-Type": "application/json",
        "X-Twilio-Signature": compute_signature(f"http://{HOST}{path}", None, TOKEN),
    }
    expect = 200 if shape == "object" and not path.startswith("/twilio/status") else None
    return Request(f"json {shape}", http_request("POST", path, headers, body), expect)


def odd_form(rng: random.Random) -> Request:
    body = rng.choice(
        (
            b"%",
            b"%zz=1",
            b"Body=%ff%fe",
            b"\xff\xfe\x00",
            b"=&&==&",
            b"&".join([b"f=1"] * 1001),
            b"MessageSid=" + b"A" * 70000,
            bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))),
        )
    )
    content_type = rng.choice(
        ("application/x-www-form-urlencoded", "text/plain", "", "multipart/form-data", "a/b;;")
    )
    headers = {"Host": HOST, "X-Twilio-Signature": "x"}
    if content_type:
        headers["Content-Type"] = content_type
    expect = 413 if len(body) > MAX_BODY else None
    return Request("odd form", http_request("POST", rng.choice(ROUTES), headers, body), expect)


def odd_method(rng: random.Random) -> Request:
    method = rng.choice(("GET", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"))
    query = urlencode(inbound_sms("get")) if rng.random() < 0.5 else "%zz=%ff&a"
    target = rng.choice((*ROUTES, "/twilio/", "/twilio/messages/", "/twilio/%ff", "/healthz"))
    raw = http_request(method, f"{target}?{query}", {"Host": HOST})
    return Request(f"{method}", raw)


def odd_length(rng: random.Random) -> Request:
    body = urlencode(inbound_sms("length")).encode()
    value = rng.choice(("-1", "abc", "1e3", str(len(body) + 30), " 5", "99999999999"))
    head = (
        f"POST {rng.choice(ROUTES)} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {value}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    ).encode()
    return Request(f"Content-Length {value}", head + body)


GENERATORS: list[tuple[Callable[[random.Random], Request], int]] = [
    (good_inbound, 6),
    (good_status, 5),
    (resplit, 2),
    (mutated, 6),
    (forged, 2),
    (chunked, 3),
    (bad_host, 2),
    (json_body, 3),
    (odd_form, 3),
    (odd_method, 2),
    (odd_length, 2),
]


def send(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)  # a body cut short ends here, as a dropped client's
        except OSError:
            pass  # the server answered (and closed) before reading everything
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    db: Path = tmp_path_factory.mktemp("fuzz") / "kit.db"
    env = {
        "WEBHOOK_KIT_STORE": f"sqlite:///{db}",
        "WEBHOOK_KIT_HANDLERS": "apps.fuzz_bot",
        "WEBHOOK_KIT_PROXY_HOPS": "1",
    }
    with Gunicorn(env, workers=2) as running:
        yield running


def test_no_5xx_and_no_traceback_for_any_request(server: Gunicorn) -> None:
    rng = random.Random(SEED)
    functions = [function for function, weight in GENERATORS for _ in range(weight)]
    requests = [rng.choice(functions)(rng) for _ in range(REQUESTS)]
    duplicates = rng.sample(range(REQUESTS), REQUESTS // 20)
    requests += [requests[index] for index in duplicates]
    deadline = time.monotonic() + TIME_LIMIT
    problems: list[str] = []
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def run(request: Request) -> None:
        if time.monotonic() > deadline:
            return
        answer = send(server.port, request.raw)
        head, _, body = answer.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.") else 0
        problem = None
        if status >= 500 or b"Traceback" in answer:
            problem = f"{request.kind}: {head[:40]!r} {body[:200]!r}"
        elif request.expect is not None and status != request.expect:
            problem = f"{request.kind}: expected {request.expect}, got {status}: {body[:200]!r}"
        elif request.expect == 200 and not request.raw.startswith(b"POST /twilio/status"):
            parse(body)  # a good inbound message gets well-formed TwiML
        with lock:
            counts[request.kind] = counts.get(request.kind, 0) + 1
            if problem:
                problems.append(problem)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(run, requests))
    sent = sum(counts.values())
    log = server.stderr()
    assert not problems, "\n".join(problems[:20])
    assert sent >= 1000, f"only {sent} requests in {TIME_LIMIT} s: {counts}"
    assert "Traceback" not in log, log[log.index("Traceback") - 300 :][:3000]
    assert "Error handling request" not in log
