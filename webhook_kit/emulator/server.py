"""Serving the emulator under gunicorn: one worker process with many threads.

The emulator's state (messages, the scheduler's tasks, the handsets' opt-outs) lives in one
process, so gunicorn runs a single ``gthread`` worker: its threads share that state and its
keep-alive connections spare the official client (a ``requests`` session) a TCP handshake
per call. The master binds the socket (so port 0 is known before it starts) and the worker
builds the :class:`Emulator` after the fork: threads and SQLite connections never cross it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

from .core import Emulator
from .rest import create_app

#: Threads of the one worker: enough for the client's and the webhooks' concurrent calls.
THREADS = 16


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), inheritable by gunicorn."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def gunicorn_settings(sock: socket.socket, threads: int = THREADS) -> dict[str, Any]:
    """How the emulator is served: one ``gthread`` worker on ``sock`` (the bench serves its
    baseline app the same way)."""
    return {
        "bind": [f"fd://{sock.fileno()}"],
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads,
        "keepalive": 5,
        "graceful_timeout": 5,
        "loglevel": "warning",
    }


class EmulatorServer(BaseApplication):  # type: ignore[misc]
    """gunicorn serving the emulator ``build`` makes in the worker, on an open socket."""

    def __init__(
        self, build: Callable[[], Emulator], sock: socket.socket, threads: int = THREADS
    ) -> None:
        self.build = build
        self.sock = sock
        self.threads = threads
        self.emulator: Emulator | None = None
        super().__init__()

    def load_config(self) -> None:
        settings = {
            **gunicorn_settings(self.sock, self.threads),
            "post_worker_init": self._started,
            "worker_exit": self._stopped,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """In the worker: the emulator and its Flask app."""
        self.emulator = self.build()
        return create_app(self.emulator)

    def _started(self, worker: object) -> None:
        if self.emulator is not None:
            self.emulator.start(serve=False)

    def _stopped(self, server: object, worker: object) -> None:
        if self.emulator is not None:
            self.emulator.stop()
