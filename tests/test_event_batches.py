"""An Event Streams batch is applied all or nothing, on every store; inbound events reach
the ledger as the inbound webhook's record.

The faults are the real engines' own: a SQLite trigger that aborts a statement, a
PostgreSQL trigger that kills its own connection (``pg_terminate_backend``) mid-transaction,
and a Redis key of the wrong type that makes the batch's script fail. Memory has no engine
to fail: a record that cannot be merged stands in.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import pytest
from conftest import POSTGRES_URL, REDIS_HOST, REDIS_PORT
from test_event_streams import Bot

from webhook_kit import MessageStatus
from webhook_kit.records import Direction, EventApplied, EventWrite, MessageFacts, StatusEntry
from webhook_kit.stores import Store, open_store
from webhook_kit.stores.memory import MemoryStore
from webhook_kit.testing import TwilioTestClient, inbound_event, message_event, new_sid

BACKENDS = ["memory", "sqlite", "redis", "postgres"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'batch.db'}"
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def entry(sid: str, status: str, at: float = 1000.0) -> StatusEntry:
    value = MessageStatus(status)
    return StatusEntry(
        sid, f"status:{sid}:{status}::", value.value, value.rank, value.is_final, None, None,
        at, f"MessageSid={sid}&MessageStatus={status}",
    )  # fmt: skip


def inbound(sid: str, body: str | None = "hi", at: float = 1000.0) -> MessageFacts:
    return MessageFacts(
        sid, at, direction="inbound", from_="+14155550100", to="+15005550006", body=body,
        created_at=at, status="received",
    )  # fmt: skip


# -- the store operation ------------------------------------------------------------------------


def test_each_event_is_applied_once_in_a_batch_and_across_batches(store: Store) -> None:
    sent, delivered, received = new_sid(), new_sid(), new_sid()
    writes = [
        EventWrite("event-ledger:a", status=entry(sent, "sent", 1000.0)),
        EventWrite("event-ledger:b", status=entry(sent, "delivered", 1000.1)),
        EventWrite("event-ledger:c", message=inbound(received)),
        EventWrite("event-ledger:a", status=entry(sent, "sent", 1000.2)),  # a duplicate
        EventWrite("event-ledger:d"),  # an event with no ledger effect is still deduplicated
        EventWrite("event-ledger:e", status=entry(delivered, "delivered")),
    ]
    assert store.apply_events(writes) == [
        EventApplied(True, True),
        EventApplied(True, True),
        EventApplied(True, False),
        EventApplied(False, False),
        EventApplied(True, False),
        EventApplied(True, True),
    ]
    assert store.apply_events(writes) == [EventApplied(False, False)] * len(writes)
    assert store.apply_events([]) == []
    record = store.get_message(sent)
    assert record is not None and record.status is MessageStatus.DELIVERED
    assert [event.status.value for event in record.history] == ["sent", "delivered"]
    message = store.get_message(received)
    assert message is not None and message.direction is Direction.INBOUND
    assert (message.body, message.from_) == ("hi", "+14155550100")
    assert message.status is MessageStatus.RECEIVED and not message.history


def test_a_status_a_callback_brought_first_is_not_recorded_again(store: Store) -> None:
    sid = new_sid()
    assert store.record_status(entry(sid, "delivered")).recorded
    (applied,) = store.apply_events([EventWrite("event-ledger:x", status=entry(sid, "delivered"))])
    assert applied == EventApplied(True, False)
    record = store.get_message(sid)
    assert record is not None and len(record.history) == 1


def test_an_inbound_message_is_one_record_whichever_channel_comes_first(store: Store) -> None:
    first, second = new_sid(), new_sid()
    store.claim("message:" + first, 30, message=inbound(first, "hello", 1000.0))
    store.apply_events([EventWrite("event-ledger:1", message=inbound(first, "hello", 1001.0))])
    store.apply_events([EventWrite("event-ledger:2", message=inbound(second, None, 1000.0))])
    store.claim("message:" + second, 30, message=inbound(second, "hello", 1001.0))
    for sid in (first, second):
        record = store.get_message(sid)
        assert record is not None and record.body == "hello"
        assert record.created_at is not None and record.created_at.timestamp() == 1000.0


# -- faults: nothing of the batch, then the retry applies all of it once -------------------------


def faulty_batch() -> tuple[list[dict[str, Any]], list[str]]:
    """Three events, the last of which the store fails to apply; and their three SIDs."""
    sids = [new_sid() for _ in range(3)]
    batch = [
        message_event(sids[0], "sent"),
        inbound_event(sids[1], "hello"),
        message_event(sids[2], "delivered"),
    ]
    return batch, sids


def check_all_or_nothing(
    bot: Bot, inject: Callable[[dict[str, Any]], None], heal: Callable[[], None]
) -> None:
    """``inject`` makes the store fail on the batch's third event, ``heal`` undoes it."""
    batch, sids = faulty_batch()
    inject(batch[2])
    failed = bot.client().send_events(batch)
    assert failed.status_code == 503 and b"Traceback" not in failed.get_data()
    assert all(bot.record(sid) is None for sid in sids), "nothing of the batch is applied"
    assert not bot.events and not bot.statuses
    heal()
    for _ in range(2):  # the retry applies it all, once; one more changes nothing
        assert bot.client().send_events(batch).status_code == 200
    assert [event.status.value for event in bot.record(sids[0]).history] == ["sent"]
    assert bot.record(sids[1]).body == "hello" and bot.record(sids[1]).direction == "inbound"
    assert bot.record(sids[2]).status is MessageStatus.DELIVERED
    assert bot.events == [event["id"] for event in batch]
    assert bot.statuses == [(sids[0], "sent"), (sids[2], "delivered")]


