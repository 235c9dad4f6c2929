"""The bots of ``bench.jobs``: the same reply, slow in the background or instant inline."""

from __future__ import annotations

import os
import time

from webhook_kit import InboundMessage, WebhookKit

kit = WebhookKit()

if os.environ.get("BENCH_BACKGROUND") == "1":

    @kit.on_message(background=True, ack="One moment…")
    def slow(message: InboundMessage) -> str:
        time.sleep(float(os.environ.get("BENCH_SLEEP", "20")))
        return f"Done: {message.body}"

else:

    @kit.on_message()
    def instant(message: InboundMessage) -> str:
        return "One moment…"
