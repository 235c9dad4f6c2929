"""A bot for the serialisation tests: every message adds one to the conversation's tally.

The handler reads the tally, sleeps ``TALLY_DELAY`` seconds, then writes it back: two
messages of one person that ran at once would lose one increment.
"""

from __future__ import annotations

import os
import time

from webhook_kit import InboundMessage, WebhookKit
from webhook_kit.conversation import Conversation

kit = WebhookKit()


@kit.on_message(keyword="FAIL")
def fail(message: InboundMessage, conversation: Conversation) -> str:
    conversation.state["tally"] = -1000  # never saved: the handler raises
    raise RuntimeError("asked to fail")


@kit.on_message(keyword="BYE")
def bye(message: InboundMessage, conversation: Conversation) -> str:
    conversation.end()
    return "bye"


@kit.on_message(keyword="WAIT")
def wait(message: InboundMessage, conversation: Conversation) -> str:
    conversation.timeout_after(0.2)
    return "waiting"


@kit.on_timeout
def silent(conversation: Conversation) -> None:
    conversation.state["timeouts"] = int(conversation.state.get("timeouts", 0)) + 1


@kit.on_message()
def tally(message: InboundMessage, conversation: Conversation) -> str:
    count = int(conversation.state.get("tally", 0))
    time.sleep(float(os.environ.get("TALLY_DELAY", "0.02")))
    conversation.state["tally"] = count + 1
    return f"tally {count + 1}"
