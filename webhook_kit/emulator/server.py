"""The :class:`Emulator`: an :class:`~webhook_kit.emulator.core.Account` served over HTTP.

The account (the model) never starts or imports a server; this module puts the Flask app of
``http/`` in front of it on a werkzeug threaded server, and points official clients at it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .core import Account
from .http import create_app

if TYPE_CHECKING:
    from twilio.rest import Client


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: the request log (``Account.requests``) records each call."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class Emulator(Account):
    """An offline Twilio Messaging account: REST API, life cycle, signed webhooks.

    Everything :class:`Account` takes, plus ``host:port`` to serve on (0: a free port). Use
    it as a context manager (or :meth:`start`/:meth:`stop`) to serve HTTP.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        super().__init__(**options)
        self.host = host
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL clients talk to, e.g. ``http://127.0.0.1:8010``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Emulator:
        """Serve HTTP in a background thread and start the clock."""
        if self._server is None:
            server = make_server(
                self.host, self.port, create_app(self), threaded=True, request_handler=_QuietHandler
            )
            self._server = server
            self.port = server.server_port
            self._thread = threading.Thread(
                target=lambda: server.serve_forever(poll_interval=0.05),
                name="emulator-http",
                daemon=True,
            )
            self._thread.start()
        super().start()
        return self

    def stop(self) -> None:
        """Stop serving and the clock; pending tasks are kept for :meth:`advance` or a restart."""
        super().stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def client(self, **kwargs: Any) -> Client:
        """An official ``twilio.rest.Client`` whose requests all go to this emulator."""
        from .client import emulator_client  # the twilio package is optional until used

        return emulator_client(self.url, self.account_sid, self.auth_token, **kwargs)
