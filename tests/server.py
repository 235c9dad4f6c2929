"""Run ``gunicorn wsgi:app`` as a subprocess on a free loopback port and talk HTTP to it."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urlsplit

from webhook_kit.emulator.throughput import UNQUEUED
from webhook_kit.signature import compute_signature

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "e2e-test-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_server(
    port: int,
    process: subprocess.Popen[bytes] | None = None,
    name: str = "the server",
    *,
    path: str | None = None,
    output: Callable[[], str] = lambda: "",
    seconds: float = 30,
) -> None:
    """Return once 127.0.0.1:``port`` accepts connections (with ``path``: answers a GET of it
    with 200). RuntimeError, with ``output()``, if ``process`` exits first; RuntimeError if
    ``seconds`` pass: a server that never comes up fails its test rather than hanging it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{name} exited early: {output()}")
        try:
            if path is None:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                return
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                connection.request("GET", path)
                if connection.getresponse().status == 200:
                    return
            finally:
                connection.close()
        except OSError:
            pass
        time.sleep(0.05)
    doing = f"answer {path}" if path else "listen"
    raise RuntimeError(f"{name} did not {doing} on port {port} within {seconds:g} s")


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def text(self) -> str:
        return self.body.decode()


class ServerProcess:
    """A server subprocess on a free loopback port, its stderr kept in a file (an unread pipe
    could fill and stall it); stopped with SIGTERM, killed if it lingers."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._output = ""

    def _start(
        self, args: list[str], env: Mapping[str, str], name: str, health: str, cwd: Path | None
    ) -> None:
        """Start it and return once ``health`` answers 200; stopped again if it never does."""
        self.process = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=self._log
        )
        try:
            wait_for_server(self.port, self.process, name, path=health, output=self.stderr_so_far)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._log.closed and self.process is not None and self.process.poll() is not None:
            self._output = self.stderr_so_far()
            self._log.close()

    def stderr(self) -> str:
        """Everything it wrote to stderr; stops it first."""
        self.stop()
        return self._output

    def stderr_so_far(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")


class Gunicorn(ServerProcess):
    """A gunicorn process serving wsgi:app; stops (and reaps its workers) on exit."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        workers: int = 1,
        extra: Iterable[str] = (),
        wrapper: Iterable[str] = (),
    ):
        super().__init__()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
            **env,
        }
        self.args = [
            *wrapper, sys.executable, "-m", "gunicorn", "wsgi:app",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(workers),
            "--chdir", str(ROOT),
            "--config", str(ROOT / "gunicorn.conf.py"),
            "--access-logfile", "/dev/null",
            "--log-level", "warning",
            *extra,
        ]  # fmt: skip

    def __enter__(self) -> Gunicorn:
        self._start(self.args, self.env, "gunicorn", "/healthz", None)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    # -- HTTP -----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
            return Reply(response.status, response.read(), dict(response.getheaders()))
        finally:
            connection.close()

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post_signed(
        self,
        path: str,
        fields: Mapping[str, str] | Iterable[tuple[str, str]],
        *,
        signed_url: str | None = None,
        token: str = TOKEN,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """POST a form signed the way Twilio signs it for ``signed_url`` (default: this server)."""
        pairs = list(fields.items() if isinstance(fields, Mapping) else fields)
        url = signed_url or self.base + path
        signature = compute_signature(url, pairs, token)
        request_path = path if signed_url is None else _path_of(signed_url)
        return self.request(
            "POST",
            request_path,
            urlencode(pairs).encode(),
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
                **(headers or {}),
            },
        )


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


class RedisServer:
    """A private redis-server on a free loopback port, for tests that pause or kill it.

    Never the shared server on 6379: other tests (and other people) use that one.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.kill()

    def start(self) -> RedisServer:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused process cannot die cleanly
            self.process.kill()
            self.process.wait()
        self.process = None


class EmulatorProcess(ServerProcess):
    """``webhook-kit emulator`` on a free loopback port, its senders unqueued (these tests are
    about webhooks, not sender queues)."""

    def __init__(self, account: str, token: str, *args: str) -> None:
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"
        basic = base64.b64encode(f"{account}:{token}".encode()).decode()
        self._authorization = f"Basic {basic}"
        command = [sys.executable, "-m", "webhook_kit.cli", "emulator", "--port", str(self.port)]
        env = {**os.environ, "TWILIO_ACCOUNT_SID": account, "TWILIO_AUTH_TOKEN": token}
        self._start([*command, *UNQUEUED, *args], env, "the emulator", "/_emulator/health", ROOT)

    def control(
        self, path: str, fields: Sequence[tuple[str, str]] | Mapping[str, str] | None = None
    ) -> Any:
        """GET (or, with ``fields``, POST) one of its control endpoints; the JSON answer."""
        request = urllib.request.Request(self.url + path)
        if fields is not None:
            request.data = urlencode(fields).encode()
        request.add_header("Authorization", self._authorization)
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None
