"""The servers under test, the signed request files that drive them, and wrk."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlencode

from webhook_kit.signature import compute_signature

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "webhooks.lua"
GUNICORN_CONF = ROOT / "bench" / "gunicorn_conf.py"
TOKEN = "bench5f0c0ffee5f0c0ffee5f0c0ffee5"
FORM_TYPE = "application/x-www-form-urlencoded"


#: The core the gunicorn server (master and worker) runs on, and the one wrk runs on.
SERVER_CPU, LOAD_CPU = 1, 0


class BenchError(RuntimeError):
    """The run cannot give a trustworthy number: an app misbehaved or a tool is missing."""


def ensure_wrk() -> str:
    """The path of wrk, installed from Debian's packages when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: apt-get install -y wrk", flush=True)
    install = ["apt-get", "install", "-y", "wrk"]
    if subprocess.run(install, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], check=False)
        subprocess.run(install, check=False)
    found = shutil.which("wrk")
    if not found:
        raise BenchError("wrk is still missing after apt-get install -y wrk")
    return found


class Payloads:
    """Distinct webhook forms of one shape, made once and signed anew for each server.

    The signature covers the URL and so the server's port: ``write`` signs with
    webhook_kit's ``compute_signature`` for the exact URL wrk will post to. Each server
    starts with an empty store, so forms may repeat across servers but never within one.
    """

    def __init__(self, factory: Callable[[], Mapping[str, str]]) -> None:
        self._factory = factory
        self._forms: list[tuple[list[tuple[str, str]], str]] = []

    def form(self, index: int) -> tuple[list[tuple[str, str]], str]:
        """The ``index``-th form as (pairs, url-encoded body)."""
        while len(self._forms) <= index:
            pairs = list(self._factory().items())
            self._forms.append((pairs, urlencode(pairs)))
        return self._forms[index]

    def write(self, path: Path, url: str, first: int, count: int) -> None:
        """Write forms ``first`` .. ``first + count - 1`` as ``signature<TAB>body`` lines."""
        self.form(first + count - 1)
        with path.open("w") as file:
            for pairs, body in self._forms[first : first + count]:
                file.write(f"{compute_signature(url, pairs, TOKEN)}\t{body}\n")


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes


