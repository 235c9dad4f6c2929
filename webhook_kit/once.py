"""Exactly once: every rule of claiming a key, in the order a reader meets them.

A webhook (or a final-state hook, a conversation's timeout, a send with a ``key``) runs once
because it first *claims* an idempotency key in the store, atomically:

1. **claim**: the store answers CLAIMED (this call owns the key for a lease), DONE (finished
   earlier: replay its stored answer) or BUSY (held by an owner still at work);
2. **wait**: a webhook whose key is BUSY waits briefly (``WEBHOOK_KIT_CLAIM_WAIT``) for the
   holder, then answers 409 so that Twilio retries (:meth:`Once.settle`);
3. **take over**: an owner token names its host, process and start time, so a holder whose
   process is gone (``kill -9``, gunicorn's timeout) is replaced at once, by exactly one
   taker (``replace=owner``), instead of stranding the key until its lease ends;
4. **complete** the key with the answer to replay (and, in the same store step, the
   conversation and the background jobs), or **release** it when the handler or the store
   failed, so that a retry runs;
5. **abandoned** claims, sent to a store that then timed out, may still be applied later:
   the store remembers them (:class:`Abandoned`) and releases them once it answers again.

The stores implement the atomic steps (one call each); this module holds the policy above,
used by the request path, sending, and the conversations' timeouts alike.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import NamedTuple, Protocol, TypeVar

from .errors import InFlightError, StoreError
from .jobs import Job
from .process import process

log = logging.getLogger("webhook_kit")


# -- owners: who holds a claim, and whether it still lives -------------------------------


def _host_id() -> str:
    """Who can check a process id: one boot of one machine, in one pid namespace.

    Without ``/proc`` (not Linux) every process gets a random id, so owners are never
    judged dead by pid and a stranded claim frees itself when its lease ends.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as boot:
            seed = boot.read().strip() + str(os.stat("/proc/self/ns/pid").st_ino).encode()
    except OSError:
        seed = os.urandom(16)
    return hashlib.blake2b(seed, digest_size=6).hexdigest()


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot); None: no such process, "": unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
    except FileNotFoundError:
        return None
    except OSError:  # hidden or unreadable (hidepid): alive, as far as anyone can tell
        return ""
    return fields[19].decode() if len(fields) > 19 else ""


class _Owners:
    """Claim owner tokens ``host.pid.started.n``: unique, and telling whether the owner lives.

    The host id, pid and start time let any process on the same host see that the process
    holding a claim is gone (killed by gunicorn's timeout, ``kill -9``, OOM), so the next
    delivery takes the claim over at once instead of waiting out the lease.
    """

    def __init__(self) -> None:
        self.host = _host_id()
        self.reset()

    def reset(self) -> None:
        """A new prefix: called again in every forked process (gunicorn workers)."""
        pid = os.getpid()
        self._prefix = f"{self.host}.{pid}.{_start_time(pid) or '?'}."
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter)}"

    def is_dead(self, owner: str) -> bool:
        """True only if ``owner``'s process is known to be gone; False when in doubt."""
        host, _, rest = owner.partition(".")
        pid, _, rest = rest.partition(".")
        started = rest.rpartition(".")[0]
        if host != self.host or not pid.isdigit():
            return False  # another host or namespace: only the lease can tell
        current = _start_time(int(pid))
        if current is None:
            return True  # no such process
        # A different start time: the owner died and a new process got its pid.
        return started != "?" and current not in ("", started)


new_owner = _Owners()
process.at_fork(new_owner.reset)


# -- what a claim answers, and what completing one saves with it -------------------------


class Outcome(Enum):
    """How a claim on an idempotency key ended."""

    #: This request owns the key and must complete or release it.
    CLAIMED = "claimed"
    #: An earlier request finished; its answer is replayed.
    DONE = "done"
    #: An earlier request still holds the key.
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class Claim:
    """What claiming a key answered (see :class:`Outcome`)."""

    outcome: Outcome
    #: The owner token to complete or release a CLAIMED key; the holder of a BUSY one.
    owner: str = ""
    #: The stored answer of a DONE key.
    answer: bytes = b""
    #: For a CLAIMED key taken with ``message`` and ``senders``: whether the message's sender
    #: had opted out of any of them, read in the claim's own step.
    opted_out: bool = False


@dataclass(frozen=True, slots=True)
class ConversationWrite:
    """A conversation saved by :meth:`Store.complete` together with an inbound claim.

    ``id`` starts with the person's address and ``|`` (see :meth:`Store.purge_address`).
    """

    id: str
    #: The owner token of the conversation's lock (a :meth:`Store.claim` on ``"lock:" + id``),
    #: released in the same step.
    lock_owner: str
    #: The serialised conversation; None deletes it (the conversation ended).
    data: bytes | None
    #: Seconds of inactivity after which the conversation expires.
    ttl: float
    #: Epoch seconds when its timeout is due (see :meth:`Store.due_conversations`); None: none.
    due: float | None = None


class Claims(Protocol):
    """The store operations exactly-once needs (every :class:`~webhook_kit.stores.Store`)."""

    def claim(self, key: str, lease: float, *, replace: str = "") -> Claim: ...

    def complete(
        self,
        key: str,
        owner: str,
        answer: bytes,
        *,
        conversation: ConversationWrite | None = None,
        jobs: Sequence[Job] = (),
    ) -> bool: ...

    def release(self, key: str, owner: str) -> None: ...


class _Settled(Protocol):
    @property
    def outcome(self) -> Outcome: ...


_S = TypeVar("_S", bound=_Settled)


