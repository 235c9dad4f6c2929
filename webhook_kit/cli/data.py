"""The data commands: the delivery ``ledger``, ``conversations`` and ``opt-outs`` kept in the
store the server uses.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

import click

from ..errors import WebhookKitError
from ..ledger import Direction, Ledger, record_json
from ..optout import OptOuts
from ..status import MessageStatus
from .common import JSON_OPTION, STORE_OPTION, T, fail, moment, open_store, table, using_store


@click.group()
def conversations() -> None:
    """Conversations kept in the store."""


@conversations.command("purge")
@click.option("--address", required=True, help="The person's address, e.g. +14155550100.")
@STORE_OPTION
def conversations_purge(*, address: str, store: str | None) -> None:
    """Remove everything kept about one person (a data-subject request).

    Deletes their conversations (state and history) and every ledger record of a message
    to or from them. Their opt-out records stay, so that they are not texted again.
    """
    if not address.strip():
        fail("--address is empty: name the person's number, e.g. +14155550100")
    with using_store(store) as opened:
        removed = opened.purge_address(address)
    click.echo(f"removed {removed} conversation(s) and ledger record(s) of {address}")


@click.group("opt-outs")
def opt_outs() -> None:
    """The opt-out registry: who replied STOP to which sender."""


@opt_outs.command("export")
@click.option("--sender", help="Only this number or Messaging Service SID.")
@STORE_OPTION
def opt_outs_export(*, sender: str | None, store: str | None) -> None:
    """Write every opt-out record as CSV to standard output."""
    with using_store(store) as opened:
        OptOuts(opened).export_csv(sys.stdout, sender)


@opt_outs.command("import")
@click.argument("path", type=click.File("r", encoding="utf-8-sig"))
@STORE_OPTION
def opt_outs_import(*, path: TextIO, store: str | None) -> None:
    """Read opt-out records from CSV (columns sender, address, optionally opted_out)."""
    try:
        text = io.StringIO(path.read())
    except UnicodeDecodeError as error:
        fail(f"{path.name} is not UTF-8 text ({error.reason} at byte {error.start})")
    with using_store(store, create=True) as opened:
        count = OptOuts(opened).import_csv(text)
    click.echo(f"imported {count} opt-out record(s)")


@click.group()
def ledger() -> None:
    """Query the delivery ledger (the store named by WEBHOOK_KIT_STORE, as the server uses)."""


@ledger.command("show")
@click.argument("sid")
@JSON_OPTION
def ledger_show(sid: str, as_json: bool) -> None:
    """Show one message and its callback history."""
    record = _ledger(lambda book: book.get(sid))
    if record is None:
        fail(f"{sid} is not in the ledger")
    if as_json:
        click.echo(json.dumps(record_json(record), indent=2))
        return
    for name, value in record_json(record).items():
        if name != "history":
            click.echo(f"{name:<13} {'' if value is None else value}")
    click.echo(f"history       {len(record.history)} callback(s)")
    for event in record.history:
        how = {"reconcile": " (reconciled)", "event-streams": " (event streams)"}.get(
            event.source, ""
        )
        code = f" error {event.error_code}" if event.error_code else ""
        click.echo(f"  {event.received_at.isoformat()}  {event.status.value}{code}{how}")


@ledger.command("find")
@click.option("--ref", help="Your reference given to send(ref=...).")
@click.option("--to", help="Recipient address.")
@click.option("--from", "from_", help="Sender address.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([status.value for status in MessageStatus], case_sensitive=False),
    help="Status; repeat for several.",
)
@click.option(
    "--direction",
    type=click.Choice([direction.value for direction in Direction], case_sensitive=False),
)
@click.option("--since", help="Created at or after: 1h, 30m, 2d, or an ISO time.")
@click.option("--until", help="Created before: 1h, 30m, 2d, or an ISO time.")
@click.option("--limit", default=50, show_default=True, help="Records per page.")
@click.option("--cursor", help="The cursor printed after the previous page.")
@JSON_OPTION
def ledger_find(
    *,
    ref: str | None,
    to: str | None,
    from_: str | None,
    statuses: Sequence[str],
    direction: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List messages matching every given filter, newest first."""
    start, end = moment(since, "--since"), moment(until, "--until")
    page = _ledger(
        lambda book: book.find(
            ref=ref,
            to=to,
            from_=from_,
            status=list(statuses),
            direction=direction,
            since=start,
            until=end,
            limit=limit,
            cursor=cursor,
        )
    )
    if as_json:
        records = [record_json(record) for record in page]
        click.echo(json.dumps({"records": records, "cursor": page.cursor}, indent=2))
        return
    rows = [
        (
            record.message_sid,
            record.direction.value if record.direction else "",
            record.status.value if record.status else "",
            str(record.error_code or ""),
            record.to or "",
            record.from_ or "",
            record.created_at.strftime("%Y-%m-%d %H:%M:%S") if record.created_at else "",
            record.ref or "",
        )
        for record in page
    ]
    table(("SID", "DIRECTION", "STATUS", "ERROR", "TO", "FROM", "CREATED (UTC)", "REF"), rows)
    if page.cursor:
        click.echo(f"more: --cursor {page.cursor}")


@ledger.command("stats")
@click.option("--since", default="1h", show_default=True, help="1h, 30m, 2d, or an ISO time.")
@JSON_OPTION
def ledger_stats(since: str, as_json: bool) -> None:
    """Counts by status and error code, delivery rate and sent->delivered latency."""
    start = moment(since, "--since")
    stats = _ledger(lambda book: book.stats(since=start))
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(stats), indent=2))
        return
    click.echo(f"messages       {stats.total} since {since}")
    rate = "-" if stats.delivery_rate is None else f"{stats.delivery_rate:.1%}"
    click.echo(f"delivery rate  {rate} of the messages that reached a final status")
    if stats.latency:
        figures = ", ".join(f"{name} {value:.2f}s" for name, value in stats.latency.items())
        click.echo(f"sent->delivered {figures}")
    table(("STATUS", "COUNT"), [(name, str(count)) for name, count in stats.by_status.items()])
    if stats.by_error_code:
        errors = [(str(code), str(count)) for code, count in stats.by_error_code.items()]
        table(("ERROR", "COUNT"), errors)


def _ledger(query: Callable[[Ledger], T]) -> T:
    try:
        return query(Ledger(open_store(None)))
    except WebhookKitError as error:
        fail(str(error))
