"""The definition of "the stores agree": the same random operations on every backend.

Hypothesis drives memory, SQLite, a real Redis (a key prefix of its own) and a real
PostgreSQL (a schema of its own) through the :class:`~webhook_kit.stores.Store` protocol with
one sequence of operations and one controllable clock, and compares every value they return
and, at the end, everything they hold. A divergence is shrunk to a minimal sequence.

``WEBHOOK_KIT_DIFF_EXAMPLES`` sets the number of sequences (500 by default, CI's floor).
The concurrent variant races two processes (two threads for memory) on one shared store.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import POSTGRES_URL, REDIS_HOST, REDIS_PORT, require_postgres, require_redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from webhook_kit import MessageStatus
from webhook_kit.jobs import Job, JobKind, JobState
from webhook_kit.records import EventWrite, MessageFacts, Query, StatusEntry
from webhook_kit.stores import Applied, Claim, ConversationWrite, OptOut, Outcome, Store
from webhook_kit.stores.memory import MemoryStore
from webhook_kit.stores.postgres import PostgresStore
from webhook_kit.stores.redis import RedisStore
from webhook_kit.stores.sqlite import SQLiteStore

EXAMPLES = int(os.environ.get("WEBHOOK_KIT_DIFF_EXAMPLES", "500"))
RETENTION = 100.0
LEDGER_RETENTION = 300.0
TABLES = ("wk_claims", "wk_messages", "wk_events", "wk_jobs", "wk_conversations", "wk_opt_outs")


class Clock:
    """The one clock every store reads; only the test moves it, always forward."""

    def __init__(self) -> None:
        self.now = 0.0
        self.reset()

    def reset(self) -> None:
        # Ahead of the real time, so that Redis's own expiry (set from this clock) never fires
        # while a sequence runs: only the stores' rules decide what has expired.
        self.now = float(math.ceil(time.time())) + 3600.0

    def __call__(self) -> float:
        return self.now


class Backends:
    """The four stores, opened once per test run and emptied before every sequence."""

    def __init__(self, tmp: Path) -> None:
        self.clock = Clock()
        self.sqlite_path = str(tmp / "diff.db")
        self.redis_base = f"wkdiff-{uuid.uuid4().hex[:10]}"
        self.schema = f"wkdiff_{uuid.uuid4().hex[:10]}"
        self.sequence = 0
        options: dict[str, Any] = {
            "retention": RETENTION,
            "ledger_retention": LEDGER_RETENTION,
            "clock": self.clock,
        }
        self.options = options
        self.sqlite = SQLiteStore(self.sqlite_path, **options)
        # Durability is not what is compared here: commits need not wait for the disk.
        fast = "options=-c%20synchronous_commit%3Doff"
        self.postgres = PostgresStore(f"{POSTGRES_URL}?schema={self.schema}&{fast}", **options)
        self.postgres.get_message("none")  # creates the schema
        self.redis: RedisStore | None = None
        import psycopg

        # One connection empties the tables before every sequence.
        self.admin = psycopg.connect(POSTGRES_URL, autocommit=True)

    def fresh(self) -> dict[str, Store]:
        """Empty stores for a new sequence (Redis: a new prefix, deleted at the end)."""
        self.clock.reset()
        self.sequence += 1
        with sqlite3.connect(self.sqlite_path) as db:
            for table in TABLES:
                db.execute(f"DELETE FROM {table}")
        self.admin.execute("; ".join(f'DELETE FROM "{self.schema}".{table}' for table in TABLES))
        if self.redis is not None:
            self.redis.close()
        self.redis = RedisStore(
            f"redis://{REDIS_HOST}:{REDIS_PORT}/0?prefix={self.redis_base}-{self.sequence}",
            **self.options,
        )
        return {
            "memory": MemoryStore(**self.options),
            "sqlite": self.sqlite,
            "redis": self.redis,
            "postgres": self.postgres,
        }

    def close(self) -> None:
        import redis

        for store in (self.sqlite, self.postgres, self.redis):
            if store is not None:
                store.close()
        self.admin.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        self.admin.close()
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
        keys = list(client.scan_iter(match=f"{self.redis_base}-*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        client.close()


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    require_redis()
    require_postgres()
    opened = Backends(tmp_path_factory.mktemp("differential"))
    yield opened
    opened.close()


# -- the operations' arguments ---------------------------------------------------------------

CLAIM_KEYS = st.sampled_from(["k0", "k1", "lock:+1|a"])
LEASES = st.sampled_from([5.0, 40.0])
OWNER_REFS = st.integers(0, 7)
SIDS = st.sampled_from(["SM0", "SM1", "WK0"])
ALIASES = st.sampled_from([None, "WK0", "WK1"])
STATUSES = st.sampled_from(
    [
        "queued",
        "sent",
        "delivered",
        "undelivered",
        "failed",
        "read",
        "received",
        "canceled",
        "new_thing",
    ]  # an unknown status: kept, ranked below every known one
)
OFFSETS = st.sampled_from([-3.0, -1.0, 0.0, 0.5, 2.0])
TEXT = st.sampled_from([None, "", "x"])
ADDRESSES = st.sampled_from(["+1", "+2"])
SENDERS = st.sampled_from(["S1", "S2"])
CONVERSATIONS = st.sampled_from(["+1|a", "+2|b"])
JOB_KEYS = st.sampled_from(["j0", "j1", "j2"])


@st.composite
def message_facts(draw: st.DrawFn) -> dict[str, Any]:
    """MessageFacts fields, ``at`` and ``created_at`` as offsets from the clock."""
    return {
        "message_sid": draw(SIDS),
        "at": draw(OFFSETS),
        "direction": draw(st.sampled_from([None, "inbound", "outbound-api"])),
        "from_": draw(st.sampled_from([None, "", "+1", "+2"])),
        "to": draw(st.sampled_from([None, "+1", "+2"])),
        "body": draw(TEXT),
        "num_segments": draw(st.sampled_from([None, 0, 2])),
        "num_media": draw(st.sampled_from([None, 0, 1])),
        "created_at": draw(st.sampled_from([None, -5.0, 1.0])),
        "status": draw(
            st.sampled_from([None, "queued", "sent", "delivered", "read", "failed", "new_thing"])
        ),
        "error_code": draw(st.sampled_from([None, 30003])),
        "price": draw(TEXT),
        "price_unit": draw(TEXT),
        "ref": draw(TEXT),
        "in_reply_to": draw(TEXT),
        "redact": draw(st.booleans()),
    }


@st.composite
def status_entries(draw: st.DrawFn) -> dict[str, Any]:
    sid = draw(st.sampled_from(["SM0", "SM1"]))
    status = draw(STATUSES)
    return {
        "sid": sid,
        "status": status,
        "n": draw(st.integers(0, 1)),
        "at": draw(OFFSETS),
        "error_code": draw(st.sampled_from([None, 30003])),
        "event_type": draw(st.sampled_from([None, "DELIVERY"])),
        "address": draw(ADDRESSES),
        "correlation": draw(ALIASES),
    }


EVENT_WRITES = st.tuples(
    st.sampled_from(["e0", "e1", "k0"]),
    st.one_of(st.none(), status_entries()),
    st.one_of(st.none(), message_facts()),
)


@st.composite
def queries(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "ref": draw(TEXT),
        "to": draw(st.sampled_from([None, "+1"])),
        "from_": draw(st.sampled_from([None, "+2", ""])),
        "statuses": draw(st.sampled_from([(), ("delivered",), ("sent", "read")])),
        "direction": draw(st.sampled_from([None, "inbound"])),
        "since": draw(st.sampled_from([None, -4.0, 0.0])),
        "until": draw(st.sampled_from([None, 0.0, 1.5])),
        "open_only": draw(st.booleans()),
        "after": draw(st.sampled_from([None, (0.0, "SM1"), (-5.0, "WK0")])),
        "limit": draw(st.sampled_from([1, 2, 100])),
    }


# -- comparing what the stores answer --------------------------------------------------------


class Owners:
    """Each store names owners its own way; a logical number stands for "the same owner"."""

    def __init__(self, names: list[str]) -> None:
        self.by_number: list[dict[str, str]] = []
        self.numbers = {name: dict[str, int]() for name in names}

    def add(self, owners: dict[str, str]) -> int:
        self.by_number.append(owners)
        number = len(self.by_number) - 1
        for name, owner in owners.items():
            self.numbers[name][owner] = number
        return number

    def number(self, name: str, owner: str) -> object:
        if not owner:
            return ""
        return self.numbers[name].get(owner, "unknown owner")

    def owner(self, name: str, ref: int) -> str:
        """Owner ``ref`` (modulo those seen) in store ``name``; a stranger's if none yet."""
        if not self.by_number:
            return "nobody"
        return self.by_number[ref % len(self.by_number)][name]