class Taken(NamedTuple):
    """What :meth:`Once.take` got: the claim, and the dead owner it replaced ("" if none)."""

    claim: Claim
    replaced: str


class Once:
    """The exactly-once policy over one store: claim, wait, take over, complete, release.

    :param lease: seconds a claim is held before another delivery may take it over.
    :param wait: seconds :meth:`settle` waits for a live holder before giving up (409).
    """

    __slots__ = ("lease", "store", "wait")

    def __init__(self, store: Claims, lease: float, wait: float = 0.0) -> None:
        self.store = store
        self.lease = lease
        self.wait = wait

    def settle(self, key: str, attempt: Callable[[str], _S], claim_of: Callable[[_S], Claim]) -> _S:
        """Claim through ``attempt(replace)``; while another worker holds the key, wait briefly.

        ``attempt`` is a store call that claims (and may record in the same step); ``replace``
        is "" or the dead owner to take over from. A holder whose process is gone is replaced
        at once: its delivery was never answered, so this one runs the handler, once. A live
        holder that outlasts :attr:`wait` raises :class:`InFlightError` (409: Twilio retries).
        """
        result = attempt("")
        deadline = time.monotonic() + self.wait
        delay = 0.005
        while (claim := claim_of(result)).outcome is Outcome.BUSY:
            if new_owner.is_dead(claim.owner):
                log.warning("%s: its owner %s died; this delivery takes it over", key, claim.owner)
                result = attempt(claim.owner)
                continue  # won, or lost to a live delivery that took it over first
            if time.monotonic() >= deadline:
                raise InFlightError("an earlier delivery of this webhook is still being handled")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
            result = attempt("")
        return result

    def lock(self, key: str) -> Claim:
        """Take ``key`` as a lock, waiting for its holder (a conversation's other message)."""
        return self.settle(
            key, lambda replace: self.store.claim(key, self.lease, replace=replace), _itself
        )

    def take(self, key: str) -> Taken:
        """Claim ``key`` without waiting: a live holder leaves it BUSY, a dead one is replaced.

        For work that another delivery or a later run does anyway (final hooks, timeouts)
        and for sends, which must not wait inside the caller's request.
        """
        claim = self.store.claim(key, self.lease)
        if claim.outcome is not Outcome.BUSY or not new_owner.is_dead(claim.owner):
            return Taken(claim, "")
        log.warning("%s: its owner %s died; this call takes it over", key, claim.owner)
        return Taken(self.store.claim(key, self.lease, replace=claim.owner), claim.owner)

    def finish(
        self,
        key: str,
        claim: Claim,
        answer: bytes,
        conversation: ConversationWrite | None = None,
        jobs: Sequence[Job] = (),
    ) -> bool:
        """Complete the claim, saving ``conversation`` and adding ``jobs`` in the same step.

        A store failure propagates: with jobs, the webhook must not be acknowledged unless
        they are durable. False when the claim was taken over meanwhile (the other delivery
        writes instead).
        """
        done = self.store.complete(key, claim.owner, answer, conversation=conversation, jobs=jobs)
        if not done:
            log.warning("%s: its claim was taken over; that delivery finishes it", key)
        return done

    def complete(
        self, key: str, claim: Claim, answer: bytes, conversation: ConversationWrite | None = None
    ) -> None:
        """Complete the claim with the answer to replay; a store failure is only logged.

        The answer still goes out: a retry inside the lease gets 409, after it runs again.
        """
        try:
            self.store.complete(key, claim.owner, answer, conversation=conversation)
        except StoreError as error:
            log.warning("could not store the answer for %s: %s", key, error)

    def release(self, key: str, claim: Claim, *locks: tuple[str, str]) -> None:
        """Give the claim up (and the ``(key, owner)`` locks taken with it): a retry runs.

        A store failure is only logged: the claim's lease ends by itself.
        """
        try:
            self.store.release(key, claim.owner)
            for lock, owner in locks:
                self.store.release(lock, owner)
        except StoreError as error:
            log.warning("could not release %s (released when the store answers): %s", key, error)


def _itself(claim: Claim) -> Claim:
    return claim


# -- abandoned claims: sent to a failing store, released once it answers -----------------


class Abandoned:
    """Claims whose request gave up on a failing store, released once the store answers.

    A claim sent to a store that then times out may still be applied later (a paused Redis
    runs the queued command when it resumes): without this, its owner has answered 503 and
    moved on, and every retry would find the key held until the lease ends.
    """

    __slots__ = ("_items", "_lock")

    def __init__(self) -> None:
        self._items: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def guarding(self, key: str, owner: str) -> _Guarding:
        """Remember ``(key, owner)`` if the operation inside fails with :class:`StoreError`."""
        return _Guarding(self, key, owner)

    def remember(self, key: str, owner: str) -> None:
        """Keep ``(key, owner)`` for the next :meth:`release`."""
        if owner:  # a claim finished in the same step ("") has nothing to release
            with self._lock:
                self._items.append((key, owner))

    def release(self, release: Callable[[str, str], None]) -> None:
        """Release every abandoned claim; those the store still refuses stay for next time."""
        with self._lock:
            items, self._items = self._items, []
        for index, (key, owner) in enumerate(items):
            try:
                release(key, owner)
            except StoreError:
                with self._lock:
                    self._items.extend(items[index:])
                return


class _Guarding:
    """:meth:`Abandoned.guarding`: a class, as it wraps every claim (cheaper than a generator)."""

    __slots__ = ("_abandoned", "_key", "_owner")

    def __init__(self, abandoned: Abandoned, key: str, owner: str) -> None:
        self._abandoned = abandoned
        self._key = key
        self._owner = owner

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, StoreError):
            self._abandoned.remember(self._key, self._owner)
