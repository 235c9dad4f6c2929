"""Errors of the emulator: Twilio-shaped REST errors, and misuse of the Python API."""

from __future__ import annotations

from typing import Any

from ..errors import WebhookKitError
from .model import ERRORS_URL


class EmulatorError(WebhookKitError):
    """The emulator was asked for something it cannot do; the message says what to change."""


class ApiError(EmulatorError):
    """A REST request Twilio would refuse: answered with ``status`` and Twilio's error body."""

    def __init__(self, code: int, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def body(self) -> dict[str, Any]:
        """``{code, message, more_info, status}``, as api.twilio.com answers."""
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"{ERRORS_URL}{self.code}",
            "status": self.status,
        }


_PROBLEM_TITLES = {
    59000: "Validation Error",
    59100: "Resource Is Still In Use",
    59103: "Resource Already Exists",
    59202: "Security Guardrail Violation",
    20404: "Not Found",
}


class ProblemError(ApiError):
    """A Webhooks configuration API error: an RFC 9457 problem document (``type, title,
    status, detail, code``), not the 2010 API's body."""

    def body(self) -> dict[str, Any]:
        return {
            "type": f"https://www.twilio.com/docs/api/errors/{self.code}",
            "title": _PROBLEM_TITLES.get(self.code, "Error"),
            "status": self.status,
            "detail": self.message,
            "code": self.code,
        }
