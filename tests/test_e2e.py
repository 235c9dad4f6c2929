"""End to end: real HTTP to ``gunicorn wsgi:app`` started as a subprocess on loopback."""

from __future__ import annotations

import http.client
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import require_redis
from pgcluster import PrivateCluster
from server import ROOT, TOKEN, Gunicorn, Reply

from webhook_kit import MessageStatus
from webhook_kit.stores import open_store
from webhook_kit.testing import inbound_sms, new_sid, status_callback
from webhook_kit.twiml import parse

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    db = tmp_path_factory.mktemp("e2e") / "kit.db"
    with Gunicorn({"WEBHOOK_KIT_STORE": f"sqlite:///{db}"}, workers=2) as running:
        running.db = db  # type: ignore[attr-defined]
        yield running


def test_healthz(server: Gunicorn) -> None:
    reply = server.get("/healthz")
    assert reply.status == 200 and reply.text == "ok\n"


def test_signed_inbound_gets_twiml(server: Gunicorn) -> None:
    reply = server.post_signed("/twilio/messages", inbound_sms("hello there"))
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/xml")
    assert reply.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?><Response>')
    assert [str(m.body) for m in parse(reply.body).messages] == ["Echo: hello there"]


def test_unicode_round_trip(server: Gunicorn) -> None:
    reply = server.post_signed("/twilio/messages", inbound_sms("héllo 👋 <&>"))
    assert [str(m.body) for m in parse(reply.body).messages] == ["Echo: héllo 👋 <&>"]


def test_retry_gets_the_same_answer(server: Gunicorn) -> None:
    fields = inbound_sms("once")
    first = server.post_signed("/twilio/messages", fields)
    second = server.post_signed("/twilio/messages", fields)
    assert first.status == second.status == 200 and first.body == second.body


def test_status_callback_gets_empty_response(server: Gunicorn) -> None:
    reply = server.post_signed("/twilio/status", status_callback(status="sent"))
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/xml")
    assert parse(reply.body).verbs == ()


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [
        ("/twilio/messages", b"MessageSid=SM1", {"Content-Type": "text/plain"}, 400),
        ("/twilio/messages", b"\xff\xfe", {}, 400),
        ("/twilio/messages", b"Body=%FF", {}, 400),
        ("/twilio/messages", b"From=%2B1&To=%2B2", {}, 400),
        ("/twilio/messages", b"MessageSid=SM1&To=%2B2", {}, 400),
        ("/twilio/messages", b"MessageSid=SM1&From=%2B1", {}, 400),
        ("/twilio/status", b"MessageStatus=sent", {}, 400),
        ("/twilio/status", b"MessageSid=SM1", {}, 400),
        ("/twilio/messages", b"x" * (64 * 1024 + 1), {}, 413),
        ("/twilio/messages", b"{not json", {"Content-Type": "application/json"}, 400),
    ],
)
def test_bad_input_gets_a_one_line_4xx(
    server: Gunicorn, path: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    from urllib.parse import parse_qsl

    from webhook_kit.signature import compute_signature

    all_headers = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        pairs = []
    all_headers["X-Twilio-Signature"] = compute_signature(server.base + path, pairs, TOKEN)
    reply = server.request("POST", path, body, all_headers)
    assert reply.status == status
    assert reply.headers["Content-Type"].startswith("text/plain")
    assert reply.text.count("\n") == 1 and "Traceback" not in reply.text


def test_missing_and_wrong_signatures_are_403(server: Gunicorn) -> None:
    from urllib.parse import urlencode

    body = urlencode(inbound_sms()).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    missing = server.request("POST", "/twilio/messages", body, headers)
    wrong = server.request(
        "POST", "/twilio/messages", body, {**headers, "X-Twilio-Signature": "AAAA"}
    )
    assert missing.status == wrong.status == 403
    assert missing.text == "missing X-Twilio-Signature header: request not from Twilio\n"
    assert wrong.text == "invalid signature: request not from Twilio\n"


def test_every_order_of_callbacks_ends_delivered(server: Gunicorn) -> None:
    store = open_store(f"sqlite:///{server.db}")  # type: ignore[attr-defined]
    statuses = ["queued", "sent", "delivered", "sent"]  # the second "sent" is a duplicate
    for order in set(itertools.permutations(statuses)):
        sid = new_sid()
        for status in order:
            reply = server.post_signed("/twilio/status", status_callback(sid, status))
            assert reply.status == 200
        record = store.get_message(sid)
        assert record is not None, order
        assert record.status is MessageStatus.DELIVERED, order
        assert sorted(e.status.value for e in record.history) == ["delivered", "queued", "sent"]
    store.close()


# -- signatures behind proxies ------------------------------------------------------------

PUBLIC = "https://public.example.com/twilio/messages?x=a%20b"
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "public.example.com"}


