"""``gunicorn -c python:webhook_kit.gunicorn_conf webhook_kit.wsgi:app``: the standalone app,
configured from the environment (``WEBHOOK_KIT_HANDLERS`` names your module).

``app`` is built on first access, so that importing this module does nothing by itself.
"""

from __future__ import annotations

import gc
from functools import cache
from typing import Any

from flask import Flask

from .standalone import create_app


@cache
def _build() -> Flask:
    app = create_app()
    # What start-up built (modules, the app, its routes) lives as long as the worker: keep it
    # out of the garbage collector's scans, which otherwise walk all of it again and again.
    gc.collect()
    gc.freeze()
    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return _build()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
