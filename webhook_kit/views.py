"""The Flask glue of the webhook routes: a blueprint whose views run the pipeline.

Behind Flask's request cycle each route's view hands the WSGI environ to the request path
(:mod:`webhook_kit.pipeline`) and turns its :class:`~webhook_kit.pipeline.Answer` into a
Flask response. In front of Flask, :class:`~webhook_kit.pipeline.DirectDispatch` answers the
same routes without building a Flask request.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Flask, Response, request

from .pipeline import Handle, Pipeline


def view(handle: Handle) -> Callable[[], Response]:
    """A Flask view running ``handle`` inside Flask's request cycle."""

    def respond() -> Response:
        answer = handle(request.environ)
        return Response(
            answer.body, answer.status, answer.headers, content_type=answer.content_type
        )

    return respond


def mount(app: Flask, pipeline: Pipeline, prefix: str) -> None:
    """Register the pipeline's routes on ``app`` under ``prefix`` as the ``webhook_kit``
    blueprint (``url_for("webhook_kit.status")`` works)."""
    blueprint = Blueprint("webhook_kit", __name__)
    for name, (handle, methods) in pipeline.routes.items():
        blueprint.add_url_rule(f"/{name}", name, view(handle), methods=sorted(methods))
    csrf = app.extensions.get("csrf")
    if csrf is not None and hasattr(csrf, "exempt"):  # Flask-WTF would reject Twilio
        csrf.exempt(blueprint)
    app.register_blueprint(blueprint, url_prefix=prefix)
