"""The webhook-kit command: click's runner for each command, and a real gunicorn for simulate."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from server import ROOT, TOKEN, Gunicorn, free_port, wait_for_server

from webhook_kit.cli import main
from webhook_kit.stores import open_store


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
        wait_for_server(port, process, "webhook-kit serve", path="/healthz")
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
        assert result.exit_code == 0 and result.output == f"store: {url}\nmaintained\n"
        assert open_store(url).get_message("SM" + "0" * 32) is None
        assert (tmp_path / "kit.db-wal").stat().st_size == 0  # checkpointed and truncated

    def test_covers_postgresql(self, runner: CliRunner, postgres_url: str) -> None:
        from webhook_kit.ledger import StatusEntry
        from webhook_kit.stores import open_store

        store = open_store(postgres_url)
        old = StatusEntry("SM" + "0" * 32, "k", "sent", 2, False, None, None, 1000.0, "")
        store.record_status(old)
        store.close()
        env = {"WEBHOOK_KIT_LEDGER_RETENTION": "3600"}
        result = runner.invoke(main, ["maintenance", "--store", postgres_url], env=env)
        assert result.exit_code == 0 and result.output == f"store: {postgres_url}\nmaintained\n"
        store = open_store(postgres_url)
        assert store.get_message("SM" + "0" * 32) is None
        store.close()

    def test_a_store_that_is_down_is_one_error_line(self, runner: CliRunner) -> None:
        result = runner.invoke(main, ["maintenance", "--store", "redis://127.0.0.1:1/0"])
        assert result.exit_code == 1
        assert result.output.startswith("error: Redis store") and "Traceback" not in result.output


def refused(result: Any, *expected: str) -> None:
    """One clear line (ours or click's usage error), a non-zero exit, and no traceback."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for text in expected:
        assert text in result.output, result.output


class TestBadInput:
    """Whatever a user types, one line that says what is wrong, and a non-zero exit."""

    @pytest.fixture
    def env(self, tmp_path: Path) -> dict[str, str]:
        return {
            "WEBHOOK_KIT_STORE": f"sqlite:///{tmp_path / 'kit.db'}",
            "TWILIO_AUTH_TOKEN": "t",
            "WEBHOOK_KIT_HANDLERS": "examples.echo_bot",  # restored after each command
        }

    @pytest.mark.parametrize("since", ["1000000d", "1e400m", "nanh", "-5m"])
    @pytest.mark.parametrize("command", [["ledger", "find"], ["ledger", "stats"]])
    def test_durations_out_of_range(
        self, runner: CliRunner, env: dict[str, str], command: list[str], since: str
    ) -> None:
        refused(runner.invoke(main, [*command, "--since", since], env=env), "--since")

    @pytest.mark.parametrize("age", ["nan", "inf", "1e400", "-5m"])
    def test_reconcile_checks_its_age(
        self, runner: CliRunner, env: dict[str, str], age: str
    ) -> None:
        refused(runner.invoke(main, ["reconcile", "--older-than", age], env=env), "--older-than")

    @pytest.mark.parametrize(
        "args",
        [
            ["serve", "--port", "99999"],
            ["serve", "--port", "-1"],
            ["emulator", "--port", "70000"],
            ["serve", "--gunicorn", "--workers", "0"],
            ["jobs", "list", "--limit", "0"],
            ["jobs", "list", "--limit", "99999999999999999999"],
            ["ledger", "find", "--status", "deliverd"],
            ["ledger", "find", "--direction", "sideways"],
            ["emulator", "--chaos", "--drop-final", "5"],
            ["emulator", "--rate-limit", "0"],
        ],
    )
    def test_values_out_of_range_are_usage_errors(
        self, runner: CliRunner, env: dict[str, str], args: list[str]
    ) -> None:
        refused(runner.invoke(main, args, env=env), "Invalid value")

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (["conversations", "purge", "--address", " "], "--address is empty"),
            (["segments", "caf\udce9"], "TEXT is not valid UTF-8"),
            (["simulate", "message", "--body", "\udcff", "--token", "t"], "Body is not valid"),
            (["jobs", "retry", ""], "name the jobs to retry"),
            (["worker", "--threads", "0"], "Invalid value"),
        ],
    )
    def test_empty_or_undecodable_text(
        self, runner: CliRunner, env: dict[str, str], args: list[str], expected: str
    ) -> None:
        refused(runner.invoke(main, args, env=env), expected)

    def test_emulator_speed_that_is_no_number(self, runner: CliRunner) -> None:
        refused(runner.invoke(main, ["emulator", "--speed", "nan"]), "error: speed")

    def test_status_filters_ignore_case(self, runner: CliRunner, env: dict[str, str]) -> None:
        open_store(env["WEBHOOK_KIT_STORE"]).close()  # the server made it
        result = runner.invoke(main, ["ledger", "find", "--status", "Queued"], env=env)
        assert result.exit_code == 0, result.output

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("redis://127.0.0.1:notaport/0", "not valid"),
            ("redis://127.0.0.1:99999/0", "not valid"),
            ("redis://[::1", "not valid"),
            ("redis://127.0.0.1:6379/abc", "must be a number"),
            ("redis://127.0.0.1:6379/0?prefix=", "prefix"),
            ("unix:///nonexistent/redis.sock", "Redis store"),  # read right: no such socket
        ],
    )
    def test_redis_urls(
        self, runner: CliRunner, env: dict[str, str], url: str, expected: str
    ) -> None:
        result = runner.invoke(main, ["ledger", "stats"], env={**env, "WEBHOOK_KIT_STORE": url})
        refused(result, "error:", expected)

    def test_opt_out_csv_that_is_not_utf8(
        self, runner: CliRunner, env: dict[str, str], tmp_path: Path
    ) -> None:
        path = tmp_path / "latin1.csv"
        path.write_bytes("sender,address\n+15005550006,caf\xe9\n".encode("latin-1"))
        refused(runner.invoke(main, ["opt-outs", "import", str(path)], env=env), "not UTF-8")

    def test_opt_out_csv_from_excel_and_a_bad_row_imports_nothing(
        self, runner: CliRunner, env: dict[str, str], tmp_path: Path
    ) -> None:
        path = tmp_path / "excel.csv"
        rows = "sender,address\r\n+15005550006,+14155550100\r\n+15005550006,\r\n"
        path.write_bytes(b"\xef\xbb\xbf" + rows.encode())  # Excel's "CSV UTF-8" starts with a BOM
        refused(runner.invoke(main, ["opt-outs", "import", str(path)], env=env), "line 3")
        exported = runner.invoke(main, ["opt-outs", "export"], env=env)
        assert exported.stdout.splitlines()[1:] == []  # the good first row was not written
        path.write_bytes(b"\xef\xbb\xbf" + rows.rsplit("+1500", 1)[0].encode())
        result = runner.invoke(main, ["opt-outs", "import", str(path)], env=env)
        assert result.exit_code == 0 and "imported 1" in result.output

    def test_a_handlers_module_that_fails_says_where(
        self, runner: CliRunner, env: dict[str, str], tmp_path: Path, monkeypatch: Any
    ) -> None:
        (tmp_path / "broken_bot.py").write_text("x = 1\nraise RuntimeError('no CRM key')\n")
        (tmp_path / "typo_bot.py").write_text("def f(:\n")
        monkeypatch.chdir(tmp_path)
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delenv("WEBHOOK_KIT_HANDLERS", raising=False)
        del env["WEBHOOK_KIT_HANDLERS"]  # so that the runner does not restore it either
        for module, where in (("broken_bot", "broken_bot.py:2"), ("typo_bot", "typo_bot.py:1")):
            for command in (["serve", "--gunicorn"], ["maintenance"], ["worker"], ["doctor"]):
                result = runner.invoke(main, [*command, "--handlers", module], env=env)
                refused(result, "error:", where)
                assert "maintained" not in result.output  # the store was not touched first
                assert "WEBHOOK_KIT_HANDLERS" not in os.environ  # passed on, never leaked

    @pytest.mark.parametrize(
        "url", ["http://127.0.0.1:abc/twilio/messages", "http://[::1/twilio/messages", "ftp://x/"]
    )
    def test_simulate_url_that_is_no_http_url(self, runner: CliRunner, url: str) -> None:
        refused(runner.invoke(main, ["simulate", "message", "--url", url, "--token", "t"]), "--url")

    def test_simulate_answer_that_is_not_http(self, runner: CliRunner) -> None:
        with _answering(b"SSH-2.0-OpenSSH_9.6\r\n") as url:
            result = runner.invoke(main, ["simulate", "message", "--url", url, "--token", "t"])
        refused(result, "no HTTP answer")

    def test_emulator_control_answer_that_is_not_json(self, runner: CliRunner) -> None:
        with _answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as url:
            result = runner.invoke(
                main,
                ["emulator", "advance", "1", "--url", url],
                env={"TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "t"},
            )
        refused(result, "did not answer JSON")


@contextmanager
def _answering(answer: bytes) -> Iterator[str]:
    """A loopback server that reads one request and sends ``answer`` as it is."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(answer)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/twilio/messages"
        thread.join(timeout=5)
