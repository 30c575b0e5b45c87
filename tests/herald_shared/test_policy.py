"""The delivery policy's decisions on their own: no broker, no database, no sleeping."""

from __future__ import annotations

from herald_shared.delivery import policy
from herald_shared.delivery.ledger import Job
from herald_shared.settings import DeliverySettings

SETTINGS = DeliverySettings(initial_backoff=1.0, max_backoff=300.0, deadline=3600.0)


def job(attempts: int, *, next_attempt_at: float = 0.0) -> Job:
    return Job(
        "e1", "relay", "", received_at=1000.0, attempts=attempts, next_attempt_at=next_attempt_at
    )


def lowest(low: float, high: float) -> float:
    return low


def highest(low: float, high: float) -> float:
    return high


def test_the_backoff_doubles_with_each_attempt_up_to_the_maximum() -> None:
    ceilings = [policy.backoff(n, SETTINGS, highest) for n in (1, 2, 3, 4, 9, 10, 5000)]
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 256.0, 300.0, 300.0]


def test_the_jitter_draws_between_half_the_backoff_and_all_of_it() -> None:
    drawn: list[tuple[float, float]] = []

    def record(low: float, high: float) -> float:
        drawn.append((low, high))
        return (low + high) / 2

    assert policy.backoff(3, SETTINGS, record) == 3.0
    assert drawn == [(2.0, 4.0)]
    assert policy.backoff(3, SETTINGS, lowest) == 2.0


def test_a_failure_is_retried_after_the_backoff() -> None:
    decision = policy.after_failure(job(2), SETTINGS, 10.0, "HTTP 503", None, highest)
    assert decision == policy.Retry(2.0)


def test_retry_after_replaces_the_backoff() -> None:
    decision = policy.after_failure(job(1), SETTINGS, 10.0, "HTTP 429", 120.0, highest)
    assert decision == policy.Retry(120.0)


def test_a_retry_that_would_pass_the_deadline_gives_up_with_the_reason() -> None:
    decision = policy.after_failure(job(12), SETTINGS, 3500.0, "connection refused", None, lowest)
    assert decision == policy.GiveUp("gave up after 12 attempts in 3500 s: connection refused")
    assert policy.after_failure(job(12), SETTINGS, 3449.0, "x", None, lowest) == policy.Retry(150.0)


def test_a_retry_after_past_the_deadline_gives_up_at_once() -> None:
    decision = policy.after_failure(job(1), SETTINGS, 0.0, "HTTP 429", 7200.0, lowest)
    assert isinstance(decision, policy.GiveUp)


def test_a_resumed_delivery_waits_what_is_left_of_its_backoff() -> None:
    assert policy.resume_delay(job(3, next_attempt_at=1030.0), SETTINGS, now=1000.0) == 30.0
    assert policy.resume_delay(job(3, next_attempt_at=990.0), SETTINGS, now=1000.0) == 0.0


def test_a_clock_stepped_back_does_not_postpone_a_resumed_delivery() -> None:
    # Scheduled for 1030 s; the clock now reads an hour earlier.
    delay = policy.resume_delay(job(3, next_attempt_at=1030.0), SETTINGS, now=1000.0 - 3600)
    assert delay == SETTINGS.max_backoff


def test_a_rate_window_lets_the_first_through_and_holds_the_rest_until_it_ends() -> None:
    assert policy.rate_window(None, 600.0, 1000.0) == (True, 1600.0)
    assert policy.rate_window(1600.0, 600.0, 1300.0) == (False, 1600.0)
    assert policy.rate_window(1600.0, 600.0, 1600.0) == (True, 2200.0)


def test_a_rate_window_never_ends_later_than_one_window_from_now() -> None:
    # Sent at 1000 s (window until 1600 s), then the clock is stepped back an hour.
    assert policy.rate_window(1600.0, 600.0, 1000.0 - 3600) == (False, 1000.0 - 3000)
