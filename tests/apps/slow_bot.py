"""A bot whose only handler is slow and runs in the background (the jobs end-to-end tests).

``SLOW_BOT_SLEEP`` seconds per message; with ``SLOW_BOT_BROKER`` set, a Celery app on that
broker (queue ``SLOW_BOT_QUEUE``) runs the jobs instead of the embedded runner.
"""

from __future__ import annotations

import os
import time

from webhook_kit import InboundMessage, WebhookKit

kit = WebhookKit()


@kit.on_message(background=True, ack=os.environ.get("SLOW_BOT_ACK") or None)
def slow(message: InboundMessage) -> str:
    time.sleep(float(os.environ.get("SLOW_BOT_SLEEP", "1")))
    return f"Done: {message.body}"


if os.environ.get("SLOW_BOT_BROKER"):
    from celery import Celery

    celery = Celery("slow_bot", broker=os.environ["SLOW_BOT_BROKER"])
    celery.conf.update(
        task_default_queue=os.environ.get("SLOW_BOT_QUEUE", "celery"),
        # A killed worker's unacknowledged tasks come back after this long (Redis broker).
        broker_transport_options={"visibility_timeout": 4},
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
