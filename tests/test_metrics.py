"""Prometheus metrics: counted by route and outcome in process, and summed over gunicorn workers."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from server import Gunicorn
from test_kit import client_for, echo_kit

from webhook_kit import InboundMessage, StatusCallback, WebhookKit
from webhook_kit.routing import handler_name
from webhook_kit.standalone import create_app
from webhook_kit.stores.memory import MemoryStore
from webhook_kit.testing import inbound_sms, status_callback

pytestmark = pytest.mark.timeout(120)

Labels = tuple[tuple[str, str], ...]


def samples(text: str) -> dict[tuple[str, Labels], float]:
    """Every sample of a scrape, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def webhooks(route: str, outcome: str, reason: str = "") -> tuple[str, Labels]:
    labels = {"route": route, "outcome": outcome, "reason": reason}
    return "webhook_kit_webhooks_total", tuple(sorted(labels.items()))


def in_process() -> dict[tuple[str, Labels], float]:
    from webhook_kit.metrics import exposition

    return samples(exposition().decode())


def delta(
    before: dict[tuple[str, Labels], float], after: dict[tuple[str, Labels], float]
) -> dict[tuple[str, Labels], float]:
    return {
        key: value - before.get(key, 0.0)
        for key, value in after.items()
        if key[0].startswith("webhook_kit_")
        and value != before.get(key, 0.0)
        and not key[0].endswith(("_created", "_bucket", "_sum"))
    }


def test_off_by_default_the_routes_are_not_wrapped() -> None:
    kit = echo_kit()
    client = client_for(kit)
    pipeline = kit.pipeline(client.application)
    assert pipeline.metrics is None
    assert pipeline.routes["messages"][0] == pipeline.messages


def test_each_answer_is_counted_by_route_outcome_and_reason() -> None:
    store = MemoryStore()
    kit = WebhookKit(store=store)

    @kit.on_message()
    def reply(message: InboundMessage) -> str:
        if message.body == "boom":
            raise RuntimeError("handler bug")
        return "ok"

    @kit.on_status()
    def track(update: StatusCallback) -> None:
        pass

    client = client_for(kit, WEBHOOK_KIT_METRICS="1", WEBHOOK_KIT_CLAIM_WAIT=0)
    before = in_process()
    good = inbound_sms("hi")
    assert client.send("messages", good).status_code == 200
    assert client.send("messages", good).status_code == 200  # replayed
    assert client.send("messages", inbound_sms("boom")).status_code == 500
    assert client.post("/twilio/messages", data={"Body": "x"}).status_code == 403
    assert client.send("messages", {"Body": "no sid"}).status_code == 400
    too_large = client.send("messages", inbound_sms("x" * 70_000))
    assert too_large.status_code == 413
    held = inbound_sms("held")
    store.claim(f"message:{held['MessageSid']}", 30)  # a live delivery of this process
    assert client.send("messages", held).status_code == 409
    callback = status_callback(status="undelivered", error_code=30003)
    assert client.send("status", callback).status_code == 200
    assert client.send("status", callback).status_code == 200  # replayed
    changes = delta(before, in_process())
    handler = {"kind": "message", "handler": handler_name(reply)}
    assert changes == {
        webhooks("messages", "handled"): 1,
        webhooks("messages", "replayed"): 1,
        webhooks("messages", "failed"): 1,
        webhooks("messages", "rejected", "signature"): 1,
        webhooks("messages", "rejected", "bad_request"): 1,
        webhooks("messages", "rejected", "too_large"): 1,
        webhooks("messages", "rejected", "in_flight"): 1,
        webhooks("status", "handled"): 1,
        webhooks("status", "replayed"): 1,
        ("webhook_kit_handler_seconds_count", tuple(sorted(handler.items()))): 1,
        (
            "webhook_kit_handler_seconds_count",
            (("handler", handler_name(track)), ("kind", "status")),
        ): 1,
        (
            "webhook_kit_ledger_transitions_total",
            (("error_code", "30003"), ("status", "undelivered")),
        ): 1,
    }


def test_a_store_that_is_down_is_counted_as_store_down() -> None:
    client = client_for(
        echo_kit(),
        WEBHOOK_KIT_METRICS="1",
        WEBHOOK_KIT_STORE="redis://127.0.0.1:1/0",
        WEBHOOK_KIT_STORE_TIMEOUT=0.2,
    )
    before = in_process()
    assert client.send("status", status_callback()).status_code == 503
    assert delta(before, in_process()) == {webhooks("status", "rejected", "store_down"): 1}


def test_sends_are_counted_by_outcome_and_error_code() -> None:
    from test_sending import CUSTOMER, SENDER, Served

    from webhook_kit.emulator import Emulator
    from webhook_kit.errors import InvalidToError, UnsubscribedRecipientError

    with Emulator(clock="manual") as emulator:
        served = Served(emulator, WEBHOOK_KIT_METRICS="1").start()
        try:
            with served.app.app_context():
                served.kit.opt_outs.opt_out("+15005550006", SENDER)
            before = in_process()
            served.send(CUSTOMER, "hi", from_=SENDER)
            with pytest.raises(InvalidToError):
                served.send("+15005550001", "hi", from_=SENDER)
            with pytest.raises(UnsubscribedRecipientError):  # refused before any API call
                served.send("+15005550006", "hi", from_=SENDER)
            changes = delta(before, in_process())
        finally:
            served.stop()
    assert changes == {
        ("webhook_kit_sends_total", (("error_code", ""), ("outcome", "sent"))): 1,
        ("webhook_kit_sends_total", (("error_code", "21211"), ("outcome", "refused"))): 1,
        ("webhook_kit_sends_total", (("error_code", "21610"), ("outcome", "refused"))): 1,
    }