def test_sqlite_rolls_the_batch_back_when_a_statement_fails(tmp_path: Path) -> None:
    path = tmp_path / "fault.db"
    bot = Bot(f"sqlite:///{path}")
    assert bot.record(new_sid()) is None  # the file and its tables exist
    admin = sqlite3.connect(path, isolation_level=None)

    def inject(event: dict[str, Any]) -> None:
        sid = event["data"]["messageSid"]
        admin.execute(
            f"CREATE TRIGGER fault BEFORE INSERT ON wk_messages WHEN NEW.sid = '{sid}'"
            " BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
        )

    check_all_or_nothing(bot, inject, lambda: admin.execute("DROP TRIGGER fault"))
    admin.close()


def test_postgres_rolls_the_batch_back_when_its_connection_is_killed(postgres_url: str) -> None:
    import psycopg

    schema = dict(parse_qsl(urlsplit(postgres_url).query))["schema"]
    bot = Bot(postgres_url)
    assert bot.record(new_sid()) is None  # the schema and its tables exist
    admin = psycopg.connect(POSTGRES_URL, autocommit=True)

    def inject(event: dict[str, Any]) -> None:
        # The backend running the batch kills itself when it reaches the third event.
        sid = event["data"]["messageSid"]
        admin.execute(
            f'CREATE FUNCTION "{schema}".fault() RETURNS trigger LANGUAGE plpgsql AS $$'
            f" BEGIN IF NEW.sid = '{sid}' THEN PERFORM pg_terminate_backend(pg_backend_pid());"
            " END IF; RETURN NEW; END $$"
        )
        admin.execute(
            f'CREATE TRIGGER fault BEFORE INSERT ON "{schema}".wk_messages'
            f' FOR EACH ROW EXECUTE FUNCTION "{schema}".fault()'
        )

    def heal() -> None:
        admin.execute(f'DROP TRIGGER fault ON "{schema}".wk_messages')

    check_all_or_nothing(bot, inject, heal)
    admin.close()
    bot.kit.pipeline(bot.app).store.close()


def test_redis_applies_nothing_when_the_batch_script_fails(redis_url: str) -> None:
    import redis

    prefix = dict(parse_qsl(urlsplit(redis_url).query))["prefix"]
    bot = Bot(redis_url)
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    wrong = ""

    def inject(event: dict[str, Any]) -> None:
        # The third event's dedupe record holds a list: reading it fails the script there.
        nonlocal wrong
        wrong = f"{prefix}:claim:event-ledger:{event['id']}"
        client.rpush(wrong, "a list where a string belongs")

    check_all_or_nothing(bot, inject, lambda: client.delete(wrong))
    client.close()
    bot.kit.pipeline(bot.app).store.close()


