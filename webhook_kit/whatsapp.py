"""WhatsApp's 24-hour customer-service window, as the app's own ledger sees it.

WhatsApp lets a business send free-form messages only within 24 hours of the user's latest
message; outside that window Twilio creates the message and then fails it with 63016, and
only an approved template (``ContentSid`` + ``ContentVariables``) goes through. The ledger
records every inbound message the app received, so the kit can tell before sending which
one a send must be: ``kit.send(..., fallback_template=Template("HX...", {"1": "Ann"}))``
sends the body inside the window and the template outside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from .ledger import Direction, Query, Records

#: How long a user's message keeps the window open.
WINDOW: Final = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Template:
    """A Content template (``HX...``) and its ``{{1}}``/``{{name}}`` values."""

    content_sid: str
    variables: Mapping[str, str] = field(default_factory=dict)


def is_whatsapp(address: str | None) -> bool:
    return bool(address) and str(address).startswith("whatsapp:")


def last_message_from(records: Records, user: str, business: str | None = None) -> datetime | None:
    """When ``user`` last wrote to ``business`` (any of the app's numbers if None)."""
    query = Query(from_=user, to=business, direction=Direction.INBOUND.value, limit=1)
    found = records.find_messages(query)
    return found[0].created_at if found else None


def window_open(
    records: Records, user: str, business: str | None = None, now: datetime | None = None
) -> bool:
    """Whether a free-form WhatsApp message to ``user`` would be delivered now."""
    last = last_message_from(records, user, business)
    return last is not None and (now or datetime.now(UTC)) - last < WINDOW


def template_needed(
    records: Records, to: str, from_: str | None, template: Template | None
) -> tuple[None, None, str, dict[str, str]] | None:
    """The send parameters of ``template`` when a WhatsApp send to ``to`` would fall outside
    the window (``body``, ``media_url``, ``content_sid``, ``content_variables``), else None."""
    if template is None or not is_whatsapp(to) or window_open(records, to, from_):
        return None
    return None, None, template.content_sid, dict(template.variables)
