"""The webhook-kit command: click's runner for each command, and a real gunicorn for simulate."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from server import ROOT, TOKEN, Gunicorn, free_port

from webhook_kit.cli import main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def server() -> Iterator[Gunicorn]:
    with Gunicorn({"WEBHOOK_KIT_STORE": "memory://"}) as running:
        yield running


class TestSegments:
    def test_gsm(self, runner: CliRunner) -> None:
        result = runner.invoke(main, ["segments", "x" * 161])
        assert result.exit_code == 0
        assert result.output == "GSM-7, 161 septets, 2 segment(s) of up to 153 (153 + 8)\n"

    def test_unicode_and_smart_encoding(self, runner: CliRunner) -> None:
        result = runner.invoke(main, ["segments", "It’s “fine”"])
        assert result.exit_code == 0
        lines = result.output.splitlines()
        assert lines[0].startswith("UCS-2, 11 UTF-16 units, 1 segment(s)")
        assert lines[1] == "forced UCS-2 by: '’' U+2019, '“' U+201C, '”' U+201D"
        assert lines[2].endswith(": GSM-7, 11 septets, 1 segment(s) of up to 160 (11)")

    def test_toll_free(self, runner: CliRunner) -> None:
        result = runner.invoke(main, ["segments", "--toll-free", "x" * 161])
        assert "of up to 152 (152 + 9)" in result.output


class TestTwimlCheck:
    def test_valid_file(self, runner: CliRunner, tmp_path: Path) -> None:
        path = tmp_path / "ok.xml"
        path.write_text('<?xml version="1.0"?><Response><Message>hi</Message></Response>')
        result = runner.invoke(main, ["twiml", "check", str(path)])
        assert result.exit_code == 0 and result.output == f"{path}: ok\n"

    def test_problems_exit_1(self, runner: CliRunner, tmp_path: Path) -> None:
        path = tmp_path / "bad.xml"
        path.write_text(
            "<Response>\n<message>hi</message>\n<Redirect>/next</Redirect>\n"
            '<Message method="PUT">late</Message>\n</Response>\n'
        )
        result = runner.invoke(main, ["twiml", "check", str(path)])
        assert result.exit_code == 1
        lines = result.output.splitlines()
        assert lines[0].startswith(f"{path}:2: unknown verb <message>")
        assert any("after the <Redirect>" in line for line in lines)
        assert any("'PUT'" in line for line in lines)

    def test_not_xml(self, runner: CliRunner, tmp_path: Path) -> None:
        path = tmp_path / "bad.xml"
        path.write_text("<Response><Message>")
        result = runner.invoke(main, ["twiml", "check", str(path)])
        assert result.exit_code == 1 and "not well-formed" in result.output

    def test_missing_file(self, runner: CliRunner, tmp_path: Path) -> None:
        result = runner.invoke(main, ["twiml", "check", str(tmp_path / "nope.xml")])
        assert result.exit_code == 2 and "does not exist" in result.output
        assert "Traceback" not in result.output


class TestSimulate:
    def test_message(self, runner: CliRunner, server: Gunicorn) -> None:
        result = runner.invoke(
            main,
            ["simulate", "message", "--url", f"{server.base}/twilio/messages", "--body", "hello",
             "--media", "https://example.com/a.png"],
            env={"TWILIO_AUTH_TOKEN": TOKEN},
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert result.output == "200 OK\nMessage: Echo: hello\n"

    def test_status(self, runner: CliRunner, server: Gunicorn) -> None:
        result = runner.invoke(
            main,
            ["simulate", "status", "--url", f"{server.base}/twilio/status",
             "--sid", "SM" + "1" * 32, "--status", "undelivered", "--error-code", "30003"],
            env={"TWILIO_AUTH_TOKEN": TOKEN},
        )  # fmt: skip
        assert result.exit_code == 0 and result.output == "200 OK\n(no reply)\n"

    def test_rejected_request_exits_1(self, runner: CliRunner, server: Gunicorn) -> None:
        result = runner.invoke(
            main,
            ["simulate", "message", "--url", f"{server.base}/twilio/messages", "--token", "bad"],
        )
        assert result.exit_code == 1
        assert result.output == "403 Forbidden\ninvalid signature: request not from Twilio\n"

    @pytest.mark.parametrize(
        ("args", "env", "message"),
        [
            (["--url", "http://127.0.0.1:9/twilio/messages"], {"TWILIO_AUTH_TOKEN": "x"},
             "error: cannot reach http://127.0.0.1:9/twilio/messages:"),
            (["--url", "not a url"], {"TWILIO_AUTH_TOKEN": "x"}, "error: --url 'not a url'"),
            ([], {"TWILIO_AUTH_TOKEN": ""}, "error: no auth token"),
        ],
    )  # fmt: skip
    def test_errors_are_one_line(
        self, runner: CliRunner, args: list[str], env: dict[str, str], message: str
    ) -> None:
        result = runner.invoke(main, ["simulate", "message", *args], env=env)
        assert result.exit_code == 1
        assert result.output.startswith(message) and result.output.count("\n") == 1
        assert "Traceback" not in result.output


def test_serve_without_a_token_is_one_line(runner: CliRunner) -> None:
    result = runner.invoke(main, ["serve"], env={"TWILIO_AUTH_TOKEN": ""})
    assert result.exit_code == 1
    assert result.output.startswith("error: no Twilio auth token: set TWILIO_AUTH_TOKEN")


@pytest.mark.parametrize("mode", [[], ["--gunicorn", "--workers", "1"]])
def test_serve(mode: list[str]) -> None:
    port = free_port()
    env = {**os.environ, "TWILIO_AUTH_TOKEN": TOKEN, "WEBHOOK_KIT_STORE": "memory://"}
    command = [sys.executable, "-m", "webhook_kit.cli", "serve", "--port", str(port), *mode]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=15)


class TestMaintenance:
    def test_expires_old_records_and_compacts(self, runner: CliRunner, tmp_path: Path) -> None:
        from webhook_kit.ledger import StatusEntry
        from webhook_kit.stores import open_store

        url = f"sqlite:///{tmp_path}/kit.db"
        store = open_store(url)
        old = StatusEntry("SM" + "0" * 32, "k", "sent", 2, False, None, None, 1000.0, "")
        store.record_status(old)
        store.close()
        env = {"WEBHOOK_KIT_LEDGER_RETENTION": "3600"}
        result = runner.invoke(main, ["maintenance", "--store", url], env=env)
        assert result.exit_code == 0 and result.output == f"maintained {url}\n"
        assert open_store(url).get_message("SM" + "0" * 32) is None
        assert (tmp_path / "kit.db-wal").stat().st_size == 0  # checkpointed and truncated

    def test_a_store_that_is_down_is_one_error_line(self, runner: CliRunner) -> None:
        result = runner.invoke(main, ["maintenance", "--store", "redis://127.0.0.1:1/0"])
        assert result.exit_code == 1
        assert result.output.startswith("error: Redis store") and "Traceback" not in result.output
