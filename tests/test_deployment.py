"""The deployment recipe of docs/deployment.md, run: nginx terminating TLS in front of gunicorn
on loopback, with PostgreSQL as the store, configured by the shipped files in examples/deploy/.

Twilio signs the https URL it requested; the kit behind nginx must rebuild exactly that URL
(WEBHOOK_KIT_PROXY_HOPS=1, or WEBHOOK_KIT_PUBLIC_URL), and say what to set when it cannot.
"""

from __future__ import annotations

import http.client
import os
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import require_service
from server import ROOT, free_port, wait_for_server

from webhook_kit.config import DEFAULTS, SERVER_KEYS, unknown_keys
from webhook_kit.signature import compute_signature
from webhook_kit.stores import open_store
from webhook_kit.testing import inbound_sms

DEPLOY = ROOT / "examples" / "deploy"
TOKEN = "deployment-test-token"
BOT = """from webhook_kit import WebhookKit

kit = WebhookKit()
kit.on_message()(lambda message: "Got " + message.body)
"""


def _replace(text: str, old: str, new: str) -> str:
    """Substitute a line of a shipped file: if the file changes, this test must change too."""
    assert text.count(old) == 1, f"{old!r} is no longer in the shipped file"
    return text.replace(old, new)


@dataclass
class Site:
    """nginx on a free loopback port with a self-signed certificate for ``localhost``."""

    port: int
    cert: Path
    directory: Path

    @property
    def base(self) -> str:
        return f"https://localhost:{self.port}"

    def post_signed(self, path: str, fields: Mapping[str, str]) -> tuple[int, str]:
        """POST as Twilio does: signed over the https URL it requested, over TLS."""
        url = self.base + path
        context = ssl.create_default_context(cafile=str(self.cert))
        connection = http.client.HTTPSConnection(
            "localhost", self.port, context=context, timeout=20
        )
        try:
            connection.request(
                "POST",
                path,
                body=urlencode(fields),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": compute_signature(url, fields, TOKEN),
                },
            )
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()


@pytest.fixture
def upstream() -> int:
    return free_port()


