"""``gunicorn wsgi:app`` serves webhook_kit standalone, configured from the environment."""

import gc

from webhook_kit.standalone import create_app

app = create_app()
# What start-up built (modules, the app, its routes) lives as long as the worker: keep it out
# of the garbage collector's scans, which otherwise walk all of it again and again.
gc.collect()
gc.freeze()
