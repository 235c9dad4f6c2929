"""gunicorn settings for webhook_kit in production.

``gunicorn -c python:webhook_kit.gunicorn_conf webhook_kit.wsgi:app`` (``webhook-kit serve
--gunicorn`` runs the same). gunicorn's command line and ``GUNICORN_CMD_ARGS`` override any
value here. Before any worker starts, the master checks the configuration once (the app is
built and its store read in a short-lived child process, so your handlers module is still
imported fresh by every worker and a ``kill -HUP`` reload picks up new code): a mistake stops
the server with one ``error:`` line instead of a traceback in every worker, and a good start
logs one banner of what is in effect.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
import shutil
import sys
import tempfile
import traceback
from typing import Any

from . import startup
from .errors import WebhookKitError

__all__ = [
    "accesslog",
    "bind",
    "child_exit",
    "errorlog",
    "forwarded_allow_ips",
    "graceful_timeout",
    "keepalive",
    "on_exit",
    "on_starting",
    "timeout",
    "workers",
]

# WEBHOOK_KIT_BIND, else gunicorn's own convention for platforms that assign a port.
if os.environ.get("WEBHOOK_KIT_BIND"):
    bind = [os.environ["WEBHOOK_KIT_BIND"]]
elif os.environ.get("PORT"):
    bind = [f"0.0.0.0:{os.environ['PORT']}"]
else:
    bind = ["127.0.0.1:8000"]
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count() * 2 + 1)
# Twilio waits 15 s for an answer; a worker stuck longer than that helps nobody.
timeout = 14
graceful_timeout = 10
keepalive = 5
accesslog = "-"
errorlog = "-"
# Which proxies may set the scheme is WEBHOOK_KIT_PROXY_HOPS's decision (werkzeug's ProxyFix
# in the kit), not gunicorn's: by default gunicorn would believe X-Forwarded-Proto from any
# local process. Set FORWARDED_ALLOW_IPS only if other code of yours reads wsgi.url_scheme.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "")

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
    """Check the configuration and the store once, then log the banner (or stop)."""
    if _metrics:
        for stale in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
            os.remove(stale)
    if not _started_cleanly():
        on_exit(server)
        pidfile = getattr(server, "pidfile", None)  # gunicorn wrote it just before this hook
        if pidfile is not None:
            pidfile.unlink()
        sys.exit(1)  # before any socket is bound or worker started: gunicorn exits with 1


def _started_cleanly() -> bool:
    """Build the app as a worker will, in a child process that exits at once."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which leaves with os._exit
        code = 1
        try:
            startup.start()
            code = 0
        except WebhookKitError as error:
            print(f"error: {error}", file=sys.stderr)
        except BaseException:  # a bug, not a mistake of configuration: show where
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def child_exit(server: object, worker: Any) -> None:
    """A dead worker's live gauges leave the sum; its counters stay counted."""
    if _metrics:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: object) -> None:
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