@pytest.fixture
def site(tmp_path: Path, upstream: int) -> Iterator[Site]:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    require_service(nginx is not None, "nginx is not installed (apt-get install -y nginx)")
    require_service(shutil.which("openssl") is not None, "openssl is not installed")
    assert nginx is not None
    directory = tmp_path / "nginx"
    directory.mkdir()
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    port = free_port()
    conf = (DEPLOY / "nginx.conf").read_text()
    conf = _replace(conf, "server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};")
    conf = _replace(conf, "listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    conf = _replace(conf, "server_name bot.example.com;", "server_name localhost;")
    conf = _replace(conf, "/etc/letsencrypt/live/bot.example.com/fullchain.pem;", f"{cert};")
    conf = _replace(conf, "/etc/letsencrypt/live/bot.example.com/privkey.pem;", f"{key};")
    (directory / "site.conf").write_text(conf)
    temp = "".join(
        f"    {kind}_temp_path {directory / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (directory / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"worker_processes 1;\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} warn;\ndaemon off;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n    access_log {directory / 'access.log'};\n{temp}"
        f"    include {directory / 'site.conf'};\n}}\n"
    )
    process = subprocess.Popen(
        [nginx, "-p", str(directory), "-c", str(directory / "nginx.conf"),
         "-e", str(directory / "error.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for_server(port, process, "nginx")
        yield Site(port, cert, directory)
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful: workers finish, then the master exits
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


class Service:
    """The systemd unit's ExecStart, run as systemd would: its WorkingDirectory and its
    EnvironmentFile (with this test's store, token, port), started and stopped by pid."""

    def __init__(self, directory: Path, environment: Mapping[str, str]) -> None:
        unit = _unit()
        command = shlex.split(unit["ExecStart"])
        assert Path(command[0]).name == "gunicorn"
        self.args = [sys.executable, "-m", "gunicorn", *command[1:]]
        env_file = dict(_assignments((DEPLOY / "webhook-kit.env").read_text()))
        assert unknown_keys(env_file, [*DEFAULTS, *SERVER_KEYS]) == []
        self.env = {**os.environ, **env_file, **environment}
        self.env.pop("PORT", None)
        self.directory = directory
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __exit__
        self.saved = ""
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Service:
        self.process = subprocess.Popen(
            self.args, cwd=self.directory, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        port = int(self.env["WEBHOOK_KIT_BIND"].rpartition(":")[2])
        wait_for_server(port, self.process, "gunicorn", output=self.output)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.saved = self.output()
        self.log.close()

    def output(self) -> str:
        """What gunicorn logged (stdout and stderr), so far or in all."""
        if self.log.closed:
            return self.saved
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


def _unit() -> dict[str, str]:
    return dict(_assignments((DEPLOY / "webhook-kit.service").read_text()))


def _assignments(text: str) -> Iterator[tuple[str, str]]:
    for line in text.splitlines():
        if line.strip() and not line.startswith(("#", "[")):
            name, _, value = line.partition("=")
            yield name.strip(), value.strip()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The service's working directory, with the user's handlers module."""
    directory = tmp_path / "srv"
    directory.mkdir()
    (directory / "mybot.py").write_text(BOT)
    return directory


def _environment(upstream: int, store: str, **settings: str) -> dict[str, str]:
    return {
        "TWILIO_AUTH_TOKEN": TOKEN,
        "WEBHOOK_KIT_STORE": store,
        "WEBHOOK_KIT_BIND": f"127.0.0.1:{upstream}",
        "WEB_CONCURRENCY": "1",
        **settings,
    }


def test_signatures_verify_through_nginx_with_the_documented_settings(
    site: Site, project: Path, upstream: int, postgres_url: str
) -> None:
    with Service(project, _environment(upstream, postgres_url)) as service:
        message = inbound_sms("hello")
        status, body = site.post_signed("/twilio/messages", message)
        assert (status, "Got hello" in body) == (200, True), service.output()
    banner = service.output()
    assert "store       postgresql://" in banner and "1 trusted proxy hop" in banner
    store = open_store(postgres_url)  # the webhook is in PostgreSQL's ledger
    try:
        record = store.get_message(message["MessageSid"])
        assert record is not None and record.body == "hello"
    finally:
        store.close()


def test_a_public_url_works_too(
    site: Site, project: Path, upstream: int, postgres_url: str
) -> None:
    settings = {"WEBHOOK_KIT_PROXY_HOPS": "0", "WEBHOOK_KIT_PUBLIC_URL": site.base}
    with Service(project, _environment(upstream, postgres_url, **settings)):
        status, body = site.post_signed("/twilio/messages", inbound_sms("hi"))
    assert (status, "Got hi" in body) == (200, True)


def test_without_the_proxy_settings_the_log_says_what_to_set(
    site: Site, project: Path, upstream: int, postgres_url: str
) -> None:
    settings = {"WEBHOOK_KIT_PROXY_HOPS": "0"}
    with Service(project, _environment(upstream, postgres_url, **settings)) as service:
        status, _ = site.post_signed("/twilio/messages", inbound_sms("hi"))
    assert status == 403
    log = service.output()  # nginx's Host is the bare host, the scheme gunicorn's own: http
    assert "rejected invalid signature for http://localhost/twilio/messages" in log
    assert "the request came through a proxy: set WEBHOOK_KIT_PROXY_HOPS or " in log


def test_the_unit_file_is_valid_for_systemd(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    require_service(analyze is not None, "systemd-analyze is not installed (the systemd package)")
    assert analyze is not None
    gunicorn = Path(sys.executable).with_name("gunicorn")
    unit = (DEPLOY / "webhook-kit.service").read_text()
    unit = _replace(unit, "/srv/webhook-kit/.venv/bin/gunicorn", str(gunicorn))
    unit = unit.replace("/srv/webhook-kit", str(tmp_path))
    (tmp_path / "webhook-kit.service").write_text(unit)
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "webhook-kit.service")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