def test_background_jobs_are_counted_by_kind_and_outcome() -> None:
    from test_jobs import manual, run_all

    kit = WebhookKit()
    runs: list[str] = []

    @kit.on_status("undelivered", background=True)
    def flaky(update: StatusCallback) -> None:
        runs.append(update.message_sid)
        if len(runs) == 1:
            raise RuntimeError("first run fails")

    app, client, _ = manual(kit, WEBHOOK_KIT_METRICS="1")
    before = in_process()
    assert client.send_status("SM" + "8" * 32, "undelivered", error_code=30003).status_code == 200
    assert run_all(kit, app) == 2  # the failure is retried at once (no backoff)
    job = (("kind", "status"),)
    assert {
        key: value for key, value in delta(before, in_process()).items() if "jobs" in key[0]
    } == {
        ("webhook_kit_jobs_total", (*job, ("outcome", "retried"))): 1,
        ("webhook_kit_jobs_total", (*job, ("outcome", "done"))): 1,
    }


def test_standalone_metrics_route_and_its_token() -> None:
    env = {"WEBHOOK_KIT_VALIDATE": "off", "WEBHOOK_KIT_STORE": "memory://"}
    app = create_app({**env, "WEBHOOK_KIT_METRICS": "1"})
    assert app.test_client().get("/metrics").status_code == 200
    assert create_app(env).test_client().get("/metrics").status_code == 404
    protected = create_app({**env, "WEBHOOK_KIT_METRICS": "1", "WEBHOOK_KIT_METRICS_TOKEN": "s3"})
    client = protected.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    scraped = client.get("/metrics", headers={"Authorization": "Bearer s3"})
    assert scraped.status_code == 200 and b"webhook_kit_webhooks_total" in scraped.data


def test_healthz_deep_reads_the_store() -> None:
    env = {"WEBHOOK_KIT_VALIDATE": "off", "WEBHOOK_KIT_STORE_TIMEOUT": "0.2"}
    down = create_app({**env, "WEBHOOK_KIT_STORE": "redis://127.0.0.1:1/0"}).test_client()
    assert down.get("/healthz").status_code == 200  # the process is up
    deep = down.get("/healthz?deep=1")
    assert deep.status_code == 503 and deep.data == b"store unavailable\n"
    up = create_app({**env, "WEBHOOK_KIT_STORE": "memory://"}).test_client()
    assert up.get("/healthz?deep=1").data == b"ok\n"


def test_a_scrape_after_a_mixed_run_under_three_workers_counts_what_was_sent(
    tmp_path: Path,
) -> None:
    env = {"WEBHOOK_KIT_STORE": f"sqlite:///{tmp_path}/kit.db", "WEBHOOK_KIT_METRICS": "1"}
    good = [inbound_sms(f"good {i}") for i in range(60)]
    callbacks = [status_callback(status="delivered") for _ in range(30)]
    with Gunicorn(env, workers=3) as server:
        sent: Counter[tuple[str, str, str]] = Counter()

        def post(
            route: str, fields: dict[str, str], expected: int, *, forged: bool = False
        ) -> None:
            path = f"/twilio/{route}"
            token = "not-the-token" if forged else "e2e-test-token"
            assert server.post_signed(path, fields, token=token).status == expected

        def malformed() -> None:
            headers = {"Content-Type": "text/plain", "X-Twilio-Signature": "x"}
            assert server.request("POST", "/twilio/messages", b"hello", headers).status == 400

        jobs = (
            [("messages", fields, 200, False) for fields in good]
            + [("messages", inbound_sms("forged"), 403, True) for _ in range(25)]
            + [("status", fields, 200, False) for fields in callbacks]
            + [("status", status_callback(), 403, True) for _ in range(5)]
        )
        with ThreadPoolExecutor(max_workers=6) as pool:
            for future in [pool.submit(post, *job[:3], forged=job[3]) for job in jobs]:
                future.result()
            for future in [pool.submit(malformed) for _ in range(15)]:
                future.result()
            duplicates = [("messages", fields, 200, False) for fields in good[:20]]
            duplicates += [("status", fields, 200, False) for fields in callbacks[:10]]
            for future in [pool.submit(post, *job[:3]) for job in duplicates]:
                future.result()
        sent.update(
            {
                ("messages", "handled", ""): 60,
                ("messages", "rejected", "signature"): 25,
                ("messages", "rejected", "bad_request"): 15,
                ("messages", "replayed", ""): 20,
                ("status", "handled", ""): 30,
                ("status", "rejected", "signature"): 5,
                ("status", "replayed", ""): 10,
            }
        )
        scrapes = [samples(server.get("/metrics").text) for _ in range(6)]  # several workers
        pids = server.worker_pids()
    assert len(pids) == 3
    for scraped in scrapes:
        counted = {
            (dict(labels)["route"], dict(labels)["outcome"], dict(labels)["reason"]): value
            for (name, labels), value in scraped.items()
            if name == "webhook_kit_webhooks_total" and value
        }
        assert counted == sent
        message_handler = (("handler", "echo"), ("kind", "message"))
        assert scraped["webhook_kit_handler_seconds_count", message_handler] == 60
        delivered = (("error_code", ""), ("status", "delivered"))
        assert scraped["webhook_kit_ledger_transitions_total", delivered] == 30


def test_a_bad_metrics_flag_fails_at_start_up() -> None:
    from webhook_kit import ConfigurationError

    with pytest.raises(ConfigurationError, match="WEBHOOK_KIT_METRICS='maybe' must be 1 or 0"):
        client_for(echo_kit(), WEBHOOK_KIT_METRICS="maybe")


def test_a_missing_multiprocess_directory_fails_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from webhook_kit import ConfigurationError

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="is not a directory: create it"):
        client_for(echo_kit(), WEBHOOK_KIT_METRICS="1")
