"""What every ``webhook-kit`` command shares: the store the server uses, options, output.

Every failure a user can cause is one ``error:`` line and a non-zero exit (`fail`), never a
traceback.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import NoReturn, TypeVar

import click

from .. import startup
from ..errors import WebhookKitError
from ..stores import Store

T = TypeVar("T")
PORT = click.IntRange(0, 65535)
STORE_OPTION = click.option(
    "--store", help="Store URL (default: WEBHOOK_KIT_STORE, else the SQLite default)."
)


def environment(handlers: str | None) -> dict[str, str]:
    """The environment a command builds its app from: ``--handlers`` given explicitly, never
    written to ``os.environ`` (a command run in-process would leak it to what runs next)."""
    return {**os.environ, "WEBHOOK_KIT_HANDLERS": handlers} if handlers else dict(os.environ)


@contextmanager
def using_store(url: str | None, *, create: bool = False) -> Iterator[Store]:
    """The store the server uses (or ``url``); any WebhookKitError is one error line."""
    try:
        opened = open_store(url, create=create)
        try:
            yield opened
        finally:
            opened.close()
    except WebhookKitError as error:
        fail(str(error))


JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def open_store(url: str | None, *, create: bool = False) -> Store:
    """The server's store (or ``url``), resolved as the server resolves it; says which."""
    for mistake in startup.misspelt():
        click.echo(f"warning: {mistake}", err=True)
    store, described = startup.open_for_command(url, create=create)
    click.echo(f"store: {described}", err=True)
    return store


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LONGEST = 100 * 365 * 86400.0


def duration(text: str, option: str) -> float:
    """``90``, ``90s``, ``10m``, ``1h``, ``2d`` -> seconds (at most 100 years)."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= _LONGEST:  # also refuses nan and inf
        fail(f"{option} {text!r} is not a duration like 90s, 10m, 1h or 2d (up to 100 years)")
    return seconds


def moment(text: str | None, option: str) -> datetime | None:
    """A duration ago, or an ISO 8601 time (UTC unless it says otherwise)."""
    if text is None:
        return None
    if text[:1].isdigit() and not text[-1:].isdigit() and text[-1:] in _UNITS:
        return datetime.now(UTC) - timedelta(seconds=duration(text, option))
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{option} {text!r} is neither a duration (1h) nor an ISO time")
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` under ``header`` in aligned columns."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        click.echo("  ".join(cells).rstrip())


def check_url(url: str, example: str, option: str = "--url") -> None:
    """``--url`` must be a URL Twilio would call (the emulator's own rule, imported lazily)."""
    from ..emulator.resource import is_url

    if not is_url(url):
        fail(f"{option} {url!r} is not an http(s) URL, e.g. {example}")


def utf8(text: str, what: str) -> None:
    """Refuse text the shell passed as bytes that are not UTF-8 (surrogate escapes)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        fail(f"{what} is not valid UTF-8 text")


def fail(message: str) -> NoReturn:
    """One ``error:`` line on standard error, and exit 1."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)