def test_memory_puts_back_what_a_failing_batch_changed() -> None:
    store = MemoryStore()
    sent, received, broken = new_sid(), new_sid(), new_sid()
    store.record_status(entry(sent, "queued", 999.0))
    store.save_message(inbound(broken))
    before = [store.get_message(sid) for sid in (sent, received, broken)]
    # A record that cannot be merged (a time that is no number) fails the third write.
    unmergeable = MessageFacts(broken, 1001.0, created_at=cast(float, "soon"))
    writes = [
        EventWrite("event-ledger:1", status=entry(sent, "sent")),
        EventWrite("event-ledger:2", message=inbound(received)),
        EventWrite("event-ledger:3", message=unmergeable),
    ]
    with pytest.raises(TypeError):
        store.apply_events(writes)
    assert [store.get_message(sid) for sid in (sent, received, broken)] == before
    healed = [*writes[:2], EventWrite("event-ledger:3", message=inbound(broken, "again", 1001.0))]
    assert store.apply_events(healed) == [
        EventApplied(True, True),
        EventApplied(True, False),
        EventApplied(True, False),
    ]
    record = store.get_message(sent)
    assert record is not None and [e.status.value for e in record.history] == ["queued", "sent"]


# -- inbound events through the sink ------------------------------------------------------------


@pytest.mark.parametrize("first", ["webhook", "event-streams"])
def test_an_inbound_event_and_its_webhook_make_one_record(store_url: str, first: str) -> None:
    bot = Bot(store_url)
    replies: list[str] = []

    @bot.kit.on_message()
    def reply(message: Any) -> str:
        replies.append(message.message_sid)
        return "thanks"

    sid = new_sid()
    event = inbound_event(sid, "hello")
    client: TwilioTestClient = bot.client()
    post = {
        "webhook": lambda: client.send_message(
            "hello", fields={"MessageSid": sid, "SmsMessageSid": sid, "SmsSid": sid}
        ),
        "event-streams": lambda: client.send_events([event]),
    }
    for channel in (first, *(c for c in post if c != first)):
        post[channel]()
    assert bot.client().send_events([event]).status_code == 200  # a retry: nothing new
    record = bot.record(sid)
    assert record.direction == "inbound" and record.body == "hello"
    assert record.status is MessageStatus.RECEIVED and not record.history
    with bot.app.app_context():
        assert [r.message_sid for r in bot.kit.ledger.find()] == [sid]  # one record
    assert replies == [sid]  # the webhook's handler runs whichever channel came first
    assert len(bot.inbound) == 1  # and on_event once per event
    if store_url != "memory://":
        bot.kit.pipeline(bot.app).store.close()


@pytest.mark.parametrize(
    "data",
    [
        {"messageSid": "SMnope"},
        {"from": None},
        {"numMedia": "many"},
        {"numMedia": 10**12},
        {"numSegments": -1},
        {"body": 5.5},
    ],
)
def test_a_bad_inbound_event_is_a_400_and_nothing_of_its_batch_is_applied(
    data: dict[str, Any],
) -> None:
    bot = Bot()
    good = message_event(new_sid(), "delivered")
    bad = inbound_event(**data)
    assert bot.client().send_events([good, bad]).status_code == 400
    assert bot.nothing_applied()


@pytest.mark.parametrize("count", ["99999999999999999999", "1e3"])
def test_an_inbound_count_no_column_can_hold_is_recorded_as_unknown(
    store_url: str, count: str
) -> None:
    """NumSegments past any integer column (or not digits) reads unknown: the webhook is
    answered and recorded, never a 500 from the store."""
    bot = Bot(store_url)

    @bot.kit.on_message()
    def reply(message: Any) -> str:
        return "ok"

    sid = new_sid()
    fields = {"MessageSid": sid, "SmsMessageSid": sid, "SmsSid": sid, "NumSegments": count}
    answer = bot.client().send_message("hello", fields=fields)
    assert answer.status_code == 200 and answer.texts == ["ok"]
    record = bot.record(sid)
    assert record.num_segments is None and record.body == "hello"
    if store_url != "memory://":
        bot.kit.pipeline(bot.app).store.close()
