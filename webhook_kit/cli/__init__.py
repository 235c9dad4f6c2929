"""The ``webhook-kit`` command, one module per audience: `operate` (serve, worker, doctor,
maintenance, reconcile, jobs), `data` (ledger, conversations, opt-outs) and `develop`
(simulate, twiml, segments, emulator). `common` holds what they share and `http` the one
client of the commands that talk to a server.

Every failure a user can cause (server unreachable, bad URL, missing token, unreadable
file) is one ``error:`` line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import click

from . import data, develop, operate


@click.group()
@click.version_option(package_name="webhook_kit")
def main() -> None:
    """Receive, test and debug Twilio messaging webhooks."""


for _command in (
    operate.serve,
    operate.worker,
    operate.doctor,
    operate.maintenance,
    operate.reconcile,
    operate.jobs,
    data.ledger,
    data.conversations,
    data.opt_outs,
    develop.simulate,
    develop.twiml,
    develop.segments,
    develop.emulator,
):
    main.add_command(_command)

__all__ = ["main"]
