"""How many bytes the memory store holds per inbound message, as the request path stores it.

The claim (with its answer kept for the retention) and the ledger record of each of
``count`` distinct inbound messages, measured with ``tracemalloc`` in this process: the
store's own allocations, not the interpreter's noise.
"""

from __future__ import annotations

import gc
import time
import tracemalloc

from webhook_kit.events import parse_inbound
from webhook_kit.records import MessageFacts
from webhook_kit.stores.memory import MemoryStore
from webhook_kit.testing import inbound_sms

from .apps import REPLY


def bytes_per_message(count: int = 100_000) -> float:
    """Traced bytes the store grew by, divided by ``count`` distinct inbound messages."""
    store = MemoryStore()
    # Distinct messages as Twilio sends them (the strings the request parsed, which the
    # record keeps), made before measuring.
    messages = [parse_inbound(inbound_sms()) for _ in range(count)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for message in messages:
        key = "message:" + message.message_sid
        claim = store.claim(key, 30.0, message=MessageFacts.inbound(message, time.time()))
        store.complete(key, claim.owner, REPLY)
    del messages
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / count
