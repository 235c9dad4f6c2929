"""Test helpers for the emulator: the spec's schemas, and a client that keeps every response.

The schemas come from tests/data/twilio-oai-messages.json (a subset of Twilio's OpenAPI spec,
its source named inside), never retyped: every JSON body the official client receives is
validated against them, with exactly the schema's keys (the spec marks none required).
"""

from __future__ import annotations

import json
import re
import threading
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from flask import Flask
from jsonschema import FormatChecker
from openapi_schema_validator import OAS30Validator
from twilio.base.exceptions import TwilioRestException
from twilio.http.response import Response
from twilio.rest import Client

from webhook_kit import WebhookKit
from webhook_kit.emulator import Emulator
from webhook_kit.emulator.client import EmulatorHttpClient
from webhook_kit.emulator.throughput import Throughput

SPEC = json.loads((Path(__file__).parent / "data" / "twilio-oai-messages.json").read_text())
COMPONENTS = SPEC["components"]
PATHS = SPEC["paths"]
MESSAGES = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
MEDIA = "/2010-04-01/Accounts/{AccountSid}/Messages/{MessageSid}/Media.json"

formats = FormatChecker()


@formats.checks("date-time-rfc-2822", raises=(TypeError, ValueError))
def _rfc2822(value: object) -> bool:
    return not isinstance(value, str) or parsedate_to_datetime(value) is not None


def _schema(schema: dict[str, Any]) -> OAS30Validator:
    return OAS30Validator({**schema, "components": COMPONENTS}, format_checker=formats)


def _list_schema(path: str) -> dict[str, Any]:
    schema: dict[str, Any] = PATHS[path]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ]
    return schema


MESSAGE_SCHEMA = COMPONENTS["schemas"]["api.v2010.account.message"]
MEDIA_SCHEMA = COMPONENTS["schemas"]["api.v2010.account.message.media"]
LIST_SCHEMA = _list_schema(MESSAGES)
MEDIA_LIST_SCHEMA = _list_schema(MEDIA)
ERROR_KEYS = {"code", "message", "more_info", "status"}


def check_message(payload: dict[str, Any]) -> None:
    _schema(MESSAGE_SCHEMA).validate(payload)
    assert set(payload) == set(MESSAGE_SCHEMA["properties"])


def check_media(payload: dict[str, Any]) -> None:
    _schema(MEDIA_SCHEMA).validate(payload)
    assert set(payload) == set(MEDIA_SCHEMA["properties"])


def check_response(method: str, url: str, status: int, text: str) -> None:
    """Validate one emulator response against the schema its URL and method call for."""
    if status == 204:
        assert text == ""
        return
    payload = json.loads(text)
    if status >= 400:
        assert set(payload) == ERROR_KEYS and payload["status"] == status
        assert payload["more_info"].endswith(str(payload["code"]))
        return
    path = url.split("?", maxsplit=1)[0]
    if re.search(r"/Messages\.json$", path) and method == "GET":
        _schema(LIST_SCHEMA).validate(payload)
        assert set(payload) == set(LIST_SCHEMA["properties"])
        for message in payload["messages"]:
            check_message(message)
    elif path.endswith("/Media.json"):
        _schema(MEDIA_LIST_SCHEMA).validate(payload)
        assert set(payload) == set(MEDIA_LIST_SCHEMA["properties"])
        for media in payload["media_list"]:
            check_media(media)
    elif "/Media/" in path:
        check_media(payload)
    else:
        check_message(payload)


class RecordingHttpClient(EmulatorHttpClient):
    """Keeps (method, url, status, body) of every response, for schema checks."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.seen: list[tuple[str, str, int, str]] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        response = super().request(method, url, *args, **kwargs)
        self.seen.append((method, url, response.status_code, response.text))
        return response


def recording_client(emulator: Emulator) -> tuple[Client, RecordingHttpClient]:
    http = RecordingHttpClient(emulator.url)
    return Client(emulator.account_sid, emulator.auth_token, http_client=http), http


class Receiver:
    """A loopback HTTP server standing in for an app: records each request, answers per path."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], list[tuple[str, str]]]] = []
        #: Every request, GET included: (method, path with query, headers, form).
        self.requests: list[tuple[str, str, dict[str, str], list[tuple[str, str]]]] = []
        self.answers: dict[str, tuple[int, str, bytes]] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.do_POST()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True)
                headers = dict(self.headers.items())
                with receiver._lock:
                    receiver.requests.append((self.command, self.path, headers, form))
                    if self.command == "POST":
                        receiver.posts.append((self.path, headers, form))
                status, kind, body = receiver.answers.get(
                    self.path.split("?")[0], (200, "text/xml", b"<Response/>")
                )
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(
            target=lambda: self.server.serve_forever(poll_interval=0.05), daemon=True
        )
        self.thread.start()

    def answer(self, path: str, body: str, status: int = 200, kind: str = "text/xml") -> None:
        self.answers[path] = (status, kind, body.encode())

    def forms(self, path: str) -> list[dict[str, str]]:
        with self._lock:
            return [dict(form) for p, _, form in self.posts if p.split("?")[0] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


#: Sender queues that never hold a message back, for tests about something else.
UNTHROTTLED = Throughput.unqueued()


def error_of(call: object) -> TwilioRestException:
    """The Twilio error a client call raises (the call must raise one)."""
    with pytest.raises(TwilioRestException) as caught:
        assert callable(call)
        call()
    return caught.value


def bot_app(kit: WebhookKit, emulator: Emulator, name: str = "bot") -> Flask:
    """A Flask app serving ``kit`` as https://bot.test, sending through ``emulator`` with its
    account (mount it there for the emulator's webhooks to reach it)."""
    app = Flask(name)
    app.config.update(
        WEBHOOK_KIT_AUTH_TOKEN=emulator.auth_token,
        WEBHOOK_KIT_ACCOUNT_SID=emulator.account_sid,
        WEBHOOK_KIT_STORE="memory://",
        WEBHOOK_KIT_PUBLIC_URL="https://bot.test",
        WEBHOOK_KIT_TWILIO_BASE_URL=emulator.url,
    )
    kit.init_app(app)
    return app
