"""Sender queues on a manual clock, through the official client: each sender sends at its
rate, the rest waits ``queued``; the queue's limit (21611, 30001) and validity (30036)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from twilio.base.exceptions import TwilioRestException

from webhook_kit.cli import main
from webhook_kit.emulator import Emulator, EmulatorError
from webhook_kit.emulator.throughput import Throughput

LONG_CODE = "+15017122661"
HANDSET = "+15558675310"


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(clock="manual") as running:
        yield running


def departures(emulator: Emulator, sids: list[str]) -> list[float]:
    """When each message left its queue (``date_sent``), relative to the first."""
    sent = []
    for sid in sids:
        record = emulator.message(sid)
        assert record is not None and record.date_sent is not None
        sent.append(record.date_sent)
    return [round(moment - sent[0], 6) for moment in sent]


def test_a_burst_from_one_long_code_drains_at_one_per_second(emulator: Emulator) -> None:
    client = emulator.client()
    sids = [
        client.messages.create(to=HANDSET, from_=LONG_CODE, body=f"burst {n}").sid
        for n in range(30)
    ]
    emulator.advance(10.5)
    statuses = [client.messages(sid).fetch().status for sid in sids]
    assert statuses[:10] == ["delivered"] * 10
    assert statuses[10] != "queued" and statuses[12:] == ["queued"] * 18
    emulator.advance(30)
    assert departures(emulator, sids) == [float(n) for n in range(30)]
    assert all(client.messages(sid).fetch().status == "delivered" for sid in sids)


def test_rates_by_sender_type_and_segments(emulator: Emulator) -> None:
    client = emulator.client()
    long_sms = [client.messages.create(to=HANDSET, from_=LONG_CODE, body="x" * 300).sid]
    long_sms.append(client.messages.create(to=HANDSET, from_=LONG_CODE, body="y").sid)
    toll_free = [
        client.messages.create(to=HANDSET, from_="+18005550100", body="t").sid for _ in range(4)
    ]
    abroad = [
        client.messages.create(to="+447700900123", from_=LONG_CODE, body="uk").sid for _ in range(3)
    ]
    emulator.advance(60)
    assert departures(emulator, long_sms) == [0.0, 2.0]  # 2 segments take 2 seconds
    assert departures(emulator, toll_free) == [0.0, 0.333333, 0.666667, 1.0]
    # the long code's queue also holds the UK messages, which leave at 10 per second
    assert departures(emulator, abroad) == [0.0, 0.1, 0.2]


def test_rates_are_configurable() -> None:
    with Emulator(clock="manual", throughput=Throughput(long_code=4)) as emulator:
        client = emulator.client()
        sids = [client.messages.create(to=HANDSET, from_=LONG_CODE, body="x").sid for _ in range(5)]
        emulator.advance(5)
        assert departures(emulator, sids) == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(EmulatorError, match="long_code"):
        Throughput(long_code=0)


def test_queue_limit_21611_for_a_from_send_30001_for_a_service() -> None:
    ten_seconds = Throughput(queue_hours=10 / 3600)
    with Emulator(clock="manual", throughput=ten_seconds) as emulator:
        client = emulator.client()
        for _ in range(10):
            client.messages.create(to=HANDSET, from_=LONG_CODE, body="fill")
        with pytest.raises(TwilioRestException) as refused:
            client.messages.create(to=HANDSET, from_=LONG_CODE, body="one too many")
        assert (refused.value.status, refused.value.code) == (400, 21611)
        service = emulator.add_service()
        emulator.add_number(LONG_CODE, messaging_service_sid=service)
        created = client.messages.create(to=HANDSET, messaging_service_sid=service, body="late")
        assert created.status == "accepted"  # created, then the queue refuses it
        emulator.advance(1)
        fetched = client.messages(created.sid).fetch()
        assert (fetched.status, fetched.error_code) == ("failed", 30001)
        assert len(emulator.messages()) == 11


def test_validity_period_expires_in_the_queue(emulator: Emulator) -> None:
    client = emulator.client()
    sids = [
        client.messages.create(to=HANDSET, from_=LONG_CODE, body="x", validity_period=5).sid
        for _ in range(8)
    ]
    created = emulator.clock.now()
    emulator.advance(4.99)
    assert client.messages(sids[-1]).fetch().status == "queued"  # not failed early
    emulator.advance(10)
    outcomes = [(m.status, m.error_code) for m in (client.messages(s).fetch() for s in sids)]
    assert outcomes[:5] == [("delivered", None)] * 5
    assert outcomes[5:] == [("failed", 30036)] * 3
    expired = emulator.message(sids[-1])
    assert expired is not None and expired.date_updated == pytest.approx(created + 5)
    # the expired messages took no place: the next message leaves right after the fifth
    after = client.messages.create(to=HANDSET, from_=LONG_CODE, body="next").sid
    emulator.advance(2)
    assert client.messages(after).fetch().status == "delivered"


def test_whatsapp_senders_queue_at_their_own_rate(emulator: Emulator) -> None:
    business, user = "whatsapp:" + LONG_CODE, "whatsapp:" + HANDSET
    emulator.add_number(business, sms_url="http://app.test/in")
    emulator.mount("http://app.test", lambda environ, start: start("200 OK", []) or [b""])
    emulator.handset(user).send(business, "hi")  # opens the window
    client = emulator.client()
    sids = [client.messages.create(to=user, from_=business, body="x").sid for _ in range(3)]
    emulator.advance(2)
    assert departures(emulator, sids) == [0.0, 0.1, 0.2]


def test_cli_throughput_option() -> None:
    runner = CliRunner()
    unknown = runner.invoke(main, ["emulator", "--throughput", "warp=9", "--port", "0"])
    assert unknown.exit_code == 1 and "unknown kind" in unknown.output
    nonsense = runner.invoke(main, ["emulator", "--throughput", "long_code=fast", "--port", "0"])
    assert nonsense.exit_code == 1 and "KIND=RATE" in nonsense.output
    zero = runner.invoke(main, ["emulator", "--throughput", "long_code=0", "--port", "0"])
    assert zero.exit_code == 1 and "positive" in zero.output
    assert "Traceback" not in unknown.output + nonsense.output + zero.output