class Server:
    """``gunicorn TARGET`` with sync workers on a free loopback port, run from the repo.

    One worker is pinned to its own core (see :func:`_pinned`); several are left to the
    scheduler. A context manager: it waits until ``GET /healthz`` answers and stops gunicorn
    (and, if need be, its workers) on exit, whatever the exit.
    """

    def __init__(self, target: str, env: Mapping[str, str], workers: int = 1) -> None:
        self.port = _free_port()
        self.args = [
            *(_pinned(SERVER_CPU) if workers == 1 else []),
            sys.executable, "-m", "gunicorn", target,
            "--config", str(GUNICORN_CONF),
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(workers),
            "--worker-class", "sync",
        ]  # fmt: skip
        # Only ``env`` configures the app: no stray WEBHOOK_KIT_* or GUNICORN_CMD_ARGS.
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("WEBHOOK_KIT_", "GUNICORN_"))
        }
        self.env.update(env)
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __exit__
        self._workers: list[int] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Server:
        try:
            self._process = subprocess.Popen(
                self.args, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=self._log
            )
            self._wait_ready()
            self._workers = self._children()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop()

    def worker_pid(self) -> int:
        """The one worker: the gunicorn master's child."""
        if len(self._workers) != 1:
            raise BenchError(f"expected one gunicorn worker, found {self._workers}")
        return self._workers[0]

    def rss_mb(self) -> float:
        """The worker's resident set size (VmRSS) in MB."""
        for line in Path(f"/proc/{self.worker_pid()}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise BenchError("no VmRSS in /proc/<worker>/status")

    def request(
        self, method: str, path: str, body: str = "", headers: Mapping[str, str] | None = None
    ) -> Reply:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body.encode(), headers=dict(headers or {}))
            response = connection.getresponse()
            return Reply(response.status, response.read())
        finally:
            connection.close()

    def post_form(self, path: str, body: str, signature: str) -> Reply:
        headers = {"Content-Type": FORM_TYPE, "X-Twilio-Signature": signature}
        return self.request("POST", path, body, headers)

    def errors(self) -> str:
        """What gunicorn and the app wrote to stderr so far."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def _wait_ready(self, timeout: float = 30.0) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BenchError(f"gunicorn exited at start:\n{self.errors()}")
            try:
                if self.request("GET", "/healthz").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise BenchError(f"gunicorn did not answer /healthz within {timeout:g} s")

    def _children(self) -> list[int]:
        assert self._process is not None
        pid = self._process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(child) for child in children.split()]

    def _stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pid in self._workers:  # only left behind if the master was killed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._workers = []
        self._log.close()


@dataclass(frozen=True)
class Load:
    """What one wrk run measured."""

    requests: int
    seconds: float
    #: Webhooks wrk handed out (more than ``prepared`` means some were sent twice).
    sent: int
    prepared: int
    non2xx: int
    socket_errors: int
    timeouts: int
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def wrapped(self) -> bool:
        return self.sent > self.prepared


def run_wrk(
    wrk: str,
    url: str,
    requests: Path,
    *,
    duration: int,
    connections: int,
    threads: int,
    drain: bool = False,
    pinned: bool = True,
) -> Load:
    """Drive ``url`` with the signed requests in ``requests`` for ``duration`` seconds.

    With ``drain`` wrk stops as soon as every request went out (``duration`` only bounds it).
    ``pinned`` keeps wrk on its own core, apart from a pinned server.
    """
    args = [
        *(_pinned(LOAD_CPU) if pinned else []),
        wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
        "-s", str(LUA), url, "--", str(requests), str(threads),
    ]  # fmt: skip
    if drain:
        args.append("drain")
    with subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as wrk_run:
        try:
            early = _interrupt_when_exhausted(wrk_run, threads) if drain else ""
            output, errors = wrk_run.communicate(timeout=duration + 30)
        except BaseException:
            wrk_run.kill()
            raise
    lines = (early + output).splitlines()
    summary = next((line for line in lines if line.startswith('{"requests"')), None)
    if wrk_run.returncode != 0 or summary is None:
        raise BenchError(f"wrk failed ({wrk_run.returncode}): {errors.strip() or output}")
    fields = json.loads(summary)
    return Load(
        requests=fields["requests"],
        seconds=fields["duration_us"] / 1e6,
        sent=fields["sent"],
        prepared=fields["prepared"],
        non2xx=fields["non2xx"],
        socket_errors=fields["socket_errors"],
        timeouts=fields["timeouts"],
        p50_ms=fields["p50_us"] / 1000,
        p99_ms=fields["p99_us"] / 1000,
    )


def _interrupt_when_exhausted(wrk_run: subprocess.Popen[str], threads: int) -> str:
    """Stop wrk (SIGINT: it still prints its summary) once every thread used its requests.

    Returns the output read meanwhile.
    """
    assert wrk_run.stdout is not None
    lines: list[str] = []
    exhausted = 0
    while exhausted < threads:
        line = wrk_run.stdout.readline()
        if not line:  # wrk ended by itself, at its duration
            break
        lines.append(line)
        exhausted += line.strip() == "exhausted"
    else:
        wrk_run.send_signal(signal.SIGINT)
    return "".join(lines)


def _pinned(cpu: int) -> list[str]:
    """``taskset`` prefix keeping the server and wrk on separate cores, for every app alike.

    On a 2-core machine the scheduler otherwise sometimes stacks wrk and the worker on one
    core, and a whole round runs a third slower. Nothing is pinned on a single core.
    """
    if os.cpu_count() == 1 or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(cpu)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
