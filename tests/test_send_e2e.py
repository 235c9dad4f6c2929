"""End to end: 1,000 sends through the emulator under chaos, settled by ``webhook-kit reconcile``.

The emulator (``webhook-kit emulator --chaos --drop-final 0.1``) and the app (``gunicorn
wsgi:app``) run as subprocesses on loopback ports; the test process sends through the
official client, as a worker outside any request would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from server import ROOT, EmulatorProcess, Gunicorn
from test_sending import SlowAnswers
from twilio.rest import Client

from webhook_kit import MessageStatus
from webhook_kit.correlation import Correlator
from webhook_kit.errors import InvalidToError
from webhook_kit.ledger import Ledger, MessageFacts, now
from webhook_kit.sending import Sender
from webhook_kit.stores import open_store

pytestmark = pytest.mark.timeout(240)

SENDS = 1000
ACCOUNT, TOKEN = "AC" + "e2e0" * 8, "e2e-emulator-token"
CUSTOMERS = [f"+1415555{index:04d}" for index in range(50)]


@pytest.fixture
def emulator() -> Iterator[EmulatorProcess]:
    running = EmulatorProcess(
        ACCOUNT, TOKEN, "--chaos", "--drop-final", "0.1", "--seed", "11", "--speed", "1000"
    )
    yield running
    running.stop()


def test_thousand_sends_under_chaos_end_in_the_emulators_state(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path}/kit.db"
    early_log = tmp_path / "early.log"
    early_log.touch()
    for status, code, probability in (("undelivered", "30003", "0.1"), ("failed", "30007", "0.05")):
        emulator.control(
            "/_emulator/rules", {"Status": status, "ErrorCode": code, "Probability": probability}
        )
    env = {
        "TWILIO_AUTH_TOKEN": TOKEN,
        "WEBHOOK_KIT_STORE": store_url,
        "WEBHOOK_KIT_HANDLERS": "apps.tracking_bot",
        "EARLY_LOG": str(early_log),
    }
    with Gunicorn(env, workers=2) as app:
        config = {
            "WEBHOOK_KIT_ACCOUNT_SID": ACCOUNT,
            "WEBHOOK_KIT_AUTH_TOKEN": TOKEN,
            "WEBHOOK_KIT_TWILIO_BASE_URL": emulator.url,
        }
        status_url = app.base + "/twilio/status"

        def send_batch(batch: range) -> list[str]:
            # Every 50th answer, the first included, comes 0.5 s late: callbacks overtake it.
            slow = SlowAnswers(emulator.url, delay=0.5, every=50)
            client = Client(ACCOUNT, TOKEN, http_client=slow)
            sender = Sender.from_config(
                config, open_store(store_url), status_url=status_url, client=client
            )
            return [
                sender.send(
                    CUSTOMERS[index % len(CUSTOMERS)],
                    f"Order {index} is on its way",
                    from_="+15005550006",
                    ref=f"order-{index}",
                ).sid
                for index in batch
            ]

        with ThreadPoolExecutor(4) as pool:
            batches = [range(start, SENDS, 4) for start in range(4)]
            sids = [sid for batch in pool.map(send_batch, batches) for sid in batch]
        assert len(set(sids)) == SENDS

        sender = Sender.from_config(config, open_store(store_url), status_url=status_url)
        with pytest.raises(InvalidToError):
            sender.send("+15005550001", "nope", from_="+15005550006", ref="refused")

        truth = _wait_until_final(sender, sids)
        ledger = Ledger(open_store(store_url))
        lost = _lagging_once_quiet(ledger, truth)
        assert len(lost) >= SENDS // 20, "10% of final callbacks were dropped: records must lag"

        reconciled = subprocess.run(
            [sys.executable, "-m", "webhook_kit.cli", "reconcile", "--older-than", "0", "--json"],
            env={
                **os.environ,
                "TWILIO_ACCOUNT_SID": ACCOUNT,
                "TWILIO_AUTH_TOKEN": TOKEN,
                "WEBHOOK_KIT_STORE": store_url,
                "WEBHOOK_KIT_TWILIO_BASE_URL": emulator.url,
            },
            capture_output=True,
            check=False,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert reconciled.returncode == 0, reconciled.stderr
        report = json.loads(reconciled.stdout)
        assert report["updated"] == len(lost) and report["missing"] == []

        wrong = {
            sid: (ledger.status(sid), truth[sid])
            for sid in sids
            if ledger.status(sid) != truth[sid]
        }
        assert wrong == {}
        records = {sid: ledger.get(sid) for sid in sids}
        assert {record.ref for record in records.values() if record} == {
            f"order-{index}" for index in range(SENDS)
        }
        assert not [
            record for record in ledger.iter() if record.pending and record.ref != "refused"
        ]
        refused = ledger.find(ref="refused").records[0]
        assert refused.status is MessageStatus.FAILED and refused.error_code == 21211
        settled = {sid for sid, r in records.items() if r and any(e.reconciled for e in r.history)}
        assert settled >= set(lost)

        early = set(early_log.read_text().split())
        assert early, "no status callback overtook the API's answer"
        assert early <= set(sids)

        # A forged token naming a send that is still waiting for its SID is not trusted.
        waiting = Correlator(TOKEN).new()[0]
        store = open_store(store_url)
        store.save_message(MessageFacts(waiting, now(), ref="waiting", created_at=now()))
        forged = (
            Correlator("not the app's key")
            .new()[1]
            .replace(Correlator("not the app's key").new()[0], waiting)
        )
        url = f"{app.base}/twilio/status?c={forged}"
        fields = {"MessageSid": "SM" + "9" * 32, "MessageStatus": "delivered"}
        reply = app.post_signed(f"/twilio/status?c={forged}", fields, signed_url=url, token=TOKEN)
        assert reply.status == 200
        still_waiting, unrelated = ledger.get(waiting), ledger.get("SM" + "9" * 32)
        assert still_waiting is not None and still_waiting.pending
        assert unrelated is not None and unrelated.ref is None
        assert "bad signature" in app.stderr()


def _lagging_once_quiet(ledger: Ledger, truth: dict[str, MessageStatus]) -> list[str]:
    """The records behind the emulator once callbacks stop arriving (the lost ones)."""
    previous: list[str] | None = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lagging = [sid for sid, status in truth.items() if ledger.status(sid) != status]
        if lagging == previous:
            return lagging
        previous = lagging
        time.sleep(1.0)
    raise AssertionError("status callbacks kept arriving for a minute")


def _wait_until_final(sender: Sender, sids: list[str]) -> dict[str, MessageStatus]:
    """The emulator's status of every message, once each is final (its truth)."""
    deadline = time.monotonic() + 90
    while True:
        listed = {m.sid: m.status for m in sender.client.messages.list(page_size=1000)}
        truth = {sid: MessageStatus(listed[sid]) for sid in sids}
        if all(status.is_final for status in truth.values()):
            return truth
        assert time.monotonic() < deadline, "the emulator did not finish the life cycles"
        time.sleep(0.5)
