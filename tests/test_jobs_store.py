"""The job operations of every store (memory, SQLite, real Redis and PostgreSQL): one suite."""

from __future__ import annotations

import time

import test_stores

from webhook_kit.jobs import Job, JobKind, JobState
from webhook_kit.stores import ConversationWrite, Outcome, Store

# The store fixtures of the shared suite: memory, SQLite, Redis and PostgreSQL.
kind, make_store, store = test_stores.kind, test_stores.make_store, test_stores.store


def job(key: str, created: float | None = None) -> Job:
    return Job(key, JobKind.MESSAGE, "bot.slow", f"MessageSid={key}&Body=h%C3%A9", created or 1.0)


def enqueued(store: Store, *jobs: Job, key: str = "message:SM1") -> bool:
    claim = store.claim(key, 30)
    return store.complete(key, claim.owner, b"<Response/>", jobs=jobs)


class TestEnqueue:
    def test_completes_the_claim_and_adds_the_job_in_one_step(self, store: Store) -> None:
        assert enqueued(store, job("message:SM1"))
        again = store.claim("message:SM1", 30)
        assert again.outcome is Outcome.DONE and again.answer == b"<Response/>"
        [listed] = store.list_jobs()
        assert listed == job("message:SM1")  # every field round-trips, UTF-8 included

    def test_a_lost_claim_enqueues_nothing(self, store: Store) -> None:
        claim = store.claim("message:SM1", 30)
        store.release("message:SM1", claim.owner)
        store.claim("message:SM1", 30)  # someone else holds it now
        assert not store.complete("message:SM1", claim.owner, b"", jobs=[job("message:SM1")])
        assert store.list_jobs() == []

    def test_saves_the_conversation_too_and_only_once(self, store: Store) -> None:
        lock = store.claim("lock:+1|c", 30)
        claim = store.claim("message:SM1", 30)
        write = ConversationWrite("+1|c", lock.owner, b"{}", 30, due=5.0)
        jobs = [job("message:SM1")]
        assert store.complete("message:SM1", claim.owner, b"", conversation=write, jobs=jobs)
        assert store.get_conversation("+1|c") == b"{}"
        assert store.due_conversations(10.0, 10) == ["+1|c"]
        assert store.claim("lock:+1|c", 30).outcome is Outcome.CLAIMED  # released with it
        assert [j.key for j in store.list_jobs()] == ["message:SM1"]
        finished = ConversationWrite("+1|c", lock.owner, None, 30)
        again = [job("message:SM2")]
        assert not store.complete(
            "message:SM1", claim.owner, b"x", conversation=finished, jobs=again
        )
        assert store.claim("message:SM1", 30).answer == b""
        assert store.get_conversation("+1|c") == b"{}"
        assert [j.key for j in store.list_jobs()] == ["message:SM1"]

    def test_an_existing_job_is_never_replaced(self, store: Store) -> None:
        assert enqueued(store, job("status:x#a"), key="status:x")
        taken = store.take_job(30)
        assert taken is not None
        assert enqueued(store, job("status:x#a"), job("status:x#b"), key="status:y")
        states = {j.key: j.state for j in store.list_jobs()}
        assert states == {"status:x#a": JobState.RUNNING, "status:x#b": JobState.PENDING}


class TestLeases:
    def test_take_leases_the_oldest_due_job_once(self, store: Store) -> None:
        enqueued(store, job("message:B", created=2.0), job("message:A", created=1.0))
        first = store.take_job(30)
        assert first is not None and first.key == "message:A"
        assert (first.state, first.attempts) == (JobState.RUNNING, 1) and first.owner
        second = store.take_job(30)
        assert second is not None and second.key == "message:B"
        assert store.take_job(30) is None

    def test_take_by_key(self, store: Store) -> None:
        enqueued(store, job("message:A"), job("message:B"))
        taken = store.take_job(30, "message:B")
        assert taken is not None and taken.key == "message:B"
        assert store.take_job(30, "message:B") is None  # leased already
        assert store.take_job(30, "message:nope") is None
        assert store.get_job("message:B") == taken and store.get_job("message:nope") is None

    def test_a_lapsed_lease_is_taken_over(self, store: Store) -> None:
        enqueued(store, job("message:A"))
        first = store.take_job(0.05)
        assert first is not None
        time.sleep(0.1)
        second = store.take_job(30)
        assert second is not None and second.owner != first.owner and second.attempts == 2
        assert not store.finish_job("message:A", first.owner, None)  # no longer its own
        assert not store.renew_job("message:A", first.owner, 30)
        assert store.renew_job("message:A", second.owner, 30)
        assert store.finish_job("message:A", second.owner, None)
        assert store.list_jobs() == []

    def test_renewing_keeps_the_lease(self, store: Store) -> None:
        enqueued(store, job("message:A"))
        taken = store.take_job(0.3)
        assert taken is not None
        time.sleep(0.15)
        assert store.renew_job("message:A", taken.owner, 0.3)
        time.sleep(0.2)
        assert store.take_job(30) is None


class TestRetriesAndDeadJobs:
    def test_a_retry_waits_for_its_time(self, store: Store) -> None:
        enqueued(store, job("message:A"))
        taken = store.take_job(30)
        assert taken is not None
        later = time.time() + 0.2
        assert store.finish_job("message:A", taken.owner, JobState.PENDING, later, "E: boom")
        assert store.take_job(30) is None
        time.sleep(0.25)
        again = store.take_job(30)
        assert again is not None and again.attempts == 2 and again.error == "E: boom"

    def test_dead_jobs_are_kept_listed_retried_and_purged(self, store: Store) -> None:
        enqueued(store, job("message:A"), job("message:B"))
        for _ in range(2):
            taken = store.take_job(30)
            assert taken is not None
            store.finish_job(taken.key, taken.owner, JobState.DEAD, error="ValueError: no")
        assert store.take_job(30) is None
        dead = store.list_jobs(JobState.DEAD)
        assert [j.key for j in dead] == ["message:A", "message:B"]
        assert dead[0].error == "ValueError: no" and dead[0].attempts == 1
        assert store.list_jobs(JobState.PENDING) == []
        assert store.retry_job("message:A") and not store.retry_job("message:A")
        revived = store.take_job(30)
        assert revived is not None and revived.key == "message:A" and revived.attempts == 1
        assert store.purge_jobs(JobState.DEAD) == 1
        assert [j.key for j in store.list_jobs()] == ["message:A"]
