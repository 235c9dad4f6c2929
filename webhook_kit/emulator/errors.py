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