def _claim(claim: Claim, owner: object) -> tuple[object, ...]:
    return (claim.outcome.value, owner, claim.answer, claim.opted_out)


class StoreMachine(RuleBasedStateMachine):
    backends: Backends

    def __init__(self) -> None:
        super().__init__()
        self.stores = self.backends.fresh()
        self.clock = self.backends.clock
        self.owners = Owners(list(self.stores))

    # Every operation goes through here: run it on each store and compare the answers.
    def each(self, operation: str, run: Callable[[str, Store], object]) -> dict[str, object]:
        answers: dict[str, object] = {}
        for name, store in self.stores.items():
            try:
                answers[name] = run(name, store)
            except Exception as error:  # a store that raises where others answer diverges
                answers[name] = f"raised {type(error).__name__}: {error}"
        return answers

    def agree(
        self, operation: str, answers: dict[str, object], normal: Callable[..., object]
    ) -> None:
        shown = {name: normal(name, answer) for name, answer in answers.items()}
        expected = shown["memory"]
        diverging = {name: value for name, value in shown.items() if value != expected}
        assert not diverging, f"{operation}: memory says {expected!r}, but {diverging!r}"

    def compare(self, operation: str, run: Callable[[str, Store], object]) -> dict[str, object]:
        answers = self.each(operation, run)
        self.agree(operation, answers, self.normal)
        return answers

    def normal(self, name: str, value: object) -> object:
        """``value`` with each owner token replaced by its logical number."""
        if isinstance(value, Claim):
            return _claim(value, self.owners.number(name, value.owner))
        if isinstance(value, Applied):
            return (self.normal(name, value.claim), value.recorded, value.status)
        if isinstance(value, Job):
            return dataclasses.replace(value, owner=str(self.owners.number(name, value.owner)))
        if isinstance(value, list):
            return [self.normal(name, item) for item in value]
        return value

    def learn(self, answers: dict[str, object]) -> None:
        """A new owner (a claim won, a job taken): give it the next logical number."""
        owners: dict[str, str] = {}
        for name, answer in answers.items():
            won = answer.claim if isinstance(answer, Applied) else answer
            if (isinstance(won, Claim) and won.outcome is Outcome.CLAIMED) or isinstance(won, Job):
                owners[name] = won.owner
        if len(owners) == len(self.stores) and all(owners.values()):
            self.owners.add(owners)

    def compare_new(self, operation: str, run: Callable[[str, Store], object]) -> None:
        answers = self.each(operation, run)
        outcomes = {name: self.normal(name, answer) for name, answer in answers.items()}
        # Owners are new here: compare with them left out, then number them.
        self.agree(operation, answers, lambda name, answer: _without_owner(outcomes[name]))
        self.learn(answers)

    # -- claims ------------------------------------------------------------------------------

    @rule(key=CLAIM_KEYS, lease=LEASES, replace=st.one_of(st.none(), OWNER_REFS))
    def claim(self, key: str, lease: float, replace: int | None) -> None:
        self.compare_new(
            f"claim({key!r}, {lease}, replace={replace})",
            lambda name, store: store.claim(
                key, lease, replace="" if replace is None else self.owners.owner(name, replace)
            ),
        )

    @rule(key=st.sampled_from(["k0", "k1"]), lease=LEASES, fields=message_facts(),
          senders=st.sampled_from([(), ("S1",), ("S1", "S2")]))  # fmt: skip
    def claim_inbound(
        self, key: str, lease: float, fields: dict[str, Any], senders: tuple[str, ...]
    ) -> None:
        facts = self.facts(fields)
        self.compare_new(
            f"claim({key!r}, {lease}, message={facts}, senders={senders})",
            lambda name, store: store.claim(key, lease, message=facts, senders=senders),
        )

    @rule(key=CLAIM_KEYS, owner=OWNER_REFS, answer=st.sampled_from([b"", b"<Response/>"]),
          conversation=st.one_of(st.none(), st.tuples(
              CONVERSATIONS, OWNER_REFS, st.sampled_from([None, b"", b"state"]),
              st.sampled_from([10.0, 150.0]), st.sampled_from([None, -1.0, 5.0]))),
          jobs=st.lists(st.tuples(JOB_KEYS, OFFSETS), max_size=2))  # fmt: skip
    def complete(
        self,
        key: str,
        owner: int,
        answer: bytes,
        conversation: tuple[str, int, bytes | None, float, float | None] | None,
        jobs: list[tuple[str, float]],
    ) -> None:
        now = self.clock.now
        made = [Job(job, JobKind.MESSAGE, "h", "p", now + at) for job, at in jobs]

        def run(name: str, store: Store) -> bool:
            write = None
            if conversation is not None:
                id, lock, data, ttl, due = conversation
                lock_owner = self.owners.owner(name, lock)
                write = ConversationWrite(
                    id, lock_owner, data, ttl, None if due is None else now + due
                )
            return store.complete(
                key, self.owners.owner(name, owner), answer, conversation=write, jobs=made
            )

        self.compare(f"complete({key!r}, {owner}, {answer!r}, {conversation}, {jobs})", run)

    @rule(key=CLAIM_KEYS, owner=OWNER_REFS)
    def release(self, key: str, owner: int) -> None:
        self.compare(
            f"release({key!r}, {owner})",
            lambda name, store: store.release(key, self.owners.owner(name, owner)),
        )

    # -- the ledger --------------------------------------------------------------------------

    def facts(self, fields: dict[str, Any]) -> MessageFacts:
        now = self.clock.now
        values = dict(fields, at=now + fields["at"])
        if values["created_at"] is not None:
            values["created_at"] = now + values["created_at"]
        return MessageFacts(**values)

    def entry(self, fields: dict[str, Any], correlation: bool = True) -> StatusEntry:
        sid, status = fields["sid"], MessageStatus(fields["status"])
        return StatusEntry(
            sid,
            f"{sid}:{status.value}:{fields['n']}",
            status.value,
            status.rank,
            status.is_final,
            fields["error_code"],
            fields["event_type"],
            self.clock.now + fields["at"],
            f"MessageSid={sid}&MessageStatus={status.value}&To={fields['address']}",
            fields["correlation"] if correlation else None,
        )

    @rule(fields=status_entries(), lease=st.sampled_from([None, None, 5.0, 40.0]),
          replace=st.one_of(st.none(), OWNER_REFS))  # fmt: skip
    def record_status(
        self, fields: dict[str, Any], lease: float | None, replace: int | None
    ) -> None:
        entry = self.entry(fields)
        self.compare_new(
            f"record_status({entry}, lease={lease}, replace={replace})",
            lambda name, store: store.record_status(
                entry, lease, "" if replace is None else self.owners.owner(name, replace)
            ),
        )

    # An Event Streams batch: its dedupe keys may meet a claim's ("k0"), its statuses the
    # callbacks' (the same keys), its inbound messages any record.
    @rule(writes=st.lists(EVENT_WRITES, max_size=4))
    def apply_events(
        self, writes: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]]
    ) -> None:
        made = [
            EventWrite(
                key,
                None if status is None else self.entry(status, correlation=False),
                None if facts is None else self.facts(facts),
            )
            for key, status, facts in writes
        ]
        self.compare(f"apply_events({made})", lambda name, store: store.apply_events(made))

    @rule(fields=message_facts(), alias=ALIASES)
    def save_message(self, fields: dict[str, Any], alias: str | None) -> None:
        facts = self.facts(fields)
        self.compare(
            f"save_message({facts}, alias={alias!r})",
            lambda name, store: store.save_message(facts, alias),
        )

    @rule(sid=st.sampled_from(["SM0", "SM1", "WK0", "WK1"]))
    def get_message(self, sid: str) -> None:
        self.compare(f"get_message({sid!r})", lambda name, store: store.get_message(sid))

    @rule(fields=queries())
    def find_messages(self, fields: dict[str, Any]) -> None:
        now = self.clock.now
        values = dict(fields)
        for bound in ("since", "until"):
            if values[bound] is not None:
                values[bound] = now + values[bound]
        if values["after"] is not None:
            values["after"] = (now + values["after"][0], values["after"][1])
        query = Query(**values)
        self.compare(f"find_messages({query})", lambda name, store: store.find_messages(query))

    @rule(address=ADDRESSES)
    def purge_address(self, address: str) -> None:
        self.compare(
            f"purge_address({address!r})", lambda name, store: store.purge_address(address)
        )

    # -- conversations and opt-outs ----------------------------------------------------------

    @rule(id=CONVERSATIONS)
    def get_conversation(self, id: str) -> None:
        self.compare(f"get_conversation({id!r})", lambda name, store: store.get_conversation(id))

    @rule(at=st.sampled_from([0.0, 6.0, 1000.0]), limit=st.sampled_from([1, 10]))
    def due_conversations(self, at: float, limit: int) -> None:
        now = self.clock.now + at
        self.compare(
            f"due_conversations(now+{at}, {limit})",
            lambda name, store: store.due_conversations(now, limit),
        )

    @rule(sender=SENDERS, address=ADDRESSES, opted_out=st.booleans(),
          source=st.sampled_from(["keyword", "api"]))  # fmt: skip
    def set_opt_out(self, sender: str, address: str, opted_out: bool, source: str) -> None:
        record = OptOut(sender, address, opted_out, self.clock.now, source)
        self.compare(f"set_opt_out({record})", lambda name, store: store.set_opt_out(record))

    @rule(sender=SENDERS, address=ADDRESSES)
    def get_opt_out(self, sender: str, address: str) -> None:
        self.compare(
            f"get_opt_out({sender!r}, {address!r})",
            lambda name, store: store.get_opt_out(sender, address),
        )

    @rule(address=st.sampled_from(["+1", "+2", ""]),
          senders=st.sampled_from([(), ("S1",), ("S2", "S1")]))  # fmt: skip
    def opted_out(self, address: str, senders: tuple[str, ...]) -> None:
        self.compare(
            f"opted_out({address!r}, {senders})",
            lambda name, store: store.opted_out(address, senders),
        )

    @rule(sender=st.one_of(st.none(), SENDERS))
    def list_opt_outs(self, sender: str | None) -> None:
        self.compare(f"list_opt_outs({sender!r})", lambda name, store: store.list_opt_outs(sender))

    # -- jobs --------------------------------------------------------------------------------

    @rule(lease=LEASES, key=st.one_of(st.none(), JOB_KEYS))
    def take_job(self, lease: float, key: str | None) -> None:
        self.compare_new(
            f"take_job({lease}, {key!r})", lambda name, store: store.take_job(lease, key)
        )

    @rule(key=JOB_KEYS)
    def get_job(self, key: str) -> None:
        self.compare(f"get_job({key!r})", lambda name, store: store.get_job(key))

    @rule(key=JOB_KEYS, owner=OWNER_REFS, lease=LEASES)
    def renew_job(self, key: str, owner: int, lease: float) -> None:
        self.compare(
            f"renew_job({key!r}, {owner}, {lease})",
            lambda name, store: store.renew_job(key, self.owners.owner(name, owner), lease),
        )

    @rule(key=JOB_KEYS, owner=OWNER_REFS,
          state=st.sampled_from([None, JobState.PENDING, JobState.DEAD]), at=OFFSETS,
          error=st.sampled_from(["", "ValueError: no"]))  # fmt: skip
    def finish_job(
        self, key: str, owner: int, state: JobState | None, at: float, error: str
    ) -> None:
        run_at = self.clock.now + at
        self.compare(
            f"finish_job({key!r}, {owner}, {state}, now{at:+}, {error!r})",
            lambda name, store: store.finish_job(
                key, self.owners.owner(name, owner), state, run_at, error
            ),
        )

    @rule(state=st.sampled_from([None, *JobState]), limit=st.sampled_from([1, 100]))
    def list_jobs(self, state: JobState | None, limit: int) -> None:
        self.compare(
            f"list_jobs({state}, {limit})", lambda name, store: store.list_jobs(state, limit)
        )

    @rule(key=JOB_KEYS)
    def retry_job(self, key: str) -> None:
        self.compare(f"retry_job({key!r})", lambda name, store: store.retry_job(key))

    @rule(state=st.sampled_from(list(JobState)))
    def purge_jobs(self, state: JobState) -> None:
        self.compare(f"purge_jobs({state})", lambda name, store: store.purge_jobs(state))

    # -- time and housekeeping ---------------------------------------------------------------

    @rule(seconds=st.sampled_from([0.5, 5.0, 6.0, 40.0, 45.0, 100.0, 120.0, 400.0]))
    def advance(self, seconds: float) -> None:
        """Time passes, and housekeeping runs (as ``webhook-kit maintenance`` does). Steps
        equal to the leases and the retention land exactly on their end (``ends == now``):
        the boundary every store must agree on."""
        self.clock.now += seconds
        self.compare(
            f"advance({seconds}); maintain(full=True)",
            lambda name, store: store.maintain(full=True),
        )

    def teardown(self) -> None:
        """The final state: everything each store holds, read back (claims by probing)."""
        if not hasattr(self, "stores"):
            return
        try:
            for sid in ("SM0", "SM1", "WK0", "WK1"):
                self.get_message(sid)
            self.compare("final find_messages", lambda n, s: s.find_messages(Query(limit=1000)))
            self.compare("final list_jobs", lambda n, s: s.list_jobs(None, 1000))
            self.compare("final list_opt_outs", lambda n, s: s.list_opt_outs())
            for id in ("+1|a", "+2|b"):
                self.get_conversation(id)
            self.due_conversations(1000.0, 10)
            for key in ("k0", "k1", "lock:+1|a", "SM0:delivered:0", "e0", "e1"):
                self.compare_new(f"final claim({key!r})", lambda n, s, k=key: s.claim(k, 1.0))
        finally:
            self.stores["memory"].close()


