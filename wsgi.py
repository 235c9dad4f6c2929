"""``gunicorn wsgi:app`` serves webhook_kit standalone, configured from the environment."""

from webhook_kit.standalone import create_app

app = create_app()
