"""One behavioural suite for every store: memory, SQLite, a real Redis and a real PostgreSQL."""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import multiprocessing.synchronize
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from conftest import REQUIRE_SERVICES
from server import RedisServer

from webhook_kit import ConfigurationError, MessageStatus, StoreError
from webhook_kit.ledger import MessageFacts, Query, StatusEntry
from webhook_kit.stores import Outcome, Store, open_store
from webhook_kit.stores.sqlite import SQLiteStore, WriterLock

StoreFactory = Callable[..., Store]


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    opened: list[Store] = []
    url = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp_path}/kit.db",
        "redis": request.getfixturevalue("redis_url") if kind == "redis" else "",
        "postgres": request.getfixturevalue("postgres_url") if kind == "postgres" else "",
    }[kind]

    def make(**options: float) -> Store:
        store = open_store(url, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> Store:
    return make_store()


def entry(sid: str, status: str, *, key: str | None = None, at: float | None = None,
          error_code: int | None = None, event_type: str | None = None) -> StatusEntry:  # fmt: skip
    value = MessageStatus(status)
    return StatusEntry(
        sid,
        key or f"status:{sid}:{status}:{event_type or ''}",
        value.value,
        value.rank,
        value.is_final,
        error_code,
        event_type,
        time.time() if at is None else at,
        f"MessageSid={sid}&MessageStatus={status}",
    )


class TestClaims:
    def test_first_claim_wins_then_busy(self, store: Store) -> None:
        first = store.claim("k", 30)
        assert first.outcome is Outcome.CLAIMED and first.owner
        assert store.claim("k", 30).outcome is Outcome.BUSY

    def test_completed_claim_replays_its_answer(self, store: Store) -> None:
        claim = store.claim("k", 30)
        answer = b"<Response><Message>\xc3\xa9</Message></Response>"
        store.complete("k", claim.owner, answer)
        again = store.claim("k", 30)
        assert again.outcome is Outcome.DONE and again.answer == answer

    def test_empty_answer_round_trips(self, store: Store) -> None:
        claim = store.claim("k", 30)
        store.complete("k", claim.owner, b"")
        assert store.claim("k", 30).answer == b""

    def test_release_lets_a_retry_claim(self, store: Store) -> None:
        claim = store.claim("k", 30)
        store.release("k", claim.owner)
        assert store.claim("k", 30).outcome is Outcome.CLAIMED

    def test_only_the_owner_completes_or_releases(self, store: Store) -> None:
        claim = store.claim("k", 30)
        store.release("k", "someone-else")
        store.complete("k", "someone-else", b"x")
        assert store.claim("k", 30).outcome is Outcome.BUSY
        store.complete("k", claim.owner, b"y")
        assert store.claim("k", 30).answer == b"y"

    def test_keys_are_independent(self, store: Store) -> None:
        assert store.claim("a", 30).outcome is Outcome.CLAIMED
        assert store.claim("b", 30).outcome is Outcome.CLAIMED

    def test_an_abandoned_claim_can_be_taken_over_after_its_lease(self, store: Store) -> None:
        stale = store.claim("k", 0.2)
        time.sleep(0.3)
        fresh = store.claim("k", 30)
        assert fresh.outcome is Outcome.CLAIMED and fresh.owner != stale.owner
        store.complete("k", stale.owner, b"late")  # the crashed owner cannot finish it now
        assert store.claim("k", 30).outcome is Outcome.BUSY

    def test_finished_keys_expire_after_the_retention(self, make_store: StoreFactory) -> None:
        store = make_store(retention=1.0)  # long enough for a loaded machine's round trips
        store.complete("k", store.claim("k", 30).owner, b"x")
        assert store.claim("k", 30).outcome is Outcome.DONE
        time.sleep(1.1)
        assert store.claim("k", 30).outcome is Outcome.CLAIMED

    def test_concurrent_threads_claim_once(self, store: Store) -> None:
        barrier = threading.Barrier(8)
        outcomes: list[Outcome] = []

        def race() -> None:
            barrier.wait()
            outcomes.append(store.claim("race", 30).outcome)

        threads = [threading.Thread(target=race) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes.count(Outcome.CLAIMED) == 1


def _claim_in_process(url: str, keys: list[str], barrier: object, results: object) -> None:
    store = open_store(url)
    barrier.wait()  # type: ignore[attr-defined]
    won = [key for key in keys if store.claim(key, 30).outcome is Outcome.CLAIMED]
    results.put(won)  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgres"])
def test_concurrent_processes_win_each_claim_exactly_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path}/shared.db"
        if backend == "sqlite"
        else request.getfixturevalue(f"{backend}_url")
    )  # PostgreSQL: the processes also race to create the schema
    if backend == "sqlite":
        open_store(url).close()  # create the schema before the race
    context = multiprocessing.get_context("spawn")
    workers = 6
    keys = [f"key-{i}" for i in range(60)]
    barrier = context.Barrier(workers)
    results = context.Queue()
    processes = [
        context.Process(target=_claim_in_process, args=(url, keys, barrier, results))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    won = [key for _ in processes for key in results.get(timeout=60)]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert sorted(won) == sorted(keys)  # every key claimed, none twice


class TestLedger:
    def test_unknown_message(self, store: Store) -> None:
        assert store.get_message("SMnothing") is None

    @pytest.mark.parametrize(
        "order", list(itertools.permutations(["queued", "sent", "delivered", "sent"]))
    )
    def test_every_order_ends_delivered_with_full_history(
        self, store: Store, order: tuple[str, ...]
    ) -> None:
        sid = "SM" + "".join(order)
        recorded = []
        for index, status in enumerate(order):
            recorded.append(store.record_status(entry(sid, status, at=1000.0 + index)).recorded)
        assert recorded.count(True) == 3  # the repeated "sent" is a duplicate
        record = store.get_message(sid)
        assert record is not None
        assert record.status is MessageStatus.DELIVERED and record.is_final
        assert sorted(event.status.value for event in record.history) == [
            "delivered", "queued", "sent",
        ]  # fmt: skip
        assert [event.received_at.timestamp() for event in record.history] == sorted(
            event.received_at.timestamp() for event in record.history
        )

    def test_a_late_sent_never_replaces_delivered(self, store: Store) -> None:
        store.record_status(entry("SM1", "delivered", at=10))
        applied = store.record_status(entry("SM1", "sent", at=11))
        assert applied.recorded and applied.status is MessageStatus.DELIVERED
        record = store.get_message("SM1")
        assert record is not None and record.status is MessageStatus.DELIVERED
        assert [event.status for event in record.history] == [
            MessageStatus.DELIVERED,
            MessageStatus.SENT,
        ]

    def test_read_follows_delivered(self, store: Store) -> None:
        store.record_status(entry("SM1", "delivered", at=10))
        applied = store.record_status(entry("SM1", "read", at=11, event_type="READ"))
        assert applied.status is MessageStatus.READ and applied.final
        record = store.get_message("SM1")
        assert record is not None and record.history[-1].event_type == "READ"
        assert record.final_at is not None and record.final_at.timestamp() == 10

    @pytest.mark.parametrize("first", ["undelivered", "delivered"])
    def test_two_terminal_states_converge_whatever_their_order(
        self, store: Store, first: str
    ) -> None:
        undelivered = entry("SM1", "undelivered", at=10, error_code=30003)
        delivered = entry("SM1", "delivered", at=11)
        for update in (
            (undelivered, delivered) if first == "undelivered" else (delivered, undelivered)
        ):
            store.record_status(update)
        record = store.get_message("SM1")
        assert record is not None and record.status is MessageStatus.UNDELIVERED
        assert record.error_code == 30003 and record.error is not None
        assert record.error.title == "Unreachable destination handset"
        assert record.final_at is not None and record.final_at.timestamp() == 10

    def test_duplicate_is_not_recorded_twice(self, store: Store) -> None:
        first = store.record_status(entry("SM1", "sent"))
        assert first.recorded and first.claim.outcome is Outcome.DONE
        duplicate = store.record_status(entry("SM1", "sent"))
        assert not duplicate.recorded and duplicate.claim.outcome is Outcome.DONE
        assert duplicate.status is None  # lost the claim: nothing was read or written
        record = store.get_message("SM1")
        assert record is not None and len(record.history) == 1

    def test_record_with_a_lease_leaves_the_claim_to_complete(self, store: Store) -> None:
        applied = store.record_status(entry("SM1", "delivered"), 30)
        assert applied.claim.outcome is Outcome.CLAIMED and applied.recorded and applied.final
        busy = store.record_status(entry("SM1", "delivered"), 30)
        assert busy.claim.outcome is Outcome.BUSY and not busy.recorded
        store.complete("status:SM1:delivered:", applied.claim.owner, b"")
        done = store.record_status(entry("SM1", "delivered"), 30)
        assert done.claim.outcome is Outcome.DONE and not done.recorded

    def test_released_record_claim_does_not_record_twice(self, store: Store) -> None:
        applied = store.record_status(entry("SM1", "sent"), 30)
        store.release("status:SM1:sent:", applied.claim.owner)
        retry = store.record_status(entry("SM1", "sent"), 30)
        assert retry.claim.outcome is Outcome.CLAIMED and not retry.recorded
        assert retry.status is MessageStatus.SENT
        record = store.get_message("SM1")
        assert record is not None and len(record.history) == 1

    def test_unknown_status_is_kept_but_never_overrides(self, store: Store) -> None:
        store.record_status(entry("SM1", "warp_speed", at=1))
        record = store.get_message("SM1")
        assert record is not None and record.status == "warp_speed"
        store.record_status(entry("SM1", "queued", at=2))
        store.record_status(entry("SM1", "hyperdrive", at=3))
        record = store.get_message("SM1")
        assert record is not None and record.status is MessageStatus.QUEUED
        assert [event.status.value for event in record.history] == [
            "warp_speed", "queued", "hyperdrive",
        ]  # fmt: skip

    def test_callbacks_for_an_unseen_message_are_kept(self, store: Store) -> None:
        applied = store.record_status(entry("SMnever-sent-by-us", "failed", error_code=30008))
        assert applied.recorded and applied.final
        assert store.get_message("SMnever-sent-by-us") is not None

    def test_history_keeps_every_field(self, store: Store) -> None:
        store.record_status(entry("SM1", "sent"))
        record = store.get_message("SM1")
        assert record is not None
        assert record.history[0].raw["MessageStatus"] == "sent"
        assert record.history[0].key == "status:SM1:sent:"

    def test_concurrent_callbacks_for_one_message(self, store: Store) -> None:
        statuses = ["queued", "sending", "sent", "delivered", "read"] * 4
        barrier = threading.Barrier(len(statuses))

        def send(status: str) -> None:
            barrier.wait()
            store.record_status(entry("SMrace", status))

        threads = [threading.Thread(target=send, args=(status,)) for status in statuses]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        record = store.get_message("SMrace")
        assert record is not None and record.status is MessageStatus.READ
        assert len(record.history) == 5


class TestRetention:
    def test_ledger_records_expire(self, kind: str, make_store: StoreFactory) -> None:
        if kind == "redis":
            store = make_store(ledger_retention=0.3)
            store.record_status(entry("SMold", "sent"))
            time.sleep(0.4)
        else:
            store = make_store(ledger_retention=10)
            store.record_status(entry("SMold", "sent", at=time.time() - 100))
            store.record_status(entry("SMnew", "sent"))
            store.maintain(full=True)
            assert store.get_message("SMnew") is not None
        assert store.get_message("SMold") is None

    def test_expired_records_leave_find_too(self, kind: str, make_store: StoreFactory) -> None:
        at = time.time()
        if kind == "redis":
            store = make_store(ledger_retention=0.3)
            store.save_message(MessageFacts("SMgone", at, created_at=at, ref="r"))
            time.sleep(0.4)
        else:
            store = make_store(ledger_retention=10)
            store.save_message(MessageFacts("SMgone", at - 100, created_at=at - 100, ref="r"))
            store.maintain(full=True)
        store.save_message(MessageFacts("SMkept", at, created_at=at, ref="r"))
        assert [record.message_sid for record in store.find_messages(Query(ref="r"))] == ["SMkept"]


def test_redis_maintenance_drops_expired_records_from_the_index(redis_url: str) -> None:
    """Without it, the creation-time index would keep every SID ever written."""
    import redis

    store = open_store(redis_url, ledger_retention=0.3)
    old = time.time() - 1.0
    for index in range(3):
        store.save_message(MessageFacts(f"SMgone{index}", old, created_at=old))
    time.sleep(0.4)
    # Created long ago (its index entry is old), but updated now: it stays.
    store.save_message(MessageFacts("SMalive", time.time(), created_at=old))
    store.maintain(full=True)
    prefix = dict(parse_qsl(urlsplit(redis_url).query))["prefix"]
    client = redis.Redis.from_url(redis_url.partition("?")[0])
    try:
        assert client.zrange(f"{prefix}:messages", 0, -1) == [b"SMalive"]
    finally:
        client.close()
    assert [r.message_sid for r in store.find_messages(Query())] == ["SMalive"]


def test_sqlite_is_in_wal_mode(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "wal.db"))
    store.claim("k", 1)
    mode = store._connection().execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_sqlite_synchronous_option(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/full.db?synchronous=full")
    assert isinstance(store, SQLiteStore)
    assert store._connection().execute("PRAGMA synchronous").fetchone()[0] == 2
    with pytest.raises(ConfigurationError, match="synchronous"):
        open_store(f"sqlite:///{tmp_path}/x.db?synchronous=off")


def test_sqlite_failure_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="SQLite store"):
        SQLiteStore(str(tmp_path / "missing-dir" / "kit.db"))


