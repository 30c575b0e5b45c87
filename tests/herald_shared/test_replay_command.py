"""What `herald replay` makes of what the broker says, message by message (the command as a
user runs it is tests/system/test_replay.py)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from herald_shared import replay, topics
from herald_shared.delivery import receipts
from herald_shared.replay_command import Follow

PREFIX = "herald"


def receipt(outcome: receipts.DeliveryState, event_id: str = "e1") -> bytes:
    return receipts.encode(
        receipts.Receipt(
            event_id=event_id,
            kind="task_failed",
            task_id="t",
            task_name="Reload Finance",
            service="emailer",
            destination="email-failed",
            target="ops@example.com",
            outcome=outcome,
            attempts=1,
            at=datetime(2026, 12, 3, tzinfo=UTC),
        )
    )


def follow() -> Follow:
    request = replay.ReplayRequest(
        id="r1", requested_by="ops", requested_at=datetime(2026, 12, 3, tzinfo=UTC)
    )
    watching = Follow(request=request, prefix=PREFIX, out=io.StringIO())
    watching.awaited = {("emailer", "host-1")}
    return watching


def answer(request_id: str = "r1") -> bytes:
    return replay.encode(
        replay.ReplayAnswer(
            id=request_id,
            service="emailer",
            instance="host-1",
            replayed=[replay.ReplayedDelivery("e1", "email-failed", "ops@example.com")],
            not_found=[],
        )
    )


def test_only_receipts_after_the_answer_end_a_replayed_delivery() -> None:
    watching = follow()
    deliveries = topics.deliveries_topic(PREFIX, "emailer")
    # The dead letter being replayed ended just before: its receipt is not the replay's end.
    watching.take(deliveries, receipt("dead_lettered"))
    watching.take(topics.replayed_topic(PREFIX, "emailer", "host-1"), answer())
    assert watching.answered()
    assert not watching.ended()
    watching.take(deliveries, receipt("delivered", event_id="another"))  # not replayed here
    assert not watching.ended()
    watching.take(deliveries, receipt("delivered"))
    assert watching.ended()
    assert watching.out.getvalue().splitlines() == [  # type: ignore[attr-defined]
        "emailer/host-1: replaying 1 dead letter",
        "emailer: email-failed (ops@example.com): delivered",
    ]


def test_an_answer_to_another_request_is_not_waited_for() -> None:
    watching = follow()
    watching.take(topics.replayed_topic(PREFIX, "emailer", "host-1"), answer("someone-else"))
    assert not watching.answered()
    assert watching.replayed == {}
