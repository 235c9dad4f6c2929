"""The :class:`Emulator`: an :class:`~webhook_kit.emulator.core.Account` served over HTTP.

The account (the model) never starts or imports a server; this module puts the Flask app of
``http/`` in front of it on a werkzeug threaded server, and points official clients at it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Literal

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .core import Account
from .http import create_app, create_media_app

if TYPE_CHECKING:
    from flask import Flask
    from twilio.rest import Client

    from .clock import Clock
    from .lifecycle import Chaos, Timing
    from .throughput import Throughput


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: the request log (``Account.requests``) records each call."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class Emulator(Account):
    """An offline Twilio Messaging account: REST API, life cycle, signed webhooks.

    Use it as a context manager (or :meth:`start`/:meth:`stop`).

    :param host: The address to serve on.
    :param port: The API's port (0: a free one; :attr:`url` tells which).
    :param media_port: The media host's port (0: a free one), the second origin media bytes
        are redirected to, as Twilio redirects them.
    :param account_sid: The account's SID (default: one is made up).
    :param auth_token: Its auth token, which signs webhooks (default: one is made up).
    :param api_keys: ``{"SK...": secret}`` accepted as Basic credentials besides the token.
    :param state: Where numbers, services and messages live: ``memory://`` or
        ``sqlite:///path`` to keep them across restarts.
    :param clock: ``"manual"`` freezes time until :meth:`advance`; ``"real"`` runs it; or a
        :class:`~webhook_kit.emulator.clock.Clock` of your own.
    :param speed: How much faster than real time a real clock runs the life cycle.
    :param timing: How long each step of a message's life cycle takes.
    :param chaos: Status callbacks out of order, duplicated, late or dropped (default: none).
    :param seed: Seeds every random choice, so a run can be repeated.
    :param rate_limit: API requests per second beyond which the API answers 429 (default: no
        limit).
    :param throughput: The sender queues' rates (default: Twilio's;
        :meth:`Throughput.unqueued() <webhook_kit.emulator.throughput.Throughput.unqueued>`
        never holds a message back).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        media_port: int = 0,
        account_sid: str | None = None,
        auth_token: str | None = None,
        api_keys: dict[str, str] | None = None,
        state: str = "memory://",
        clock: Literal["real", "manual"] | Clock = "real",
        speed: float = 1.0,
        timing: Timing | None = None,
        chaos: Chaos | None = None,
        seed: int = 0,
        rate_limit: float | None = None,
        throughput: Throughput | None = None,
    ) -> None:
        super().__init__(
            account_sid=account_sid,
            auth_token=auth_token,
            api_keys=api_keys,
            state=state,
            clock=clock,
            speed=speed,
            timing=timing,
            chaos=chaos,
            seed=seed,
            rate_limit=rate_limit,
            throughput=throughput,
        )
        self.host = host
        self.port = port
        self.media_port = media_port
        self._servers: list[tuple[BaseWSGIServer, threading.Thread]] = []

    @property
    def url(self) -> str:
        """The base URL clients talk to, e.g. ``http://127.0.0.1:8010``."""
        return f"http://{self.host}:{self.port}"

    @property
    def media_base(self) -> str:
        """The media host's base URL (a different origin from :attr:`url`)."""
        return f"http://{self.host}:{self.media_port}"

    def start(self) -> Emulator:
        """Serve the API and the media host in background threads, and start the clock."""
        if not self._servers:
            media = self._serve(self.media_port, create_media_app(self))
            self.media_port = media.server_port
            api = self._serve(self.port, create_app(self, self.media_base, bind=self.host))
            self.port = api.server_port
            self.api_base = self.url
        super().start()
        return self

    def _serve(self, port: int, app: Flask) -> BaseWSGIServer:
        server = make_server(self.host, port, app, threaded=True, request_handler=_QuietHandler)
        thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.05),
            name="emulator-http",
            daemon=True,
        )
        thread.start()
        self._servers.append((server, thread))
        return server

    def stop(self) -> None:
        """Stop serving and the clock; pending tasks are kept for :meth:`advance` or a restart."""
        super().stop()
        for server, thread in self._servers:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
        self._servers.clear()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def client(self, **kwargs: Any) -> Client:
        """An official ``twilio.rest.Client`` whose requests all go to this emulator."""
        from .client import emulator_client  # the twilio package is optional until used

        return emulator_client(self.url, self.account_sid, self.auth_token, **kwargs)
