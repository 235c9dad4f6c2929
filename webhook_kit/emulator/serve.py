"""``webhook-kit emulator``: the account served by gunicorn, one worker process with threads.

The account's state (messages, the scheduler's tasks, the handsets' opt-outs) lives in one
process, so gunicorn runs a single ``gthread`` worker: its threads share that state, and its
keep-alive connections spare the official client (a ``requests`` session) a TCP handshake
per call. The master binds both sockets (the API and the media host, so their ports are known
before it starts); the worker builds the :class:`~webhook_kit.emulator.core.Account` after
the fork, so threads and SQLite connections never cross it. The in-process
:class:`~webhook_kit.emulator.server.Emulator` (werkzeug, threads) serves tests.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

from .core import Account
from .http import create_app, create_media_app

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: Threads of the one worker: enough for the clients' and the webhooks' concurrent calls.
THREADS = 16


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), inheritable by gunicorn."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def gunicorn_settings(sockets: list[socket.socket], threads: int = THREADS) -> dict[str, Any]:
    """How the emulator is served: one ``gthread`` worker on ``sockets`` (the bench serves
    its baseline app the same way)."""
    return {
        "bind": [f"fd://{sock.fileno()}" for sock in sockets],
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads,
        "keepalive": 5,
        "graceful_timeout": 5,
        "loglevel": "warning",
    }


def base_url(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _by_port(api: WSGIApplication, media: WSGIApplication, media_port: int) -> WSGIApplication:
    """One WSGI app for both sockets: the media host answers on its own port."""
    port = str(media_port)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        chosen = media if environ.get("SERVER_PORT") == port else api
        return chosen(environ, start_response)

    return app


class AccountServer(BaseApplication):  # type: ignore[misc]
    """gunicorn serving the account ``build`` makes in the worker, on open sockets."""

    def __init__(
        self,
        build: Callable[[], Account],
        api: socket.socket,
        media: socket.socket,
        threads: int = THREADS,
    ) -> None:
        self.build = build
        self.sockets = [api, media]  # gunicorn takes them over: their addresses are read now
        self.url, self.media_url = base_url(api), base_url(media)
        self.bind: str = api.getsockname()[0]  # loopback or not: who may open the inspector
        self.media_port: int = media.getsockname()[1]
        self.threads = threads
        self.account: Account | None = None
        super().__init__()

    def load_config(self) -> None:
        settings = {
            **gunicorn_settings(self.sockets, self.threads),
            "post_worker_init": self._started,
            "worker_exit": self._stopped,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> WSGIApplication:
        """In the worker: the account, its API app and its media host."""
        account = self.account = self.build()
        account.api_base = self.url
        api = create_app(account, self.media_url, bind=self.bind)
        return _by_port(api, create_media_app(account), self.media_port)

    def _started(self, worker: object) -> None:
        if self.account is not None:
            self.account.start()

    def _stopped(self, server: object, worker: object) -> None:
        if self.account is not None:
            self.account.stop()
