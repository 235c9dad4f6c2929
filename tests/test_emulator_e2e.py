"""End to end over real HTTP: the emulator (``webhook-kit emulator``) and a webhook_kit app
under gunicorn, both subprocesses; the official twilio client sends through the emulator."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner
from server import TOKEN, EmulatorProcess, Gunicorn, free_port
from twilio.rest import Client

from webhook_kit.cli import main
from webhook_kit.emulator.client import EmulatorHttpClient, emulator_client
from webhook_kit.ledger import Ledger
from webhook_kit.stores import open_store

pytestmark = pytest.mark.timeout(240)

ACCOUNT = "AC" + "5" * 32
NUMBER = "+15017250604"
HANDSET = "+15558675309"
CREDENTIALS = ("--account-sid", ACCOUNT, "--auth-token", TOKEN)


def _tail(app: Gunicorn) -> str:
    """The end of the app's stderr, to tell why a delivery found no answer."""
    return app.stderr_so_far()[-4000:]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    db = tmp_path_factory.mktemp("emulator-e2e") / "kit.db"
    env = {
        "WEBHOOK_KIT_STORE": f"sqlite:///{db}",
        "WEBHOOK_KIT_HANDLERS": "examples.keyword_router",
    }
    with Gunicorn(env, workers=2) as running:
        running.db = db  # type: ignore[attr-defined]
        yield running


def test_500_messages_in_chaos_mode_end_in_the_same_state(app: Gunicorn) -> None:
    emulator = EmulatorProcess(ACCOUNT, TOKEN, "--chaos", "--seed", "42")
    try:
        emulator.control(
            "/_emulator/rules",
            [("Status", "undelivered"), ("ErrorCode", "30003"), ("Probability", "0.1")],
        )
        client = emulator_client(emulator.url, ACCOUNT, TOKEN)
        callback = f"{app.base}/twilio/status"

        def send(index: int) -> str:
            return str(
                client.messages.create(
                    to=f"+1555{index:07d}", from_=NUMBER, body=f"n{index}", status_callback=callback
                ).sid
            )

        with ThreadPoolExecutor(4) as pool:
            sids = list(pool.map(send, range(500)))
        ledger = Ledger(open_store(f"sqlite:///{app.db}"))  # type: ignore[attr-defined]
        deadline = time.monotonic() + 120
        while True:
            truth = {m.sid: m.status for m in client.messages.list(page_size=1000)}
            finished = all(truth[sid] in {"delivered", "undelivered"} for sid in sids)
            mismatched = [sid for sid in sids if ledger.status(sid) != truth[sid]]
            if finished and not mismatched:
                break
            assert time.monotonic() < deadline, (
                f"{len(mismatched)} ledger records differ; gunicorn said:\n{_tail(app)}"
            )
            time.sleep(0.5)
        assert 0 < list(truth.values()).count("undelivered") < 500
        deliveries = emulator.control("/_emulator/requests")["requests"]
        assert sum(r["method"] == "POST" for r in deliveries) == 500
    finally:
        emulator.stop()


def test_handset_help_reaches_the_app_and_the_reply_comes_back(app: Gunicorn) -> None:
    key = "SK" + "9" * 32
    emulator = EmulatorProcess(
        ACCOUNT,
        TOKEN,
        "--number",
        f"{NUMBER}={app.base}/twilio/messages",
        "--api-key",
        f"{key}:secret",
    )
    try:
        result = CliRunner().invoke(
            main,
            [
                "emulator",
                "send",
                "--url",
                emulator.url,
                "--from",
                HANDSET,
                "--to",
                NUMBER,
                "--body",
                "HELP",
                *CREDENTIALS,
            ],
        )
        assert result.exit_code == 0, f"{result.output}\ngunicorn said:\n{_tail(app)}"
        assert "Reply JOIN <name> to subscribe" in result.output, _tail(app)
        conversation = emulator.control(f"/_emulator/conversation?Address=%2B{HANDSET[1:]}")
        messages = conversation["messages"]
        assert [(m["direction"], m["body"]) for m in messages] == [
            ("inbound", "HELP"),
            ("outbound-reply", "Reply JOIN <name> to subscribe, or send a photo."),
        ]
        with_key = Client(key, "secret", ACCOUNT, http_client=EmulatorHttpClient(emulator.url))
        assert len(with_key.messages.list(to=HANDSET)) == 1
    finally:
        emulator.stop()


def test_a_webhook_that_fails_makes_emulator_send_fail() -> None:
    dead = f"http://127.0.0.1:{free_port()}/twilio/messages"  # nothing listens there
    emulator = EmulatorProcess(ACCOUNT, TOKEN, "--number", f"{NUMBER}={dead}")
    try:
        args = ["--url", emulator.url, "--from", HANDSET, "--to", NUMBER, "--body", "HELP"]
        result = CliRunner().invoke(main, ["emulator", "send", *args, *CREDENTIALS])
    finally:
        emulator.stop()
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"inbound webhook {dead} got no answer" in result.output
    assert "error: the app did not answer the message" in result.output


def test_made_up_account_is_printed_at_start_up() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "webhook_kit.cli", "emulator", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().decode() for _ in range(3)]
    finally:
        process.terminate()
        process.communicate(timeout=15)
    assert lines[0].startswith(f"Twilio emulator on http://127.0.0.1:{port}")
    assert lines[1].startswith("TWILIO_ACCOUNT_SID=AC") and len(lines[1].strip()) == 53
    assert lines[2].startswith("TWILIO_AUTH_TOKEN=")


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "emulator",
            "send",
            "--url",
            f"http://127.0.0.1:{free_port()}",
            "--from",
            HANDSET,
            "--to",
            NUMBER,
            *CREDENTIALS,
        ],
    )
    assert result.exit_code == 1 and "cannot reach the emulator" in result.output
    bad_state = runner.invoke(main, ["emulator", "--state", "postgres://x", "--port", "0"])
    assert bad_state.exit_code == 1 and "unknown emulator state" in bad_state.output
    bad_key = runner.invoke(main, ["emulator", "--api-key", "AK1:x", "--port", "0"])
    assert bad_key.exit_code == 1 and "SK... SID" in bad_key.output
    assert "Traceback" not in result.output + bad_state.output + bad_key.output
