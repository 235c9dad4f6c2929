from __future__ import annotations

import itertools

import pytest

from webhook_kit import DeliveryFailure, MessageStatus
from webhook_kit.status import ERROR_CATALOGUE

ALL = [
    "accepted", "scheduled", "canceled", "queued", "sending", "sent", "failed",
    "delivered", "undelivered", "receiving", "received", "read", "partially_delivered",
]  # fmt: skip


def test_all_thirteen_statuses_exist() -> None:
    assert sorted(status.value for status in MessageStatus) == sorted(ALL)
    assert all(MessageStatus(value).known for value in ALL)


def test_lifecycle_order() -> None:
    order = ["queued", "sending", "sent", "delivered", "read"]
    ranks = [MessageStatus(value).rank for value in order]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)
    terminal = {MessageStatus(v).rank for v in ("delivered", "undelivered", "failed")}
    assert len(terminal) == 1
    assert MessageStatus.ACCEPTED.rank < MessageStatus.QUEUED.rank
    assert MessageStatus.SCHEDULED.rank < MessageStatus.QUEUED.rank


@pytest.mark.parametrize(
    ("status", "final"),
    [
        ("queued", False), ("sending", False), ("sent", False), ("accepted", False),
        ("receiving", False), ("delivered", True), ("undelivered", True), ("failed", True),
        ("read", True), ("canceled", True), ("received", True), ("partially_delivered", True),
    ],
)  # fmt: skip
def test_final_states(status: str, final: bool) -> None:
    assert MessageStatus(status).is_final is final


def test_unknown_status_is_kept_not_rejected() -> None:
    status = MessageStatus("teleported")
    assert isinstance(status, MessageStatus)
    assert status == "teleported" and status.value == "teleported"
    assert not status.known and status.rank == -1 and not status.is_final
    assert "teleported" not in [member.value for member in MessageStatus]


def test_unknown_status_ranks_below_every_known_one() -> None:
    unknown = MessageStatus("new_thing")
    assert all(unknown.rank < status.rank for status in MessageStatus)


@pytest.mark.parametrize("code", [*range(30001, 30011), *range(63001, 63004), *range(63005, 63015)])
def test_catalogue_covers_the_required_delivery_codes(code: int) -> None:
    error = DeliveryFailure(code)
    assert error.title and error.description
    assert error.more_info == f"https://www.twilio.com/docs/api/errors/{code}"


def test_unknown_error_code_has_no_description() -> None:
    error = DeliveryFailure(99999, "carrier said no")
    assert error.title is None and error.description is None
    assert error.message == "carrier said no"


def test_catalogue_entries_are_one_line() -> None:
    for title, description in ERROR_CATALOGUE.values():
        assert "\n" not in title + description
        assert description.endswith(".")


def test_ranks_never_regress_through_permutations() -> None:
    # The ledger's rule in one line: applying statuses in any order ends at the highest.
    statuses = [MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED]
    for order in itertools.permutations(statuses):
        current: MessageStatus | None = None
        for status in order:
            if current is None or status.rank > current.rank:
                current = status
        assert current is MessageStatus.DELIVERED
