"""A bot for the send-and-track end-to-end test: notes callbacks that overtook the API answer.

A callback that finds its send's ``ref`` in the ledger while the record still lacks what the
API's answer brings (``num_segments``) was matched by its correlation token alone.
"""

from __future__ import annotations

import os

from webhook_kit import StatusCallback, WebhookKit

kit = WebhookKit()


@kit.on_status()
def note_early(update: StatusCallback) -> None:
    record = kit.ledger.get(update.message_sid)
    if record is not None and record.ref is not None and record.num_segments is None:
        with open(os.environ["EARLY_LOG"], "a", encoding="utf-8") as log:
            log.write(f"{update.message_sid}\n")