def test_redis_down_is_a_store_error() -> None:
    store = open_store("redis://127.0.0.1:1/0")
    with pytest.raises(StoreError, match="Redis store"):
        store.claim("k", 1)


def test_redis_serves_again_after_a_restart_and_a_script_flush() -> None:
    """The scripts' kept connections: one closed by a restart is replaced, NOSCRIPT reloads."""
    import redis

    if shutil.which("redis-server") is None:
        reason = "redis-server is not installed: this test starts its own"
        if REQUIRE_SERVICES:
            pytest.fail(reason)
        pytest.skip(reason)
    with RedisServer() as server:
        store = open_store(server.url)
        assert store.claim("a", 30).outcome is Outcome.CLAIMED
        client = redis.Redis.from_url(server.url)
        client.script_flush()
        client.close()
        assert store.claim("b", 30).outcome is Outcome.CLAIMED
        server.kill()
        server.start()  # empty, on the same port: the kept connection is closed
        assert store.claim("c", 30).outcome is Outcome.CLAIMED
        assert store.claim("c", 30).outcome is Outcome.BUSY
        store.close()
        assert store.claim("d", 30).outcome is Outcome.CLAIMED  # reopened
        store.close()


def test_redis_never_reads_the_reply_of_an_interrupted_call(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call broken off between sending and reading leaves no reply for the next one."""
    import redis

    store = open_store(redis_url)
    assert store.claim("a", 30).outcome is Outcome.CLAIMED
    original = redis.Connection.read_response

    def interrupted(self: redis.Connection, *args: object, **kwargs: object) -> object:
        monkeypatch.setattr(redis.Connection, "read_response", original)
        raise KeyboardInterrupt

    monkeypatch.setattr(redis.Connection, "read_response", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.claim("b", 30)  # sent and won; its reply is never read
    assert store.claim("a", 30).outcome is Outcome.BUSY  # a's own reply, not b's
    store.close()


def test_redis_claim_whose_reply_was_lost_is_won_on_the_retry(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt took the key, the connection dropped before its reply: the retry
    finds the key held by the same call, which has won it (not a 409 for its own claim)."""
    import redis

    from webhook_kit.stores import OptOut

    store = open_store(redis_url)
    store.set_opt_out(OptOut("+1500", "+1415", True, 1.0, "keyword"))
    original = redis.Connection.read_response

    def dropped(self: redis.Connection, *args: object, **kwargs: object) -> object:
        monkeypatch.setattr(redis.Connection, "read_response", original)
        raise redis.ConnectionError("connection reset after the command reached Redis")

    monkeypatch.setattr(redis.Connection, "read_response", dropped)
    facts = MessageFacts("SM" + "a" * 32, T, from_="+1415", to="+1500", created_at=T)
    won = store.claim("message:a", 30, message=facts, senders=("+1500",))
    assert won.outcome is Outcome.CLAIMED and won.opted_out
    assert store.complete("message:a", won.owner, b"answer")
    assert store.claim("message:a", 30).answer == b"answer"
    assert store.get_message("SM" + "a" * 32) is not None
    store.close()


def test_redis_status_whose_reply_was_lost_is_won_on_the_retry(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for claims: the first attempt claimed and recorded the callback, the reply was lost;
    the resend finds its own claim and reports the callback recorded and the status applied."""
    import redis

    store = open_store(redis_url)
    sid = "SM" + "b" * 32
    store.record_status(entry("SM" + "c" * 32, "sent"))  # a connection, its handshake done
    original = redis.Connection.read_response

    def dropped(self: redis.Connection, *args: object, **kwargs: object) -> object:
        monkeypatch.setattr(redis.Connection, "read_response", original)
        raise redis.ConnectionError("connection reset after the command reached Redis")

    monkeypatch.setattr(redis.Connection, "read_response", dropped)
    applied = store.record_status(entry(sid, "delivered"), lease=30)
    assert applied.outcome is Outcome.CLAIMED and applied.recorded
    assert applied.status is MessageStatus.DELIVERED and applied.final
    assert store.complete(f"status:{sid}:delivered:", applied.claim.owner, b"")
    again = store.record_status(entry(sid, "delivered"), lease=30)
    assert again.outcome is Outcome.DONE and not again.recorded
    record = store.get_message(sid)
    assert record is not None and len(record.history) == 1
    store.close()


def test_redis_purge_walks_the_index_and_leaves_no_key_of_the_record(redis_url: str) -> None:
    import redis

    store = open_store(redis_url)  # a prefix of its own, its keys deleted afterwards
    prefix = redis_url.partition("prefix=")[2]
    person = "+14155550100"
    sids = [f"SM{index:032d}" for index in range(1200)]  # more than one batch of the walk
    for index, sid in enumerate(sids):
        to = person if index % 2 else "+14155550199"
        store.save_message(MessageFacts(sid, T, from_="+15005550006", to=to, created_at=T))
        store.record_status(entry(sid, "sent"))
    assert store.purge_address(person) == 600
    client = redis.Redis.from_url(redis_url.partition("?")[0])
    left = {key.decode() for key in client.scan_iter(match=f"{prefix}*", count=1000)}
    client.close()
    assert not [key for key in left if sids[1] in key]  # message, history, event marker
    assert any(sids[0] in key for key in left)
    assert store.get_message(sids[0]) is not None and store.get_message(sids[1]) is None
    store.close()


def test_redis_reads_claims_and_conversations_written_before_their_ends_were_kept(
    redis_url: str,
) -> None:
    """After an upgrade, keys written by the previous version still mean what they meant."""
    import redis

    store = open_store(redis_url)
    prefix = redis_url.partition("prefix=")[2]
    client = redis.Redis.from_url(redis_url.partition("?")[0])
    client.set(f"{prefix}:claim:held", b"Pold-owner.1", px=60_000)
    client.set(f"{prefix}:claim:done", b"D<Response>a|b</Response>", px=60_000)
    client.set(f"{prefix}:conv:+1|c", b'{"step": 1}', px=60_000)
    client.close()
    assert (store.claim("held", 30).outcome, store.claim("held", 30).owner) == (
        Outcome.BUSY,
        "old-owner.1",
    )
    done = store.claim("done", 30)
    assert (done.outcome, done.answer) == (Outcome.DONE, b"<Response>a|b</Response>")
    assert store.get_conversation("+1|c") == b'{"step": 1}'
    store.release("held", "old-owner.1")
    assert store.claim("held", 30).outcome is Outcome.CLAIMED
    store.close()


@pytest.mark.parametrize("url", ["mysql://x", "sqlite://", "sqlite:///", "nothing"])
def test_bad_store_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_store(url)


def test_sqlite_sweeps_expired_claims_a_batch_at_a_time(tmp_path: Path) -> None:
    from webhook_kit.stores import sqlite as sqlite_module

    now = [1000.0]
    store = SQLiteStore(str(tmp_path / "sweep.db"), retention=10, clock=lambda: now[0])
    total = sqlite_module._PURGE_BATCH * 2 + 7
    db = store._connection()
    db.executemany(
        "INSERT INTO wk_claims (key, owner, done, answer, expires) VALUES (?, '', 1, NULL, ?)",
        [(f"old-{i:06d}", 1010.0) for i in range(total)],
    )
    now[0] = 1015.0
    store.complete("live", store.claim("live", 30).owner, b"kept")
    now[0] = 1020.0  # the old keys have expired; "live" is retained until 1025
    for _ in range(3):
        store._purge(now[0])
    assert db.execute("SELECT count(*) FROM wk_claims").fetchone()[0] == 1
    assert store.claim("live", 30).answer == b"kept"
    assert store.claim("old-000001", 30).outcome is Outcome.CLAIMED


def test_owner_tokens_are_unique_across_forked_workers() -> None:
    import os

    from webhook_kit.stores import new_owner

    parent = {new_owner() for _ in range(1000)}
    assert len(parent) == 1000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a gunicorn worker would be forked like this
        os.write(write, new_owner().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child.split("-")[0] not in {token.split("-")[0] for token in parent}


def _hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Another connection takes the write lock now and lets go after ``seconds``."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")

    def release() -> None:
        time.sleep(seconds)
        holder.execute("ROLLBACK")
        holder.close()

    thread = threading.Thread(target=release)
    thread.start()
    return thread


def test_sqlite_waits_out_a_held_write_lock_then_gives_up_after_its_timeout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "busy.db"
    store = SQLiteStore(str(path), timeout=1.0)
    holder = _hold_write_lock(path, 0.2)
    started = time.monotonic()
    assert store.claim("k", 30).outcome is Outcome.CLAIMED  # waited for the lock
    assert 0.15 < time.monotonic() - started < 0.9
    holder.join()
    holder = _hold_write_lock(path, 1.5)
    started = time.monotonic()
    with pytest.raises(StoreError, match="locked"):
        store.claim("other", 30)
    assert 0.9 < time.monotonic() - started < 1.4
    holder.join()


def test_sqlite_full_maintenance_waits_for_a_writer_to_truncate_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "truncate.db"
    store = SQLiteStore(str(path))
    for n in range(50):
        store.claim(f"k{n}", 30)
    holder = _hold_write_lock(path, 0.2)
    store.maintain(full=True)
    holder.join()
    assert Path(f"{path}-wal").stat().st_size == 0


def _claim_in_a_child(path: str, key: str, done: multiprocessing.synchronize.Event) -> None:
    SQLiteStore(path).claim(key, 30)
    done.set()


def test_sqlite_writers_take_turns_through_the_writer_lock(tmp_path: Path) -> None:
    """A writer of another process waits for the one holding the writer's turn, and goes on
    once it is released."""
    path = str(tmp_path / "turns.db")
    SQLiteStore(path).claim("first", 30)  # the file and its schema exist
    context = multiprocessing.get_context("spawn")
    done = context.Event()
    lock = WriterLock(path, 30.0)
    with lock:
        child = context.Process(target=_claim_in_a_child, args=(path, "second", done))
        child.start()
        assert not done.wait(1.0), "a write went ahead while another writer held the lock"
    assert done.wait(30.0), "the waiting writer never went on"
    child.join(30.0)
    assert child.exitcode == 0
    lock.close()
    assert SQLiteStore(path).claim("second", 30).outcome is Outcome.BUSY  # the child wrote it


def test_sqlite_a_writer_kept_waiting_past_the_timeout_gets_a_store_error(
    tmp_path: Path,
) -> None:
    """A writer that keeps its turn (a stopped process, say) costs the others a 503 after
    the store timeout, as SQLite's own lock would, never a hang."""
    path = str(tmp_path / "stuck.db")
    store = SQLiteStore(path, timeout=0.3)
    store.claim("first", 30)
    stuck = WriterLock(path, 30.0)
    with stuck, pytest.raises(StoreError, match="locked"):
        store.claim("second", 30)
    stuck.close()
    assert store.claim("second", 30).outcome is Outcome.CLAIMED  # its turn comes at once


def test_sqlite_new_files_use_small_pages(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "pages.db"))
    assert store._connection().execute("PRAGMA page_size").fetchone()[0] == 2048


def test_sqlite_store_used_before_a_fork_gets_fresh_connections_in_the_child(
    tmp_path: Path,
) -> None:
    """gunicorn --preload: a store used at import time is forked into each worker. The child
    abandons (never uses, never closes) every connection it inherited, even another thread's,
    and opens its own; the parent carries on with its own."""
    import os
    import warnings

    from webhook_kit.stores import sqlite as sqlite_module

    store = SQLiteStore(str(tmp_path / "fork.db"))
    assert store.claim("parent-before", 30).outcome is Outcome.CLAIMED
    parent_connection = store._connection()
    opened, done = threading.Event(), threading.Event()
    others: list[sqlite3.Connection] = []

    def hold_a_connection() -> None:
        others.append(store._connection())
        opened.set()
        done.wait()

    other_thread = threading.Thread(target=hold_a_connection)
    other_thread.start()
    opened.wait()
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the thread above: fork anyway
        pid = os.fork()
    if pid == 0:  # the child, as a gunicorn worker forked from a master that used the store
        try:
            inherited = sqlite_module._inherited
            report = [
                store.claim("child", 30).outcome.value,
                store._connection() is not parent_connection,
                any(kept is parent_connection for kept in inherited),
                any(kept is others[0] for kept in inherited),
            ]
        except BaseException as error:  # reported to the parent
            report = [repr(error)]
        os.write(write, repr(report).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 1000).decode()
    os.close(read)
    os.waitpid(pid, 0)
    done.set()
    other_thread.join()
    assert child == repr([Outcome.CLAIMED.value, True, True, True])
    assert store._connection() is parent_connection  # the parent's own is untouched
    assert store.claim("child", 30).outcome is Outcome.BUSY  # the child's claim is shared
    assert store.claim("parent-after", 30).outcome is Outcome.CLAIMED
    assert sqlite_module._inherited == []  # only a forked child abandons connections


#: Ledger times in the tests: recent, so that no retention sweep removes them.
T = float(int(time.time()) - 3600)


def facts(sid: str, at: float, **fields: object) -> MessageFacts:
    return MessageFacts(sid, at, **fields)  # type: ignore[arg-type]


def correlated(sid: str, status: str, correlation: str, at: float) -> StatusEntry:
    plain = entry(sid, status, at=at)
    return dataclasses.replace(plain, correlation=correlation)


class TestMessageFacts:
    def test_an_outbound_send_is_recorded_then_linked_to_its_sid(self, store: Store) -> None:
        store.save_message(
            facts("WKone", T + 100.0, direction="outbound-api", from_="+15005550006",
                  to="+14155550100", body="hi", created_at=T + 100.0, ref="order-42")
        )  # fmt: skip
        pending = store.get_message("WKone")
        assert pending is not None and pending.pending and pending.status is None
        store.save_message(
            facts("SMone", T + 101.0, status="queued", num_segments=1, num_media=0), alias="WKone"
        )
        assert store.get_message("WKone") is None
        record = store.get_message("SMone")
        assert record is not None
        assert (record.direction, record.from_, record.to, record.body, record.ref) == (
            "outbound-api", "+15005550006", "+14155550100", "hi", "order-42",
        )  # fmt: skip
        assert record.status is MessageStatus.QUEUED and record.num_segments == 1
        assert record.created_at is not None and record.created_at.timestamp() == T + 100.0
        assert not record.is_final and record.history == ()

    def test_a_callback_before_the_sid_is_linked_finds_the_send(self, store: Store) -> None:
        store.save_message(facts("WKtwo", T + 100.0, direction="outbound-api", ref="r2",
                                 created_at=T + 100.0))  # fmt: skip
        store.record_status(entry("SMtwo", "sent", at=T + 101.0))
        store.record_status(correlated("SMtwo", "delivered", "WKtwo", T + 102.0))
        store.save_message(facts("SMtwo", T + 103.0, status="queued"), alias="WKtwo")
        record = store.get_message("SMtwo")
        assert record is not None and record.ref == "r2"
        assert record.status is MessageStatus.DELIVERED  # the API's "queued" came too late
        assert record.created_at is not None and record.created_at.timestamp() == T + 100.0
        assert record.sent_at is not None and record.sent_at.timestamp() == T + 101.0
        assert record.final_at is not None and record.final_at.timestamp() == T + 102.0
        assert len(record.history) == 2 and store.get_message("WKtwo") is None

    def test_an_absorbed_send_fills_gaps_and_keeps_what_the_sid_knows(self, store: Store) -> None:
        store.save_message(facts("SMkeep", T + 2.0, status="sent", to="+14155550100",
                                 num_segments=2))  # fmt: skip
        store.save_message(facts("WKkeep", T + 1.0, to="+1415555XXXX", body="hi", ref="r",
                                 num_segments=1, created_at=T + 1.0))  # fmt: skip
        store.record_status(correlated("SMkeep", "delivered", "WKkeep", T + 3.0))
        record = store.get_message("SMkeep")
        assert record is not None and store.get_message("WKkeep") is None
        assert (record.to, record.num_segments) == ("+14155550100", 2)  # Twilio's, kept
        assert (record.body, record.ref) == ("hi", "r")  # only the send knew them
        assert record.status is MessageStatus.DELIVERED
        assert record.created_at is not None and record.created_at.timestamp() == T + 1.0

    def test_a_failed_send_is_final_with_its_code(self, store: Store) -> None:
        store.save_message(facts("WKbad", T + 5.0, to="+15005550001", created_at=T + 5.0))
        store.save_message(facts("WKbad", T + 6.0, status="failed", error_code=21211))
        record = store.get_message("WKbad")
        assert record is not None and record.status is MessageStatus.FAILED
        assert record.error_code == 21211 and record.is_final

    def test_redaction_drops_the_body_for_good(self, store: Store) -> None:
        store.save_message(facts("SMr", T + 1.0, body="secret", to="+1"))
        store.save_message(facts("SMr", T + 2.0, redact=True))
        store.save_message(facts("SMr", T + 3.0, price="-0.0075", price_unit="USD"))
        store.save_message(facts("SMr", T + 4.0, body="fetched again"))  # e.g. a reconcile
        store.save_message(facts("WKr", T + 0.5, body="pending copy"))
        store.save_message(facts("SMr", T + 5.0), alias="WKr")
        record = store.get_message("SMr")
        assert record is not None and record.body is None and record.redacted
        assert (record.price, record.price_unit, record.to) == ("-0.0075", "USD", "+1")

    def test_inbound_message_is_recorded_with_its_claim(self, store: Store) -> None:
        inbound = facts("SMin", T + 7.0, direction="inbound", from_="+1", to="+2", body="yo",
                        num_media=2, status="received", created_at=T + 7.0)  # fmt: skip
        claim = store.claim("message:SMin", 30, message=inbound)
        assert claim.outcome is Outcome.CLAIMED
        record = store.get_message("SMin")
        assert record is not None and record.direction == "inbound" and record.num_media == 2
        assert record.status is MessageStatus.RECEIVED and record.body == "yo"
        again = store.claim("message:SMin", 30, message=facts("SMin", T + 8.0, body="changed"))
        assert again.outcome is Outcome.BUSY
        record = store.get_message("SMin")
        assert record is not None and record.body == "yo"  # a lost claim writes nothing

    def test_find_filters_and_pages_newest_first(self, store: Store) -> None:
        for index in range(7):
            store.save_message(
                facts(f"SM{index}", T + 100.0 + index, created_at=T + 100.0 + index,
                      direction="outbound-api" if index % 2 else "inbound",
                      to="+1" if index < 4 else "+2", ref=f"r{index % 3}",
                      status="delivered" if index % 3 == 0 else "sent")
            )  # fmt: skip
        store.save_message(facts("SMtie", T + 103.0, created_at=T + 103.0, to="+1"))
        every = store.find_messages(Query(limit=100))
        assert [r.message_sid for r in every] == [
            "SM6", "SM5", "SM4", "SMtie", "SM3", "SM2", "SM1", "SM0",
        ]  # fmt: skip
        assert every[0].history == () and every[0].to == "+2"
        page = store.find_messages(Query(limit=3))
        rest = store.find_messages(Query(limit=3, after=(T + 103.0, "SMtie")))
        assert [r.message_sid for r in page] == ["SM6", "SM5", "SM4"]
        assert [r.message_sid for r in rest] == ["SM3", "SM2", "SM1"]
        assert {r.message_sid for r in store.find_messages(Query(ref="r0"))} == {
            "SM0",
            "SM3",
            "SM6",
        }
        inbound = store.find_messages(Query(to="+2", direction="inbound"))
        assert {r.message_sid for r in inbound} == {
            "SM4", "SM6",
        }  # fmt: skip
        delivered = store.find_messages(
            Query(statuses=("delivered",), since=T + 101.0, until=T + 106.0)
        )
        assert [r.message_sid for r in delivered] == ["SM3"]
        open_ones = store.find_messages(Query(open_only=True, until=T + 103.5))
        assert [r.message_sid for r in open_ones] == ["SMtie", "SM2", "SM1"]


def test_sqlite_adds_the_new_ledger_columns_to_an_old_file(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE wk_messages (sid TEXT PRIMARY KEY, status TEXT, rank INTEGER NOT NULL,"
        " error_code INTEGER, updated REAL NOT NULL, final_at REAL) WITHOUT ROWID;"
        f"INSERT INTO wk_messages VALUES ('SMold', 'sent', 3, NULL, {T!r}, NULL);"
    )
    db.close()
    store = SQLiteStore(str(path))
    store.save_message(facts("SMold", T + 6.0, ref="kept"))
    record = store.get_message("SMold")
    assert record is not None and record.ref == "kept" and record.status is MessageStatus.SENT


class TestDeadOwners:
    def test_busy_names_the_holder(self, store: Store) -> None:
        first = store.claim("k", 30)
        busy = store.claim("k", 30)
        assert busy.outcome is Outcome.BUSY and busy.owner == first.owner

    def test_replace_takes_over_only_from_the_named_owner(self, store: Store) -> None:
        first = store.claim("k", 30)
        assert store.claim("k", 30, replace="someone-else").outcome is Outcome.BUSY
        taken = store.claim("k", 30, replace=first.owner)
        assert taken.outcome is Outcome.CLAIMED and taken.owner != first.owner
        store.complete("k", first.owner, b"late")  # the old owner cannot finish it any more
        store.complete("k", taken.owner, b"mine")
        assert store.claim("k", 30, replace=taken.owner).answer == b"mine"  # finished: kept

    def test_record_takes_over_without_recording_twice(self, store: Store) -> None:
        first = store.record_status(entry("SMdead", "failed"), 30)
        again = store.record_status(entry("SMdead", "failed"), 30, first.claim.owner)
        assert again.outcome is Outcome.CLAIMED and not again.recorded
        assert again.final  # the hooks may run: the status is known
        record = store.get_message("SMdead")
        assert record is not None and len(record.history) == 1


def test_an_owner_is_dead_once_its_process_is_gone() -> None:
    import os

    from webhook_kit.stores import new_owner

    mine = new_owner()
    assert not new_owner.is_dead(mine)
    assert not new_owner.is_dead("otherhost.1.2.3")  # another host: only its lease can tell
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, new_owner().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert new_owner.is_dead(child)


def test_new_idempotency_tokens_never_rerun_a_handler(make_store: StoreFactory) -> None:
    """Twilio does not promise its token survives a retry: the key is the event itself."""
    from test_kit import client_for

    from webhook_kit import InboundMessage, StatusCallback, WebhookKit
    from webhook_kit.testing import inbound_sms, status_callback

    runs: list[str] = []
    kit = WebhookKit(store=make_store())

    @kit.on_message()
    def reply(message: InboundMessage) -> str:
        runs.append(message.message_sid)
        return "ok"

    @kit.on_status()
    def track(update: StatusCallback) -> None:
        runs.append(update.status)

    client = client_for(kit)
    message, callback = inbound_sms("hi"), status_callback(status="undelivered", error_code=30003)
    for attempt in range(3):
        headers = {"I-Twilio-Idempotency-Token": f"token-{attempt}"}
        assert client.send("messages", message, headers=headers).texts == ["ok"]
        assert client.send("status", callback, headers=headers).status_code == 200
    assert runs == [message["MessageSid"], "undelivered"]


def test_requests_never_sweep_housekeeping_does(tmp_path: Path) -> None:
    now = [1000.0]
    store = SQLiteStore(str(tmp_path / "kit.db"), retention=10, clock=lambda: now[0])
    store.complete("old", store.claim("old", 30).owner, b"x")
    now[0] = 5000.0  # long past the retention and any sweep interval
    for index in range(50):
        store.claim(f"new-{index}", 30)
    count = "SELECT count(*) FROM wk_claims WHERE key = 'old'"
    assert store._connection().execute(count).fetchone()[0] == 1
    store.maintain()
    assert store._connection().execute(count).fetchone()[0] == 0


def test_each_process_maintains_its_stores_in_a_background_thread() -> None:
    from test_kit import client_for

    from webhook_kit import WebhookKit
    from webhook_kit.stores.memory import MemoryStore

    class Watched(MemoryStore):
        threads: set[str] = set()

        def maintain(self, *, full: bool = False) -> None:
            self.threads.add(threading.current_thread().name)
            super().maintain(full=full)

    kit = WebhookKit(store=Watched())
    client_for(kit).send_status("SM" + "0" * 32, "sent")
    deadline = time.monotonic() + 5
    while not Watched.threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert Watched.threads == {"webhook_kit-housekeeping"}


def test_housekeeping_outlives_a_store_whose_maintain_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from webhook_kit.stores import Housekeeping
    from webhook_kit.stores.memory import MemoryStore

    class Broken(MemoryStore):
        def maintain(self, *, full: bool = False) -> None:
            raise OSError(9, "Bad file descriptor")  # as a socket closed under redis-py

    class Counted(MemoryStore):
        calls = 0

        def maintain(self, *, full: bool = False) -> None:
            Counted.calls += 1

    broken, counted = Broken(), Counted()
    keeper = Housekeeping(interval=0.01)
    keeper.watch(broken)
    keeper.watch(counted)
    deadline = time.monotonic() + 5
    while Counted.calls < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert Counted.calls >= 5  # rounds went on after the first failure
    failures = [r for r in caplog.records if "maintain() failed" in r.getMessage()]
    assert len(failures) == 1  # logged once, with its traceback, not every round
    assert failures[0].exc_info is not None


# -- PostgreSQL: schema, migrations, sweeps, failures ----------------------------------------


def _schema_state(url: str, schema: str) -> dict[str, int | None]:
    import psycopg

    with psycopg.connect(url.partition("?")[0]) as db:
        tables = db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
        versions = db.execute(f'SELECT max(version) FROM "{schema}".wk_schema_version').fetchone()
    return {"tables": len(tables), "version": versions[0] if versions else None}


def test_postgres_creates_its_versioned_schema_on_first_use(postgres_url: str) -> None:
    from webhook_kit.stores.postgres import MIGRATIONS, PostgresStore

    store = open_store(postgres_url)
    assert isinstance(store, PostgresStore)
    schema = store.schema
    assert schema.startswith("wktest_")
    store.claim("k", 30)
    # claims, messages, events, version; conversations, opt-outs; jobs
    assert _schema_state(postgres_url, schema) == {"tables": 7, "version": len(MIGRATIONS)}
    store.close()
    again = open_store(postgres_url)  # a second process finds the schema up to date
    assert again.claim("k", 30).outcome is Outcome.BUSY
    again.close()


def test_postgres_applies_a_new_migration_once(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from webhook_kit.stores import postgres

    first = open_store(postgres_url)
    first.record_status(entry("SM1", "sent"))
    first.close()
    step = "ALTER TABLE {schema}.wk_messages ADD COLUMN note text"
    monkeypatch.setattr(postgres, "MIGRATIONS", (*postgres.MIGRATIONS, step))
    upgraded = open_store(postgres_url)
    assert upgraded.get_message("SM1") is not None  # the old rows are still there
    schema = upgraded.schema  # type: ignore[attr-defined]
    assert _schema_state(postgres_url, schema)["version"] == len(postgres.MIGRATIONS)
    with psycopg.connect(postgres_url.partition("?")[0]) as db:
        column = db.execute(
            "SELECT 1 FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'wk_messages' AND column_name = 'note'",
            (schema,),
        ).fetchone()
    assert column is not None
    upgraded.close()
    current = open_store(postgres_url)
    assert current.get_message("SM1") is not None  # nothing left to apply: no error
    current.close()
    monkeypatch.setattr(postgres, "MIGRATIONS", postgres.MIGRATIONS[:1])
    older = open_store(postgres_url)
    with pytest.raises(ConfigurationError, match="newer than this webhook_kit knows"):
        older.claim("k", 30)
    older.close()


def _rows(store: Store) -> dict[str, int]:
    with store._connection() as db:  # type: ignore[attr-defined]
        return {
            table: db.execute(f'SELECT count(*) FROM "{store.schema}".{table}').fetchone()[0]  # type: ignore[attr-defined]
            for table in ("wk_claims", "wk_messages", "wk_events")
        }


def test_postgres_maintenance_deletes_only_what_has_expired(postgres_url: str) -> None:
    from webhook_kit.stores.postgres import PostgresStore

    now = [1000.0]
    store = PostgresStore(postgres_url, retention=10, ledger_retention=20, clock=lambda: now[0])
    store.complete("old", store.claim("old", 30).owner, b"gone")
    store.claim("lapsed", 5)
    store.record_status(entry("SMold", "sent", at=1000.0))
    now[0] = 1020.0
    store.complete("live", store.claim("live", 30).owner, b"kept")
    store.record_status(entry("SMlive", "sent", at=1020.0))
    now[0] = 1025.0
    # A callback recorded without a lease writes no claim: its event is the key.
    assert _rows(store) == {"wk_claims": 3, "wk_messages": 2, "wk_events": 2}
    store.maintain(full=True)
    # Claims "old" and "lapsed" (expired at 1010 or before), and SMold's message and event
    # (last updated before 1025 - 20) went; "live" stays until 1030.
    assert _rows(store) == {"wk_claims": 1, "wk_messages": 1, "wk_events": 1}
    assert store.claim("live", 30).answer == b"kept"
    assert store.get_message("SMold") is None and store.get_message("SMlive") is not None
    store.close()


def test_postgres_housekeeping_expires_in_batches(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from webhook_kit.stores import postgres

    monkeypatch.setattr(postgres, "_PURGE_BATCH", 3)
    now = [1000.0]
    store = postgres.PostgresStore(postgres_url, retention=10, clock=lambda: now[0])
    for index in range(7):
        store.complete(f"k{index}", store.claim(f"k{index}", 30).owner, b"")
    now[0] = 1100.0
    counts = []
    for _ in range(4):  # a full batch is followed by another on the next round
        store.maintain()
        counts.append(_rows(store)["wk_claims"])
    assert counts == [4, 1, 0, 0]
    store.close()
    store.maintain()  # the housekeeping thread may call it once more: it opens nothing
    assert store._pool is None


def test_postgres_full_maintenance_opens_the_store(postgres_url: str) -> None:
    """``webhook-kit maintenance`` runs ``maintain(full=True)`` on a store nobody used yet."""
    from webhook_kit.stores.postgres import PostgresStore

    store = PostgresStore(postgres_url)
    store.maintain(full=True)
    assert _rows(store)["wk_claims"] == 0
    store.close()


def test_postgres_statements_are_bounded_by_the_store_timeout(postgres_url: str) -> None:
    """A database that hangs (here: a lock held elsewhere) is a 503 after ``timeout``."""
    import psycopg

    from webhook_kit.stores.postgres import PostgresStore

    store = PostgresStore(postgres_url, timeout=0.3)
    store.complete("k", store.claim("k", 30).owner, b"x")
    with psycopg.connect(postgres_url.partition("?")[0]) as blocker:
        blocker.execute(f'LOCK TABLE "{store.schema}".wk_claims IN ACCESS EXCLUSIVE MODE')
        started = time.monotonic()
        with pytest.raises(StoreError, match="statement timeout"):
            store.claim("k2", 30)
        assert time.monotonic() - started < 2
    store.maintain()  # releases the abandoned claim (none was made) and checks the pool
    assert store.claim("k2", 30).outcome is Outcome.CLAIMED
    store.close()


@pytest.mark.parametrize(
    ("options", "expected"), [("", "300ms"), ("&options=-c%20statement_timeout%3D5s", "5s")]
)
def test_postgres_sessions_take_the_store_timeout_unless_the_url_says(
    postgres_url: str, options: str, expected: str
) -> None:
    from webhook_kit.stores.postgres import PostgresStore

    store = PostgresStore(postgres_url + options, timeout=0.3)
    with store._connection() as db:
        assert db.execute("SHOW statement_timeout").fetchone() == (expected,)
        assert db.info.get_parameters()["tcp_user_timeout"] == "300"
    store.close()


def test_postgres_down_is_a_fast_store_error_that_says_what_to_check() -> None:
    store = open_store("postgresql://postgres:secret@127.0.0.1:1/test?pool_timeout=0.5")
    with pytest.raises(StoreError, match="PostgreSQL store") as caught:
        store.claim("k", 1)
    said = str(caught.value)
    assert "secret" not in said and ":***@" in said
    assert "accepts connections at 127.0.0.1:1" in said  # where to look
    assert "Connection refused" in said  # and libpq's own reason, which the pool only logged
    store.close()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://h/db?schema=1st",
        "postgresql://h/db?schema=a-b",
        'postgresql://h/db?schema=a"b',
        "postgresql://h/db?pool_timeout=soon",
        "postgresql://h/db?pool_size=0",
    ],
)
def test_postgres_bad_options(url: str) -> None:
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        open_store(url)


def test_postgres_claims_commit_asynchronously_and_nothing_else(postgres_url: str) -> None:
    from webhook_kit.stores.postgres import PostgresStore

    store = PostgresStore(postgres_url + "&pool_size=1")
    claim = store.claim("k", 30)
    with store._connection() as db:  # the one pooled connection, back from that claim
        assert db.execute("SHOW synchronous_commit").fetchone() == ("on",)
        before = db.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
    store.complete("k", claim.owner, b"x")
    with store._connection() as db:
        flushed = db.execute("SELECT pg_current_wal_flush_lsn() >= %s", before).fetchone()
    assert flushed == (True,)  # complete() waited for the WAL, the claim's included
    store.close()


def test_postgres_store_used_before_a_fork_works_on_both_sides(postgres_url: str) -> None:
    import os
    import warnings

    from webhook_kit.stores.postgres import PostgresStore

    store = PostgresStore(postgres_url + "&pool_size=1")
    assert store.claim("parent-before", 30).outcome is Outcome.CLAIMED
    with store._connection() as db:
        parent_backend = db.info.backend_pid
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the pool's threads: fork anyway
        pid = os.fork()
    if pid == 0:  # the child, as a gunicorn worker forked from a master that used the store
        outcome = store.claim("child", 30).outcome
        with store._connection() as db:
            backend = db.info.backend_pid
        os.write(write, f"{outcome.value} {backend}".encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode().split()
    os.close(read)
    os.waitpid(pid, 0)
    assert child[0] == Outcome.CLAIMED.value
    assert int(child[1]) != parent_backend  # the child opened a connection of its own
    assert store.claim("child", 30).outcome is Outcome.BUSY  # the child's claim is shared
    assert store.claim("parent-after", 30).outcome is Outcome.CLAIMED  # the parent's pool lives
    store.close()


def test_postgres_runs_in_a_schema_a_dba_created_for_it(postgres_url: str) -> None:
    """An application role without the CREATE privilege on the database still migrates."""
    import psycopg

    from webhook_kit.stores.postgres import PostgresStore

    admin_url, _, query = postgres_url.partition("?")
    schema = query.removeprefix("schema=")
    role = schema  # unique per test, like the schema the fixture drops
    with psycopg.connect(admin_url, autocommit=True) as db:
        db.execute(f'CREATE ROLE "{role}" LOGIN')
        db.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{role}"')
    try:
        store = PostgresStore(postgres_url.replace("postgres@", f"{role}@", 1))
        assert store.claim("k", 30).outcome is Outcome.CLAIMED
        store.close()
    finally:
        with psycopg.connect(admin_url, autocommit=True) as db:
            db.execute(f'DROP SCHEMA "{schema}" CASCADE')
            db.execute(f'DROP ROLE "{role}"')


def test_redis_reads_a_history_entry_written_by_webhook_kit_0_1(redis_url: str) -> None:
    """0.1 form-encoded each history entry; those stay readable for the ledger retention."""
    from urllib.parse import urlencode

    import redis

    store = open_store(redis_url)
    store.record_status(entry("SMold", "sent", at=1000.0))
    prefix = redis_url.rpartition("prefix=")[2]
    legacy = urlencode(
        {"key": "k0", "status": "queued", "received": "999.5", "error_code": "30003",
         "event_type": "", "form": "MessageSid=SMold&MessageStatus=queued"}
    )  # fmt: skip
    client = redis.Redis.from_url(redis_url.partition("?")[0])
    client.lpush(f"{prefix}:{{SMold}}:history", legacy)
    client.close()
    record = store.get_message("SMold")
    store.close()
    assert record is not None
    assert [(event.status.value, event.key) for event in record.history] == [
        ("queued", "k0"), ("sent", "status:SMold:sent:"),
    ]  # fmt: skip
    assert record.history[0].error_code == 30003 and record.history[0].event_type is None
    assert record.history[1].raw["MessageStatus"] == "sent"
