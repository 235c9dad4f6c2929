"""gunicorn defaults for webhook_kit; every value can be overridden on the command line."""

import multiprocessing
import os

bind = os.environ.get("WEBHOOK_KIT_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
# Twilio waits 15 s for an answer; a worker stuck longer than that helps nobody.
timeout = 14
graceful_timeout = 10
keepalive = 5
accesslog = "-"
errorlog = "-"
