"""The emulator's HTTP surface, one module per resource family (moto's "responses").

``messages`` serves the 2010-04-01 Message resource with its Feedback and Media, ``numbers``
the IncomingPhoneNumber resource, ``streams`` Event Streams' Sinks and Subscriptions,
``webhooks`` the Webhooks configuration API; ``media_host`` is the second origin that answers media
bytes without credentials; ``control`` the
``/_emulator`` API that drives what Twilio never exposes (clock, handsets, logs); ``app``
assembles them behind Basic auth, the rate limit and Twilio-shaped errors. Each module only
translates HTTP to calls on the :class:`~webhook_kit.emulator.core.Account` and back.
"""

from __future__ import annotations

from .app import create_app
from .media_host import create_media_app

__all__ = ["create_app", "create_media_app"]
