"""The emulator's REST Message resource, driven by the official twilio client.

Every response the client receives is validated against the spec's schema (see
emulator_support.py) when each test ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from emulator_support import UNTHROTTLED, check_response, error_of, recording_client
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from webhook_kit.emulator import Emulator
from webhook_kit.emulator.client import EmulatorHttpClient

FROM = "+15017122661"
TO = "+15558675310"
SERVICE = "MG" + "1" * 32


@pytest.fixture(scope="module")
def running() -> Iterator[Emulator]:
    with Emulator(
        clock="manual", throughput=UNTHROTTLED, api_keys={"SK" + "a" * 32: "key-secret"}
    ) as emulator:
        yield emulator


@pytest.fixture
def emulator(running: Emulator) -> Emulator:
    running.reset()
    running.add_service(sid=SERVICE)
    return running


@pytest.fixture
def client(emulator: Emulator) -> Iterator[Client]:
    client, http = recording_client(emulator)
    yield client
    assert http.seen, "the test made no request"
    for seen in http.seen:
        check_response(*seen)


def test_create_and_fetch(client: Client, emulator: Emulator) -> None:
    created = client.messages.create(to=TO, from_=FROM, body="Hello 👋")
    assert created.status == "queued" and created.direction == "outbound-api"
    assert created.sid.startswith("SM") and created.account_sid == emulator.account_sid
    assert created.num_segments == "1" and created.num_media == "0"
    assert created.price is None and created.date_sent is None
    emulator.advance(1)
    fetched = client.messages(created.sid).fetch()
    assert fetched.status == "delivered" and fetched.body == "Hello 👋"
    assert fetched.price == "-0.00790" and fetched.price_unit == "USD"
    assert fetched.date_sent is not None and fetched.error_code is None


def test_messaging_service_starts_accepted(client: Client, emulator: Emulator) -> None:
    created = client.messages.create(to=TO, messaging_service_sid=SERVICE, body="hi")
    assert created.status == "accepted" and created.num_segments == "0"
    assert created.messaging_service_sid == SERVICE and created.from_ is None
    emulator.advance(1)
    fetched = client.messages(created.sid).fetch()  # an empty pool has no sender
    assert fetched.status == "failed" and fetched.error_code == 21704
    emulator.add_number("+15017122600")
    emulator.add_number(FROM, messaging_service_sid=SERVICE)
    picked = client.messages.create(to=TO, messaging_service_sid=SERVICE, body="hi")
    emulator.advance(1)
    assert client.messages(picked.sid).fetch().from_ == FROM  # the service's sender


def test_segments_and_smart_encoding(client: Client) -> None:
    assert client.messages.create(to=TO, from_=FROM, body="x" * 161).num_segments == "2"
    smart = client.messages.create(to=TO, from_=FROM, body="“quoted” – text", smart_encoded=True)
    assert smart.body == '"quoted" - text'


def test_list_filters_and_paging(client: Client, emulator: Emulator) -> None:
    day = 86400
    sids = []
    for index in range(7):
        to = TO if index % 2 else "+15558675399"
        sids.append(client.messages.create(to=to, from_=FROM, body=f"m{index}").sid)
        emulator.advance(day)
    everything = client.messages.list(page_size=2)
    assert [m.sid for m in everything] == sids[::-1]  # newest first, followed over 4 pages
    assert [m.body for m in client.messages.list(to=TO, page_size=1)] == ["m5", "m3", "m1"]
    assert len(client.messages.list(from_=FROM, page_size=3, limit=4)) == 4
    first = client.messages(sids[0]).fetch().date_sent
    assert first is not None
    assert [m.sid for m in client.messages.list(date_sent=first)] == [sids[0]]
    after = client.messages.list(date_sent_after=first + timedelta(days=5), page_size=1)
    assert [m.sid for m in after] == sids[:4:-1]
    before = client.messages.list(date_sent_before=first + timedelta(days=1), page_size=1)
    assert [m.sid for m in before] == [sids[1], sids[0]]
    page = client.messages.page(page_size=3)
    assert page.next_page_url is not None
    second = page.next_page()
    assert [m.sid for m in second] == sids[3::-1][:3]
    assert second.previous_page() is not None


def test_list_with_date_only_filters_over_raw_http(emulator: Emulator) -> None:
    created = emulator.client().messages.create(to=TO, from_=FROM, body="today")
    emulator.advance(1)
    today = datetime.fromtimestamp(emulator.clock.now(), UTC).strftime("%Y-%m-%d")
    base = f"{emulator.url}/2010-04-01/Accounts/{emulator.account_sid}/Messages.json"
    auth = (emulator.account_sid, emulator.auth_token)
    for name, value, expected in [
        ("DateSent", today, [created.sid]),
        ("DateSent<", today, [created.sid]),
        ("DateSent>", today, [created.sid]),
        ("DateSent<", "2000-01-01", []),
        ("DateSent>", "2999-01-01", []),
    ]:
        reply = requests.get(base, params={name: value}, auth=auth, timeout=5)
        check_response("GET", reply.url, reply.status_code, reply.text)
        assert [m["sid"] for m in reply.json()["messages"]] == expected, (name, value)
        assert f"{name}=".replace("<", "%3C").replace(">", "%3E") in reply.json()["uri"]


def test_redact_only_when_finished(client: Client, emulator: Emulator) -> None:
    created = client.messages.create(to=TO, from_=FROM, body="secret")
    assert error_of(lambda: client.messages(created.sid).update(body="")).code == 20009
    emulator.advance(1)
    redacted = client.messages(created.sid).update(body="")
    assert redacted.body == "" and redacted.status == "delivered"
    assert error_of(lambda: client.messages(created.sid).update(body="new")).code == 30400


def test_cancel_a_scheduled_message(client: Client, emulator: Emulator) -> None:
    send_at = datetime.fromtimestamp(emulator.clock.now(), UTC) + timedelta(hours=1)
    scheduled = client.messages.create(
        to=TO,
        messaging_service_sid=SERVICE,
        body="later",
        schedule_type="fixed",
        send_at=send_at,
    )
    assert scheduled.status == "scheduled"
    emulator.advance(600)
    assert client.messages(scheduled.sid).fetch().status == "scheduled"
    canceled = client.messages(scheduled.sid).update(status="canceled")
    assert canceled.status == "canceled"
    emulator.advance(7200)
    assert client.messages(scheduled.sid).fetch().status == "canceled"
    assert error_of(lambda: client.messages(scheduled.sid).update(status="canceled")).code == 30409


def test_scheduled_message_is_sent_at_send_at(client: Client, emulator: Emulator) -> None:
    emulator.add_number(FROM, messaging_service_sid=SERVICE)
    send_at = datetime.fromtimestamp(emulator.clock.now(), UTC) + timedelta(minutes=10)
    scheduled = client.messages.create(
        to=TO, messaging_service_sid=SERVICE, body="b", schedule_type="fixed", send_at=send_at
    )
    emulator.advance(599)
    assert client.messages(scheduled.sid).fetch().status == "scheduled"
    emulator.advance(5)
    assert client.messages(scheduled.sid).fetch().status == "delivered"


def test_delete(client: Client, emulator: Emulator) -> None:
    created = client.messages.create(to=TO, from_=FROM, body="bye")
    assert error_of(lambda: client.messages(created.sid).delete()).code == 20009
    emulator.advance(1)
    assert client.messages(created.sid).delete() is True
    assert error_of(lambda: client.messages(created.sid).fetch()).code == 20404


def test_media(client: Client, emulator: Emulator) -> None:
    urls = ["https://example.com/cat.png", "https://example.com/dog.gif"]
    created = client.messages.create(to=TO, from_=FROM, media_url=urls)
    assert created.sid.startswith("MM") and created.num_media == "2" and created.body == ""
    media = client.messages(created.sid).media.list()
    assert [m.content_type for m in media] == ["image/png", "image/gif"]
    one = client.messages(created.sid).media(media[0].sid).fetch()
    assert one.parent_sid == created.sid
    assert client.messages(created.sid).media(media[0].sid).delete() is True
    assert len(client.messages(created.sid).media.list()) == 1
    missing = error_of(lambda: client.messages(created.sid).media(media[0].sid).fetch())
    assert missing.code == 20404 and missing.status == 404
    emulator.advance(1)
    assert client.messages(created.sid).fetch().price == "-0.02000"


def test_auth(emulator: Emulator) -> None:
    wrong = Client(emulator.account_sid, "wrong", http_client=EmulatorHttpClient(emulator.url))
    failure = error_of(lambda: wrong.messages.create(to=TO, from_=FROM, body="x"))
    assert (failure.status, failure.code) == (401, 20003)
    key = Client(
        "SK" + "a" * 32,
        "key-secret",
        emulator.account_sid,
        http_client=EmulatorHttpClient(emulator.url),
    )
    assert key.messages.create(to=TO, from_=FROM, body="with a key").status == "queued"
    other = Client(
        "SK" + "a" * 32,
        "key-secret",
        "AC" + "0" * 32,
        http_client=EmulatorHttpClient(emulator.url),
    )
    assert error_of(lambda: other.messages.create(to=TO, from_=FROM, body="x")).status == 401


def test_path_account(emulator: Emulator) -> None:
    auth = (emulator.account_sid, emulator.auth_token)
    for account, status, code in [("AC" + "0" * 32, 401, 20003), ("nonsense", 404, 20404)]:
        url = f"{emulator.url}/2010-04-01/Accounts/{account}/Messages.json"
        reply = requests.get(url, auth=auth, timeout=5)
        check_response("GET", url, reply.status_code, reply.text)
        assert (reply.status_code, reply.json()["code"]) == (status, code)


def test_region_does_not_break_the_http_client(emulator: Emulator) -> None:
    regional = emulator.client(region="ie1", edge="dublin")
    assert regional.messages.create(to=TO, from_=FROM, body="x").status == "queued"


@pytest.mark.parametrize(
    ("field", "number", "code"),
    [
        ("from_", "+15005550001", 21212),
        ("from_", "+15005550007", 21606),
        ("from_", "+15005550008", 21611),
        ("to", "+15005550001", 21211),
        ("to", "+15005550002", 21612),
        ("to", "+15005550003", 21408),
        ("to", "+15005550004", 21610),
        ("to", "+15005550009", 21614),
    ],
)
def test_magic_numbers(client: Client, field: str, number: str, code: int) -> None:
    values = {"to": TO, "from_": "+15005550006", "body": "magic", field: number}
    failure = error_of(lambda: client.messages.create(**values))
    assert (failure.status, failure.code) == (400, code)


def test_magic_from_that_passes(client: Client) -> None:
    assert client.messages.create(to=TO, from_="+15005550006", body="ok").status == "queued"


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"from_": FROM, "body": "x", "to": "555"}, 21211),
        ({"from_": "+1", "body": "x"}, 21212),
        ({"body": "x"}, 21603),
        ({"from_": FROM}, 21602),
        ({"messaging_service_sid": SERVICE}, 21619),
        ({"messaging_service_sid": "MGnope", "body": "x"}, 21705),
        ({"from_": FROM, "body": "x" * 1601}, 21617),
        ({"from_": FROM, "media_url": [f"https://e.com/{i}.png" for i in range(11)]}, 21623),
        ({"from_": FROM, "media_url": ["ftp://e.com/a.png"]}, 21620),
        ({"from_": FROM, "body": "x", "status_callback": "not a url"}, 21609),
        ({"from_": FROM, "body": "x", "status_callback": "http://bad_host/cb"}, 21609),
        ({"from_": FROM, "body": "x", "status_callback": "http://[::1/cb"}, 21609),
        ({"from_": FROM, "body": "x", "status_callback": "http://h:99999/cb"}, 21609),
        ({"from_": FROM, "body": "x", "validity_period": 0}, 21624),
        ({"from_": FROM, "body": "x", "validity_period": 36001}, 21624),
        ({"from_": FROM, "body": "x", "validity_period": "²"}, 21624),
        ({"from_": FROM, "body": "x", "schedule_type": "fixed"}, 35118),
        ({"messaging_service_sid": SERVICE, "body": "x", "schedule_type": "fixed"}, 35111),
        ({"from_": FROM, "body": "x", "content_retention": "forever"}, 30029),
        ({"from_": FROM, "body": "x", "smart_encoded": "maybe"}, 20001),
        ({"from_": FROM, "body": "x", "content_variables": "[1]"}, 21656),
        ({"from_": FROM, "body": "x", "content_variables": "[" * 100_000}, 21656),
        ({"from_": FROM, "body": "x", "content_variables": '{"1": "a"}'}, 21654),
        ({"from_": FROM, "content_sid": "HX" + "0" * 32}, 21655),
        ({"from_": FROM, "content_sid": "HXnope"}, 21655),
        ({"from_": TO, "body": "x"}, 21266),
    ],
)
def test_bad_create_parameters(client: Client, values: dict[str, object], code: int) -> None:
    failure = error_of(lambda: client.messages.create(**{"to": TO, **values}))
    assert (failure.status, failure.code) == (400, code)


@pytest.mark.parametrize("minutes", [1, 60 * 24 * 36])
def test_send_at_outside_the_window(client: Client, emulator: Emulator, minutes: int) -> None:
    send_at = datetime.fromtimestamp(emulator.clock.now(), UTC) + timedelta(minutes=minutes)
    failure = error_of(
        lambda: client.messages.create(
            to=TO, messaging_service_sid=SERVICE, body="x", schedule_type="fixed", send_at=send_at
        )
    )
    assert failure.code == 35115


def test_every_spec_create_parameter_is_accepted(client: Client, emulator: Emulator) -> None:
    send_at = datetime.fromtimestamp(emulator.clock.now(), UTC) + timedelta(hours=2)
    created = client.messages.create(
        to="whatsapp:" + TO,
        from_="whatsapp:" + FROM,
        messaging_service_sid=SERVICE,
        body="all",
        media_url=["https://example.com/a.jpg"],
        status_callback="https://example.com/status",
        application_sid="AP" + "b" * 32,
        max_price=1.5,
        provide_feedback=True,
        attempt=2,
        validity_period=600,
        force_delivery=True,
        content_retention="retain",
        address_retention="retain",
        smart_encoded=False,
        persistent_action=["mailto:a@example.com"],
        traffic_type="free",
        shorten_urls=True,
        schedule_type="fixed",
        send_at=send_at,
        send_as_mms=True,
        content_variables='{"1": "x"}',
        risk_check="enable",
        content_sid=emulator.add_template({"twilio/text": {"body": "Hi {{1}}"}}),
    )
    assert created.status == "scheduled" and created.to == "whatsapp:" + TO


def test_not_found_and_bad_token(client: Client) -> None:
    assert error_of(lambda: client.messages("SM" + "0" * 32).fetch()).code == 20404
    assert error_of(lambda: client.messages("nonsense").fetch()).status == 404


def test_invalid_page_token(emulator: Emulator) -> None:
    base = f"{emulator.url}/2010-04-01/Accounts/{emulator.account_sid}/Messages.json"
    auth = (emulator.account_sid, emulator.auth_token)
    for token in ["PAnope", "PA" + "SM" + "0" * 32, "XX" + "SM" + "0" * 32]:
        reply = requests.get(base, params={"PageToken": token}, auth=auth, timeout=5)
        assert reply.status_code == 400 and reply.json()["code"] == 21481


def test_request_log(client: Client, emulator: Emulator) -> None:
    client.messages.create(to=TO, from_=FROM, body="logged")
    client.messages.list()
    assert [(r.method, r.status) for r in emulator.requests] == [("POST", 201), ("GET", 200)]
    assert ("Body", "logged") in emulator.requests[0].form


def test_rate_limit() -> None:
    with Emulator(clock="manual", throughput=UNTHROTTLED, rate_limit=1) as limited:
        client = limited.client()
        codes = []
        for _ in range(10):
            try:
                client.messages.create(to=TO, from_=FROM, body="x")
                codes.append(201)
            except TwilioRestException as error:
                codes.append(error.code)
        assert 20429 in codes and codes[0] == 201


def test_sqlite_state_survives_a_restart(tmp_path: object) -> None:
    state = f"sqlite:///{tmp_path}/emulator.db"
    account, token = "AC" + "d" * 32, "token"
    with Emulator(
        clock="manual", throughput=UNTHROTTLED, state=state, account_sid=account, auth_token=token
    ) as first:
        sid = first.client().messages.create(to=TO, from_=FROM, body="kept").sid
    with Emulator(
        clock="manual", throughput=UNTHROTTLED, state=state, account_sid=account, auth_token=token
    ) as second:
        assert second.client().messages(sid).fetch().status == "queued"
        second.advance(1)  # the unfinished life cycle resumes
        assert second.client().messages(sid).fetch().status == "delivered"


def test_the_emulator_takes_every_account_option_by_name() -> None:
    """Its keywords are explicit (typed, documented), and the same as the account's."""
    import inspect

    from webhook_kit.emulator.core import Account

    served = inspect.signature(Emulator).parameters
    model = inspect.signature(Account).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in served.values())
    assert {name: p.default for name, p in served.items() if name in model} == {
        name: p.default for name, p in model.items()
    }
    assert set(served) - set(model) == {"host", "port", "media_port"}
    documented = inspect.getdoc(Emulator) or ""
    assert [name for name in served if f":param {name}:" not in documented] == []
