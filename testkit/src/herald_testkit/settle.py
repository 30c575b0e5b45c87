"""Waiting for a burst to settle in the whole system, then checking that every destination got
each of its alerts exactly once (tests/system/, with :mod:`herald_testkit.pipeline`)."""

from __future__ import annotations

import asyncio

from herald_testkit.pipeline import (
    Baseline,
    Burst,
    Pipeline,
    counted_once_by_prometheus,
    delivered_exactly_once,
    wait_for_receipts,
)

IN_FLIGHT = 8  # delivery.concurrency: at most this many deliveries per destination at the kill


def repeated_only_in_flight(problem: dict[str, int], events: int) -> bool:
    """Nothing missing, and no more than IN_FLIGHT alerts arrived twice (never three times)."""
    if "accepted" in problem:  # counted destinations: {"expected": n, "accepted": m}
        return events < problem["accepted"] <= events + IN_FLIGHT
    return (
        problem["missing"] == 0
        and problem["most copies"] == 2
        and (problem["more than once"] <= IN_FLIGHT)
    )


async def settle_and_check(
    system: Pipeline,
    burst: Burst,
    baseline: Baseline,
    within: float = 120,
    repeatable: frozenset[str] = frozenset(),
) -> None:
    """Every destination got each alert exactly once; those named in ``repeatable`` may have
    got a few twice (:func:`repeated_only_in_flight`), but none missing."""
    await wait_for_receipts(system, burst, within=within)
    await asyncio.sleep(2)  # a duplicate would arrive about now; give it the chance
    problems = delivered_exactly_once(system, burst, baseline)
    repeats = {name: problems.pop(name) for name in repeatable if name in problems}
    assert problems == {}
    assert all(repeated_only_in_flight(p, len(burst.execution_ids)) for p in repeats.values()), (
        repeats
    )
    assert await counted_once_by_prometheus(system, burst, baseline) == {}
