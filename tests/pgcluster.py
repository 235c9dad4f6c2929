"""A private PostgreSQL cluster in a temporary directory, for tests that stop the database.

Fault tests never touch the shared server on 5432: they start their own cluster with
``initdb``/``pg_ctl`` on a free loopback port (as the ``postgres`` user when run as root, which
``initdb`` refuses), stop and start it at will, and remove it afterwards.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from server import free_port


def _bin_dir() -> Path | None:
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    found.sort(key=lambda path: int(path.split("/")[4]))  # the newest major version last
    return Path(found[-1]).parent if found else None


def unavailable() -> str | None:
    """Why a private cluster cannot be started here, or None."""
    if _bin_dir() is None:
        return "no initdb under /usr/lib/postgresql/*/bin (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing"
    return None


class PrivateCluster:
    """``with PrivateCluster() as pg:`` a running cluster; ``pg.stop()``/``pg.start()`` at will."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        assert bin_dir is not None, unavailable()
        self._bin = bin_dir
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._dir = Path(tempfile.mkdtemp(prefix="wk-pg-"))
        self._data = self._dir / "data"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            account = pwd.getpwnam("postgres")
            os.chown(self._dir, account.pw_uid, account.pw_gid)

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self._bin / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def __enter__(self) -> PrivateCluster:
        try:
            self._run(
                "initdb", "-D", str(self._data), "--auth=trust", "--username=postgres",
                "--encoding=UTF8", "--no-sync",
            )  # fmt: skip
            self.start()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.stop(mode="immediate")
        finally:
            self._remove()

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self._dir}"
            " -c fsync=off -c shared_buffers=16MB -c max_connections=40"
        )
        self._run(
            "pg_ctl", "start", "-D", str(self._data), "-w", "-t", "30",
            "-l", str(self._dir / "log"), "-o", options,
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: it ends every session, as a restart does)."""
        if (self._data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(self._data), "-m", mode, "-w", "-t", "30")

    def pause(self) -> None:
        """SIGSTOP the server and every backend: connections stay open, nothing answers."""
        for pid in self._processes():
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self._processes():
            os.kill(pid, signal.SIGCONT)

    def _processes(self) -> list[int]:
        """The postmaster and all its descendants."""
        found = [int((self._data / "postmaster.pid").read_text().split()[0])]
        for pid in found:  # grows as it goes: children, then theirs
            children = Path(f"/proc/{pid}/task/{pid}/children")
            if children.exists():
                found += [int(child) for child in children.read_text().split()]
        return found

    def _remove(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)
