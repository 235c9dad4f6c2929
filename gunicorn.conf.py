"""gunicorn defaults for webhook_kit; every value can be overridden on the command line."""

import glob
import multiprocessing
import os
import shutil
import tempfile
from typing import Any

bind = os.environ.get("WEBHOOK_KIT_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
# Twilio waits 15 s for an answer; a worker stuck longer than that helps nobody.
timeout = 14
graceful_timeout = 10
keepalive = 5
accesslog = "-"
errorlog = "-"

# Metrics (WEBHOOK_KIT_METRICS=1) under several workers: prometheus_client's multiprocess mode
# has each worker count in files in PROMETHEUS_MULTIPROC_DIR, and a scrape of /metrics on any
# worker adds them all up. It must be set before a worker imports prometheus_client, so here.
# Without it, a private directory is made for this server and removed when it stops; a
# directory you set is emptied of earlier runs' files when the server starts.
_metrics = os.environ.get("WEBHOOK_KIT_METRICS", "").strip().lower() in {"1", "true", "yes", "on"}
_own_metrics_dir = _metrics and not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="webhook_kit-metrics-")


def on_starting(server: object) -> None:
    if _metrics:
        for stale in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
            os.remove(stale)


def child_exit(server: object, worker: Any) -> None:
    """A dead worker's live gauges leave the sum; its counters stay counted."""
    if _metrics:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server: object) -> None:
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