@pytest.mark.parametrize(("hops", "status"), [("1", 200), ("0", 403)])
def test_proxy_hops(hops: str, status: int) -> None:
    with Gunicorn({"WEBHOOK_KIT_STORE": "memory://", "WEBHOOK_KIT_PROXY_HOPS": hops}) as server:
        reply = server.post_signed(
            "/twilio/messages", inbound_sms("via proxy"), signed_url=PUBLIC, headers=FORWARDED
        )
        assert reply.status == status
        if status == 403:
            assert "WEBHOOK_KIT_PROXY_HOPS" in server.stderr()


def test_public_url_without_forwarded_headers() -> None:
    env = {"WEBHOOK_KIT_STORE": "memory://", "WEBHOOK_KIT_PUBLIC_URL": "https://public.example.com"}
    with Gunicorn(env) as server:
        reply = server.post_signed("/twilio/messages", inbound_sms("direct"), signed_url=PUBLIC)
        assert reply.status == 200
        assert [str(m.body) for m in parse(reply.body).messages] == ["Echo: direct"]


# -- start-up ------------------------------------------------------------------------------


def test_refuses_to_start_without_a_token() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TWILIO_AUTH_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        check=False,
        cwd=ROOT,
        env={**env, "WEBHOOK_KIT_STORE": "memory://"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "set TWILIO_AUTH_TOKEN" in result.stderr


def test_validation_off_must_be_explicit_and_is_loud() -> None:
    with Gunicorn(
        {"TWILIO_AUTH_TOKEN": "", "WEBHOOK_KIT_VALIDATE": "off", "WEBHOOK_KIT_STORE": "memory://"}
    ) as server:
        reply = server.request(
            "POST",
            "/twilio/messages",
            b"MessageSid=SM" + b"1" * 32 + b"&From=%2B1&To=%2B2&Body=unsigned",
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert reply.status == 200
        assert "NOT verified" in server.stderr()


# -- delivery guarantees across processes and hosts ----------------------------------------


@pytest.mark.parametrize("backend", ["redis", "postgres"])
def test_two_hosts_sharing_a_store_run_each_handler_once(
    backend: str, request: pytest.FixtureRequest
) -> None:
    import redis

    url = request.getfixturevalue(f"{backend}_url")
    require_redis()  # the bot counts its handler runs in Redis, apart from the store under test
    prefix = f"wkcount-{uuid.uuid4().hex[:12]}"
    env = {
        "WEBHOOK_KIT_STORE": url,
        "WEBHOOK_KIT_HANDLERS": "apps.counting_bot",
        "COUNTER_PREFIX": prefix,
        "COUNTER_DELAY": "0.01",
    }
    with Gunicorn(env, workers=2) as host_a, Gunicorn(env, workers=2) as host_b:
        messages = [inbound_sms(f"message {i}") for i in range(100)]

        def deliver(fields: dict[str, str], host: Gunicorn) -> tuple[int, bytes]:
            reply = host.post_signed("/twilio/messages", fields)
            return reply.status, reply.body

        with ThreadPoolExecutor(max_workers=16) as pool:
            futures = [
                (fields, pool.submit(deliver, fields, host))
                for fields in messages
                for host in (host_a, host_b)
            ]
            answers: dict[str, list[tuple[int, bytes]]] = {}
            for fields, future in futures:
                answers.setdefault(fields["MessageSid"], []).append(future.result())
    counter = redis.Redis(host="127.0.0.1", port=6379)
    runs = counter.hgetall(f"{prefix}:runs")
    counter.delete(f"{prefix}:runs")
    counts = {sid.decode(): int(n) for sid, n in runs.items()}
    assert len(counts) == 100 and set(counts.values()) == {1}
    assert sum(counts.values()) == 100
    for sid, pair in answers.items():
        ok = [body for status, body in pair if status == 200]
        assert ok and all(body == ok[0] for body in ok), sid  # the loser replays the answer
        assert all(status in (200, 409) for status, _ in pair)


def test_threaded_workers_run_each_handler_once_and_a_lingering_client_holds_up_nobody(
    tmp_path: Path,
) -> None:
    """The README's production setting: ``--worker-class gthread``. A client that keeps its
    connection open after its answer (a distant Twilio, whose close comes a round trip later)
    holds no worker: the next request is answered meanwhile, where a sync worker waits up to
    2 s for that close. Threads sharing one SQLite file run each message's handler once."""
    import redis

    require_redis()  # the bot counts its handler runs in Redis
    prefix = f"wkcount-{uuid.uuid4().hex[:12]}"
    env = {
        "WEBHOOK_KIT_STORE": f"sqlite:///{tmp_path / 'kit.db'}",
        "WEBHOOK_KIT_HANDLERS": "apps.counting_bot",
        "COUNTER_PREFIX": prefix,
        "COUNTER_DELAY": "0.01",
    }
    threaded = ["--worker-class", "gthread", "--threads", "4"]
    with Gunicorn(env, workers=1, extra=threaded) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as lingering:
            lingering.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += lingering.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200")
            # Answered while the first client still holds its connection: well within the
            # 2 s a sync worker would have waited for that client to close.
            other = http.client.HTTPConnection("127.0.0.1", server.port, timeout=1.5)
            other.request("GET", "/healthz")
            assert other.getresponse().status == 200
            other.close()
        messages = [inbound_sms(f"message {i}") for i in range(100)]

        def deliver(fields: dict[str, str]) -> Reply:
            return server.post_signed("/twilio/messages", fields)

        with ThreadPoolExecutor(max_workers=16) as pool:
            replies = list(pool.map(deliver, messages * 2))
    counter = redis.Redis(host="127.0.0.1", port=6379)
    runs = counter.hgetall(f"{prefix}:runs")
    counter.delete(f"{prefix}:runs")
    assert sorted(int(n) for n in runs.values()) == [1] * 100
    for first, second in zip(replies[:100], replies[100:], strict=True):
        ok = [reply.body for reply in (first, second) if reply.status == 200]
        assert ok and all(body == ok[0] for body in ok)  # the loser replays the answer
        assert {first.status, second.status} <= {200, 409}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_killed_worker_loses_no_acknowledged_callback(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'crash.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    acknowledged: list[str] = []
    stop = threading.Event()
    with Gunicorn({"WEBHOOK_KIT_STORE": url}, workers=2) as server:

        def stream() -> None:
            while not stop.is_set():
                sid = new_sid()
                try:
                    reply = server.post_signed("/twilio/status", status_callback(sid, "sent"))
                except (OSError, http.client.HTTPException):
                    continue  # the connection died with the worker: not acknowledged
                if reply.status == 200:
                    acknowledged.append(sid)

        senders = [threading.Thread(target=stream) for _ in range(4)]
        for sender in senders:
            sender.start()
        time.sleep(1.0)
        victim = server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        time.sleep(1.5)  # gunicorn replaces the worker; the stream goes on
        stop.set()
        for sender in senders:
            sender.join(timeout=30)
        assert victim not in server.worker_pids()
    store = open_store(url)
    missing = [sid for sid in acknowledged if store.get_message(sid) is None]
    store.close()
    assert len(acknowledged) > 100
    assert missing == []


RECOVERED = 2.0  # seconds of sending answered 200 in a row: every worker is back, 4x pool_timeout


def _recovered_for(replies: list[tuple[float, int, str]]) -> float:
    """For how long, in sending time, the latest requests were all answered 200.

    Ordered by sending time, not by answer: a worker whose pool still waits to reconnect
    answers 503 only after pool_timeout, when later requests to the other worker were already
    answered 200. A run of successes longer than that shows both workers are back.
    """
    ordered = sorted(replies)
    failures = [i for i, (_, status, _) in enumerate(ordered) if status != 200]
    streak = ordered[failures[-1] + 1 :] if failures else ordered
    return streak[-1][0] - streak[0][0] if streak else 0.0


def test_database_restart_gives_503s_then_recovers_without_a_worker_restart(
    private_postgres: PrivateCluster,
) -> None:
    url = f"{private_postgres.url}?pool_timeout=0.5"
    replies: list[tuple[float, int, str]] = []  # (time sent, status, MessageSid)
    stop = threading.Event()
    with Gunicorn({"WEBHOOK_KIT_STORE": url}, workers=2) as server:
        workers = sorted(server.worker_pids())

        def stream() -> None:
            while not stop.is_set():
                sid = new_sid()
                sent = time.monotonic()
                reply = server.post_signed("/twilio/status", status_callback(sid, "sent"))
                replies.append((sent, reply.status, sid))
                assert "Traceback" not in reply.text

        senders = [threading.Thread(target=stream) for _ in range(3)]
        for sender in senders:
            sender.start()
        time.sleep(1.0)
        private_postgres.stop()
        down = time.monotonic()
        time.sleep(2.0)
        private_postgres.start()
        up = time.monotonic()
        deadline = up + 30
        while time.monotonic() < deadline and _recovered_for(replies) < RECOVERED:
            time.sleep(0.2)
        stop.set()
        for sender in senders:
            sender.join(timeout=30)
        assert sorted(server.worker_pids()) == workers  # recovered with the same workers
    assert {status for _, status, _ in replies} == {200, 503}
    assert any(status == 503 for at, status, _ in replies if down < at < up)
    assert _recovered_for(replies) >= RECOVERED  # both workers answer again, to the end
    store = open_store(private_postgres.url)
    acknowledged = [sid for _, status, sid in replies if status == 200]
    assert [sid for sid in acknowledged if store.get_message(sid) is None] == []
    store.close()


def _chunked(server: Gunicorn, body: bytes, signature: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        chunks = (body[i : i + 100] for i in range(0, len(body), 100))
        connection.request(
            "POST",
            "/twilio/messages",
            body=chunks,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
            encode_chunked=True,
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_chunked_bodies_are_read_and_limited(server: Gunicorn) -> None:
    from urllib.parse import urlencode

    from webhook_kit.signature import compute_signature

    fields = inbound_sms("chunked")
    signature = compute_signature(server.base + "/twilio/messages", fields, TOKEN)
    status, body = _chunked(server, urlencode(fields).encode(), signature)
    assert status == 200 and b"Echo: chunked" in body
    status, body = _chunked(server, b"Body=" + b"x" * (70 * 1024), signature)
    assert status == 413 and body.endswith(b"limit\n")


def test_the_default_echo_bot_answers_a_maximal_message(server: Gunicorn) -> None:
    """1,600 characters echoed with their prefix are 1,606: two <Message> verbs, not a 500."""
    body = ("lorem ipsum " * 134)[:1600]
    reply = server.post_signed("/twilio/messages", inbound_sms(body))
    assert reply.status == 200
    texts = [str(message.body) for message in parse(reply.body).messages]
    assert len(texts) == 2 and all(len(text) <= 1600 for text in texts)
    assert " ".join(texts) == f"Echo: {body}".strip()
