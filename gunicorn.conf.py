"""gunicorn reads this file from the checkout: the packaged settings, webhook_kit.gunicorn_conf."""

from webhook_kit.gunicorn_conf import *  # noqa: F403