def _without_owner(value: object) -> object:
    """A normalised answer with a new owner's token (not yet numbered) left out."""
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return (_without_owner(value[0]), *value[1:])
    if isinstance(value, tuple) and len(value) == 4 and value[0] == Outcome.CLAIMED.value:
        return (value[0], "new", *value[2:])
    if isinstance(value, Job) and value.state is JobState.RUNNING:
        return dataclasses.replace(value, owner="new")
    return value


# About 0.1 s a sequence on a loaded machine; more sequences get more time.
@pytest.mark.timeout(max(300, EXAMPLES))
def test_every_store_answers_alike(backends: Backends) -> None:
    StoreMachine.backends = backends
    run_state_machine_as_test(
        StoreMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


# -- the concurrent variant ------------------------------------------------------------------

RACE_KEYS = 40


def _race(url: str, worker: int, start: float) -> dict[str, list[str]]:
    """One racer: the same operations as the other, in its own order, from ``start`` on."""
    store = _open(url)
    keys = [f"race:{n}" for n in range(RACE_KEYS)]
    if worker:
        keys.reverse()
    while time.time() < start:
        time.sleep(0.001)
    won: dict[str, list[str]] = {"claimed": [], "recorded": [], "jobs": [], "completed": []}
    for key in keys:
        claim = store.claim(key, 60.0)
        if claim.outcome is Outcome.CLAIMED:
            won["claimed"].append(key)
            job = Job(f"job:{key}", JobKind.MESSAGE, "h", "p", time.time())
            if store.complete(key, claim.owner, key.encode(), jobs=[job]):
                won["completed"].append(key)
        elif claim.outcome is Outcome.DONE:
            assert claim.answer == key.encode(), (key, claim)
        status = MessageStatus.DELIVERED if worker else MessageStatus.SENT
        for sid_status in (status, MessageStatus.QUEUED):
            entry = StatusEntry(
                f"SM{key}", f"{key}:{sid_status.value}", sid_status.value, sid_status.rank,
                sid_status.is_final, None, None, time.time(), "To=%2B1",
            )  # fmt: skip
            if store.record_status(entry).recorded:
                won["recorded"].append(entry.key)
        job_taken = store.take_job(60.0)
        if job_taken is not None:
            won["jobs"].append(job_taken.key)
            assert store.finish_job(job_taken.key, job_taken.owner, None)
    while (job_taken := store.take_job(60.0)) is not None:
        won["jobs"].append(job_taken.key)
        assert store.finish_job(job_taken.key, job_taken.owner, None)
    if not url.startswith("memory"):
        store.close()
    return won


_MEMORY: dict[str, Store] = {}


def _open(url: str) -> Store:
    if url.startswith("memory"):
        return _MEMORY.setdefault(url, MemoryStore())
    from webhook_kit.stores import open_store

    return open_store(url)


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis", "postgres"])
def test_two_processes_racing_keep_every_invariant(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = {
        "memory": f"memory://{uuid.uuid4().hex}",
        "sqlite": f"sqlite:///{tmp_path}/race.db",
        "redis": request.getfixturevalue("redis_url") if kind == "redis" else "",
        "postgres": request.getfixturevalue("postgres_url") if kind == "postgres" else "",
    }[kind]
    schema = _open(url)
    schema.get_message("none")  # schema and file exist before the race
    pool: Any
    if kind == "memory":  # a memory store is one process's: race two threads
        start = time.time() + 0.3
        pool = ThreadPoolExecutor(2)
    else:
        # SQLite's own rule: no connection may cross a fork (a forked child inherits the
        # parent's in-process lock state, not its locks). Racers are spawned, not forked.
        schema.close()
        start = time.time() + 4  # the time two fresh interpreters take to import the kit
        pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    with pool:
        runs = list(pool.map(_race, [url, url], [0, 1], [start, start]))
    keys = [f"race:{n}" for n in range(RACE_KEYS)]
    claimed = sorted(key for run in runs for key in run["claimed"])
    assert claimed == sorted(keys), "each key is claimed exactly once"
    assert sorted(k for run in runs for k in run["completed"]) == sorted(keys)
    recorded = sorted(key for run in runs for key in run["recorded"])
    expected = sorted(
        f"{key}:{status}" for key in keys for status in ("queued", "sent", "delivered")
    )
    assert recorded == expected, "each callback is recorded exactly once"
    assert sorted(k for run in runs for k in run["jobs"]) == sorted(f"job:{k}" for k in keys)
    store = _open(url)
    for key in keys:
        record = store.get_message(f"SM{key}")
        assert record is not None
        # Whatever the order: the highest rank wins, every callback is in the history once.
        assert record.status is MessageStatus.DELIVERED
        assert len(record.history) == len({e.key for e in record.history})
        assert store.claim(key, 1.0).answer == key.encode()
