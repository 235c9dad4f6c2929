"""Mistakes caught at start: misspelt settings, the banner, the store checked before serving,
one line instead of a traceback per worker, and commands that read the server's store."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import POSTGRES_URL, require_postgres
from flask import Flask
from server import ROOT, free_port

from webhook_kit import WebhookKit
from webhook_kit.cli import main
from webhook_kit.config import DEFAULTS, SERVER_KEYS, unknown_keys
from webhook_kit.errors import StoreError
from webhook_kit.startup import describe_store, start
from webhook_kit.stores import open_store

BOT = """from webhook_kit import WebhookKit

kit = WebhookKit()
kit.on_message()(lambda message: "Echo: " + message.body)
"""
KNOWN = [*DEFAULTS, *SERVER_KEYS]


def test_a_misspelt_variable_is_reported_with_the_closest_name() -> None:
    environ = {"WEBHOOK_KIT_STOR": "redis://x", "WEBHOOK_KIT_STORE": "memory://", "HOME": "/"}
    assert unknown_keys(environ, KNOWN) == [
        "WEBHOOK_KIT_STOR is not a webhook_kit setting and is ignored: "
        "did you mean WEBHOOK_KIT_STORE?"
    ]
    (far,) = unknown_keys({"WEBHOOK_KIT_COLOUR": "blue"}, KNOWN)
    assert "did you mean" not in far and "WEBHOOK_KIT_COLOUR" in far


def test_app_config_keys_are_checked_by_init_app(caplog: pytest.LogCaptureFixture) -> None:
    app = Flask(__name__)
    app.config.update(
        WEBHOOK_KIT_AUTH_TOKEN="t", WEBHOOK_KIT_STORE="memory://", WEBHOOK_KIT_PUBLIC_ULR="x"
    )
    with caplog.at_level(logging.WARNING, "webhook_kit"):
        WebhookKit().init_app(app)
    assert "WEBHOOK_KIT_PUBLIC_ULR is not a webhook_kit setting" in caplog.text
    assert "did you mean WEBHOOK_KIT_PUBLIC_URL?" in caplog.text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://kit:s3cret@db.internal/kit?schema=a", "postgresql://kit:***@db.internal/kit?schema=a"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("memory://", "memory://"),
        ("postgresql://kit:p@ss@db/kit", "postgresql://kit:***@db/kit"),
        ("postgresql://kit:s3cret@[db/kit", "postgresql://***@[db/kit"),  # unparseable
    ],
)  # fmt: skip
def test_store_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    assert describe_store(url) == shown


def test_a_relative_sqlite_file_is_shown_where_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert describe_store("sqlite:///kit.db?synchronous=full") == (
        f"sqlite:///{tmp_path}/kit.db?synchronous=full"
    )


def _bot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    (tmp_path / "startup_bot.py").write_text(BOT)
    monkeypatch.syspath_prepend(str(tmp_path))
    return {"WEBHOOK_KIT_HANDLERS": "startup_bot", "TWILIO_AUTH_TOKEN": "t"}


def test_the_banner_says_what_is_in_effect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {
        **_bot(tmp_path, monkeypatch),
        "WEBHOOK_KIT_STORE": f"sqlite:///{tmp_path}/kit.db",
        "WEBHOOK_KIT_PROXY_HOPS": "1",
        "WEBHOOK_KIT_STOR": "redis://elsewhere",
    }
    with caplog.at_level(logging.INFO, "webhook_kit"):
        start(environ)
    assert "did you mean WEBHOOK_KIT_STORE?" in caplog.text
    banner = caplog.text[caplog.text.index("webhook_kit 0.") :]
    assert f"store       sqlite:///{tmp_path}/kit.db" in banner
    assert "validation  enforce (1 auth token(s))" in banner
    assert "1 trusted proxy hop(s)" in banner
    assert "handlers    startup_bot" in banner
    assert "GET/POST /twilio/messages" in banner and "POST /twilio/status" in banner
    assert "runner      none needed" in banner


def test_a_missing_postgresql_database_stops_the_start_with_postgresqls_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_postgres()
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/webhook_kit_no_such_database"
    environ = {**_bot(tmp_path, monkeypatch), "WEBHOOK_KIT_STORE": url}
    with pytest.raises(StoreError) as raised:
        start(environ)
    assert str(raised.value) == (
        f"the store {url} cannot be used: connection failed: connection to server at "
        '"127.0.0.1", port 5432 failed: FATAL: database "webhook_kit_no_such_database" '
        "does not exist"
    )


def test_an_unreachable_store_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = {**_bot(tmp_path, monkeypatch), "WEBHOOK_KIT_STORE": "redis://127.0.0.1:1/0"}
    with pytest.raises(StoreError, match=r"Redis store 'redis://127.0.0.1:1/0' failed: .*111"):
        start(environ)


def _gunicorn(directory: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    (directory / "startup_bot.py").write_text(BOT)
    environ = {key: value for key, value in os.environ.items() if key != "PORT"}
    environ |= {"WEBHOOK_KIT_BIND": f"127.0.0.1:{free_port()}", "WEB_CONCURRENCY": "3", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:webhook_kit.gunicorn_conf",
         "webhook_kit.wsgi:app"],
        cwd=directory, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_under_plain_gunicorn_a_mistake_is_one_line_not_a_traceback_per_worker(
    tmp_path: Path,
) -> None:
    process = _gunicorn(tmp_path, {"WEBHOOK_KIT_HANDLERS": "startup_bot"})  # no auth token
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: no Twilio auth token")
    assert "Traceback" not in output and "Booting worker" not in output


def test_in_the_checkout_gunicorn_wsgi_app_is_checked_the_same_way() -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "WEBHOOK_"))}
    environ |= {"WEBHOOK_KIT_BIND": f"127.0.0.1:{free_port()}", "WEB_CONCURRENCY": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "wsgi:app"],  # reads ./gunicorn.conf.py
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if "rror" in line]
    assert line.startswith("error: no Twilio auth token: set TWILIO_AUTH_TOKEN")


def test_under_plain_gunicorn_the_master_logs_one_banner(tmp_path: Path) -> None:
    env = {"WEBHOOK_KIT_HANDLERS": "startup_bot", "TWILIO_AUTH_TOKEN": "t"}
    process = _gunicorn(tmp_path, {**env, "WEBHOOK_KIT_STORE": "memory://"})
    lines: list[str] = []
    deadline = time.monotonic() + 60
    assert process.stdout is not None
    try:
        while sum("Booting worker" in line for line in lines) < 3:
            assert time.monotonic() < deadline and process.poll() is None, lines
            lines.append(process.stdout.readline())
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
    output = "".join(lines) + rest
    assert output.count("webhook_kit 0.") == 1  # the master's, not one per worker
    assert "store       memory://" in output


def test_gunicorn_settings(tmp_path: Path) -> None:
    code = (
        "import webhook_kit.gunicorn_conf as c; "
        "print(c.bind, c.timeout, repr(c.forwarded_allow_ips), c.accesslog)"
    )

    def settings(**env: str) -> str:
        environ = {k: v for k, v in os.environ.items() if k not in ("PORT", "WEBHOOK_KIT_BIND")}
        return subprocess.run(
            [sys.executable, "-c", code], env={**environ, **env}, capture_output=True,
            text=True, check=True, cwd=tmp_path,
        ).stdout.strip()  # fmt: skip

    assert settings() == "['127.0.0.1:8000'] 14 '' -"
    assert settings(PORT="5050").startswith("['0.0.0.0:5050'] 14")
    assert settings(PORT="5050", WEBHOOK_KIT_BIND="127.0.0.1:7000").startswith("['127.0.0.1:7000']")


def test_serve_gunicorn_runs_the_packaged_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "startup_bot.py").write_text(BOT)
    monkeypatch.chdir(tmp_path)
    ran: list[Any] = []

    def execve(path: str, args: list[str], environ: dict[str, str]) -> None:
        ran.append((args, environ))
        raise SystemExit(0)  # as the real one, it does not return

    monkeypatch.setattr(os, "execve", execve)
    monkeypatch.syspath_prepend(str(tmp_path))  # sys.path is restored afterwards
    monkeypatch.delenv("WEBHOOK_KIT_HANDLERS", raising=False)
    env = {"TWILIO_AUTH_TOKEN": "t", "WEBHOOK_KIT_STORE": "memory://"}
    result = CliRunner().invoke(
        main, ["serve", "--gunicorn", "--handlers", "startup_bot", "--workers", "2"], env=env
    )
    assert result.exit_code == 0, result.output
    ((args, environ),) = ran
    assert environ["WEBHOOK_KIT_HANDLERS"] == "startup_bot"  # given to gunicorn, not os.environ
    assert "WEBHOOK_KIT_HANDLERS" not in os.environ
    assert args[1:] == [
        "-m", "gunicorn", "--config", "python:webhook_kit.gunicorn_conf", "webhook_kit.wsgi:app",
        "--workers", "2",
    ]  # fmt: skip


class TestCommandsReadTheServersStore:
    def test_from_another_directory_nothing_is_created(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        result = CliRunner().invoke(main, ["ledger", "find"], env={"WEBHOOK_KIT_STORE": None})
        assert result.exit_code == 1
        assert result.output.startswith(f"error: no store at {tmp_path}/webhook_kit.db")
        assert "relative to the working directory" in result.output
        assert not (tmp_path / "webhook_kit.db").exists()

    def test_a_misspelt_variable_is_reported_before_the_store_is_read(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        env = {"WEBHOOK_KIT_STORE": None, "WEBHOOK_KIT_STOR": f"sqlite:///{tmp_path}/kit.db"}
        result = CliRunner().invoke(main, ["ledger", "stats"], env=env)
        assert result.exit_code == 1
        assert result.stderr.splitlines()[0] == (
            "warning: WEBHOOK_KIT_STOR is not a webhook_kit setting and is ignored: "
            "did you mean WEBHOOK_KIT_STORE?"
        )

    def test_they_say_which_store_they_read(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path}/kit.db"
        open_store(url).close()
        result = CliRunner().invoke(main, ["jobs", "list"], env={"WEBHOOK_KIT_STORE": url})
        assert result.exit_code == 0
        assert result.stderr == f"store: {url}\n" and result.stdout == "no jobs\n"


def test_the_standalone_app_takes_twilio_variables_from_the_environ_it_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not from os.environ: the account, API key, region and edge a sender uses."""
    from webhook_kit.standalone import TWILIO_DEFAULTS, create_app

    for twilio in TWILIO_DEFAULTS.values():
        monkeypatch.delenv(twilio, raising=False)
    account = "AC" + "1" * 32
    environ = {
        "WEBHOOK_KIT_HANDLERS": "examples.echo_bot",
        "WEBHOOK_KIT_STORE": "memory://",
        "TWILIO_AUTH_TOKEN": "t",
        "TWILIO_ACCOUNT_SID": account,
        "TWILIO_API_KEY": "SK" + "2" * 32,
        "TWILIO_API_SECRET": "s",
        "TWILIO_REGION": "ie1",
        "TWILIO_EDGE": "dublin",
    }
    app = create_app(environ)
    kit = app.extensions["webhook_kit"]
    assert kit.pipeline(app).settings.account_sid == account
    client = kit.sender(app).client
    assert (client.account_sid, client.username) == (account, "SK" + "2" * 32)
    assert (client.region, client.edge) == ("ie1", "dublin")
