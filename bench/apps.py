"""The apps webhook_kit is measured against, each served by ``gunicorn bench.apps:NAME``.

They answer on webhook_kit's paths, so one signed request file fits every app, and answer
``GET /healthz`` for the readiness probe. ``REPLY`` is, byte for byte, what webhook_kit's
echo bot answers to the benchmark's message.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask, Response, abort, request
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]
from twilio.twiml.messaging_response import MessagingResponse  # type: ignore[import-untyped]

MESSAGES = "/twilio/messages"
STATUS = "/twilio/status"
BODY = "Hello"
TWIML_TYPE = "text/xml; charset=utf-8"
REPLY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Response><Message>Echo: '
    + BODY.encode()
    + b"</Message></Response>"
)
EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def raw(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The ceiling: plain WSGI answering the constant reply without reading the request."""
    start_response("200 OK", [("Content-Type", TWIML_TYPE), ("Content-Length", str(len(REPLY)))])
    return [REPLY]


bare_flask = Flask("bench.bare_flask")


@bare_flask.post(MESSAGES)
def bare_message() -> Response:
    """Parse the form as any Flask view does, answer the constant reply."""
    request.form.get("Body")
    return Response(REPLY, content_type=TWIML_TYPE)


@bare_flask.post(STATUS)
def bare_status() -> Response:
    """Parse the form, answer an empty ``<Response/>``."""
    request.form.get("MessageStatus")
    return Response(EMPTY, content_type=TWIML_TYPE)


twilio_flask = Flask("bench.twilio_flask")


@twilio_flask.post(MESSAGES)
def twilio_message() -> str:
    """Twilio's documented Flask recipe: validate the signature, echo with MessagingResponse."""
    validator = RequestValidator(os.environ.get("TWILIO_AUTH_TOKEN"))
    if not validator.validate(
        request.url, request.form, request.headers.get("X-Twilio-Signature", "")
    ):
        abort(403)
    reply = MessagingResponse()
    reply.message(f"Echo: {request.form['Body']}")
    return str(reply)


twilio_sqlite = Flask("bench.twilio_sqlite")
_seen: dict[int, sqlite3.Connection] = {}  # one connection per worker process


def _seen_db() -> sqlite3.Connection:
    """The hand-written dedupe table, in the file ``WEBHOOK_KIT_STORE`` names."""
    db = _seen.get(os.getpid())
    if db is None:
        path = os.environ["WEBHOOK_KIT_STORE"].removeprefix("sqlite:///")
        db = sqlite3.connect(path, timeout=5.0, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS seen (sid TEXT PRIMARY KEY, reply TEXT NOT NULL)")
        _seen[os.getpid()] = db
    return db


@twilio_sqlite.post(MESSAGES)
def twilio_sqlite_message() -> str:
    """What the kit replaces when a retry must not run twice: Twilio's recipe plus a table of
    seen MessageSids in SQLite (WAL), a retry answered with the stored reply."""
    validator = RequestValidator(os.environ.get("TWILIO_AUTH_TOKEN"))
    if not validator.validate(
        request.url, request.form, request.headers.get("X-Twilio-Signature", "")
    ):
        abort(403)
    db = _seen_db()
    sid = request.form["MessageSid"]
    row = db.execute("SELECT reply FROM seen WHERE sid = ?", (sid,)).fetchone()
    if row is not None:
        return str(row[0])
    reply = MessagingResponse()
    reply.message(f"Echo: {request.form['Body']}")
    answer = str(reply)
    db.execute("INSERT OR IGNORE INTO seen (sid, reply) VALUES (?, ?)", (sid, answer))
    return answer


twilio_postgres = Flask("bench.twilio_postgres")
_pg: dict[int, Any] = {}  # one connection per worker process


def _pg_db() -> Any:
    """The hand-written dedupe table in PostgreSQL, in the schema ``WEBHOOK_KIT_STORE`` names
    (``postgresql://...?schema=NAME``); each statement commits synchronously."""
    import psycopg

    db = _pg.get(os.getpid())
    if db is None:
        url, _, query = os.environ["WEBHOOK_KIT_STORE"].partition("?")
        schema = dict(parse_qsl(query))["schema"]
        db = psycopg.connect(url, autocommit=True)
        db.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        db.execute(f'SET search_path TO "{schema}"')
        db.execute("CREATE TABLE IF NOT EXISTS seen (sid text PRIMARY KEY, reply text NOT NULL)")
        _pg[os.getpid()] = db
    return db


@twilio_postgres.post(MESSAGES)
def twilio_postgres_message() -> str:
    """The same recipe on PostgreSQL: validate, build the TwiML, ``INSERT ... ON CONFLICT DO
    NOTHING`` with a synchronous commit; a retry gets the stored reply."""
    validator = RequestValidator(os.environ.get("TWILIO_AUTH_TOKEN"))
    if not validator.validate(
        request.url, request.form, request.headers.get("X-Twilio-Signature", "")
    ):
        abort(403)
    db = _pg_db()
    sid = request.form["MessageSid"]
    reply = MessagingResponse()
    reply.message(f"Echo: {request.form['Body']}")
    answer = str(reply)
    inserted = db.execute(
        "INSERT INTO seen (sid, reply) VALUES (%s, %s) ON CONFLICT DO NOTHING", (sid, answer)
    ).rowcount
    if not inserted:
        row = db.execute("SELECT reply FROM seen WHERE sid = %s", (sid,)).fetchone()
        return str(row[0])
    return answer


def _healthz() -> str:
    return "ok\n"


for _app in (bare_flask, twilio_flask, twilio_sqlite, twilio_postgres):
    _app.add_url_rule("/healthz", "healthz", _healthz)


# -- the emulator's baseline: a bare Flask JSON endpoint ---------------------------------

bare_json = Flask("bench.bare_json")
_MESSAGE_JSON = {"sid": "SM" + "0" * 32, "status": "queued", "body": BODY}
_received = {"count": 0}


@bare_json.post("/2010-04-01/Accounts/<account_sid>/Messages.json")
def bare_create(account_sid: str) -> tuple[dict[str, str], int]:
    """Parse the form, answer a constant Message-like JSON with 201, as a create would."""
    request.form.get("Body")
    return {**_MESSAGE_JSON, "account_sid": account_sid}, 201


@bare_json.post(STATUS)
def bare_callback() -> Response:
    """Count a status callback: the receiver the emulator's callbacks are timed against."""
    request.form.get("MessageStatus")
    _received["count"] += 1
    return Response(EMPTY, content_type=TWIML_TYPE)


@bare_json.get("/count")
def bare_count() -> dict[str, int]:
    return dict(_received)


@bare_json.post("/reset")
def bare_reset() -> dict[str, int]:
    _received["count"] = 0
    return dict(_received)


bare_json.add_url_rule("/healthz", "healthz", _healthz)
