"""The replay request and answer: what ``herald replay`` and the console send, what services answer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from herald_shared import replay


def test_a_request_survives_its_json() -> None:
    request = replay.ReplayRequest(
        id=replay.new_request_id(),
        event_ids=["e1", "e2"],
        destination="email-failed",
        since=datetime(2026, 12, 3, 3, 0, tzinfo=UTC),
        requested_by="alice",
        requested_at=datetime(2026, 12, 3, 8, 0, tzinfo=UTC),
    )
    assert replay.decode_request(replay.encode(request)) == request


def test_a_request_without_criteria_selects_every_dead_letter() -> None:
    request = replay.decode_request(
        b'{"id": "r1", "requested_by": "bob", "requested_at": "2026-12-03T08:00:00Z"}'
    )
    assert (request.event_ids, request.destination, request.since) == ([], None, None)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not a Herald replay request"),
        (b'{"id": "r1"}', "requested_by"),
        (
            b'{"id": "r1", "requested_by": "b", "requested_at": "2026-12-03T08:00:00Z",'
            b' "since": "2026-12-03T03:00:00"}',
            "since needs a time zone",
        ),
    ],
)
def test_a_bad_request_is_refused_with_its_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        replay.decode_request(payload)


def test_an_answer_survives_its_json() -> None:
    answer = replay.ReplayAnswer(
        id="r1",
        service="emailer",
        instance="emailer-1",
        replayed=[replay.ReplayedDelivery("e1", "email-failed", "ops@example.com")],
        not_found=["e2"],
    )
    assert replay.decode_answer(replay.encode(answer)) == answer
    with pytest.raises(ValueError, match="not a Herald replay answer"):
        replay.decode_answer(b'{"id": "r1"}')
