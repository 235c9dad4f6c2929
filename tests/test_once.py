"""once.py, the exactly-once policy: wait for a live holder, take over a dead one, complete,
release, and a store that fails on release never turns into an error of the request."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from webhook_kit.errors import InFlightError, StoreError
from webhook_kit.once import Claim, Once, Outcome, new_owner
from webhook_kit.stores import open_store
from webhook_kit.stores.memory import MemoryStore


def _claimed_by_a_dead_process(url: str, key: str) -> str:
    """Claim ``key`` in a forked child that then dies without releasing; its owner token."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        claim = open_store(url).claim(key, 60)
        os.write(write, claim.owner.encode())
        os._exit(0)
    os.close(write)
    owner = os.read(read, 200).decode()
    os.close(read)
    os.waitpid(pid, 0)
    return owner


def test_a_live_holder_is_waited_for_then_the_delivery_is_refused_409() -> None:
    store = MemoryStore()
    once = Once(store, lease=60, wait=0.05)
    held = store.claim("message:SM1", 60)
    assert held.outcome is Outcome.CLAIMED and not new_owner.is_dead(held.owner)
    with pytest.raises(InFlightError):
        once.lock("message:SM1")
    store.complete("message:SM1", held.owner, b"<Response/>")
    replay = once.lock("message:SM1")
    assert replay.outcome is Outcome.DONE and replay.answer == b"<Response/>"


def test_a_dead_holder_is_taken_over_at_once_by_settle_and_by_take(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/once.db"
    store = open_store(url)
    dead = _claimed_by_a_dead_process(url, "message:SM2")
    assert new_owner.is_dead(dead)
    once = Once(store, lease=60, wait=0.0)  # no waiting: only the takeover can win it
    claim = once.lock("message:SM2")
    assert claim.outcome is Outcome.CLAIMED and claim.owner != dead

    dead = _claimed_by_a_dead_process(url, "final:SM2")
    taken = once.take("final:SM2")
    assert taken.claim.outcome is Outcome.CLAIMED and taken.replaced == dead
    live = once.take("final:SM2")  # held by this live process now: BUSY, nothing replaced
    assert live.claim.outcome is Outcome.BUSY and live.replaced == ""


def test_finish_completes_and_reports_a_claim_taken_over_meanwhile() -> None:
    store = MemoryStore()
    once = Once(store, lease=60)
    claim = once.take("send:k").claim
    assert once.finish("send:k", claim, b"SM3")
    assert once.take("send:k").claim.answer == b"SM3"
    stranger = Claim(Outcome.CLAIMED, new_owner())
    assert not once.finish("send:other", stranger, b"")  # never held: nothing written
    assert once.take("send:other").claim.outcome is Outcome.CLAIMED


def test_release_frees_the_key_and_its_locks() -> None:
    store = MemoryStore()
    once = Once(store, lease=60)
    claim = once.take("message:SM4").claim
    lock = once.take("lock:+15550001111|+15550002222||sms").claim
    once.release("message:SM4", claim, ("lock:+15550001111|+15550002222||sms", lock.owner))
    assert once.take("message:SM4").claim.outcome is Outcome.CLAIMED
    assert once.take("lock:+15550001111|+15550002222||sms").claim.outcome is Outcome.CLAIMED


class _FailingStore(MemoryStore):
    """A memory store whose writes after the claim fail, as a store going down would."""

    def release(self, key: str, owner: str) -> None:
        raise StoreError("store down")

    def complete(self, *args: object, **kwargs: object) -> bool:
        raise StoreError("store down")


def test_a_failing_store_is_logged_on_release_and_complete_and_raised_by_finish(
    caplog: pytest.LogCaptureFixture,
) -> None:
    once = Once(_FailingStore(), lease=60)
    claim = once.take("message:SM5").claim
    with caplog.at_level(logging.WARNING, "webhook_kit"):
        once.release("message:SM5", claim)
        once.complete("message:SM5", claim, b"")
    assert "could not release message:SM5" in caplog.text
    assert "could not store the answer for message:SM5" in caplog.text
    with pytest.raises(StoreError):  # jobs must be durable before the ack: finish raises
        once.finish("message:SM5", claim, b"")
