"""``gunicorn wsgi:app`` in a checkout: the packaged app (see webhook_kit/wsgi.py)."""

from webhook_kit.wsgi import app

__all__ = ["app"]
