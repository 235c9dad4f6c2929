"""``gunicorn -c python:webhook_kit.gunicorn_conf webhook_kit.wsgi:app``: the standalone app,
configured from the environment (``WEBHOOK_KIT_HANDLERS`` names your module)."""

import gc

from .standalone import create_app

app = create_app()
# What start-up built (modules, the app, its routes) lives as long as the worker: keep it out
# of the garbage collector's scans, which otherwise walk all of it again and again.
gc.collect()
gc.freeze()
