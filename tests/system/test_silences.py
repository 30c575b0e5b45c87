"""A silence on one stream, through the whole system (every service in its own process): the
stream's failures get a ``silenced`` receipt from every subscriber service and reach no
destination, another stream's are alerted everywhere, and after ``herald silence expire`` new
failures of the silenced stream alert again."""

from __future__ import annotations

import asyncio

import pytest

from herald_qlik_sim.data import TASK_ABORTED_ID, TASK_FAILED_ID
from herald_testkit.pipeline import (
    OWED,
    SUBSCRIBERS,
    Baseline,
    Burst,
    Pipeline,
    delivered_exactly_once,
    wait_for_receipts,
)
from herald_testkit.processes import herald

pytestmark = pytest.mark.asyncio(loop_scope="module")

COUNT = 3
# TASK_FAILED_ID reloads "Sales dashboard", in the stream Finance; TASK_ABORTED_ID reloads
# "Inventory snapshot", in Operations (recorded here as failures).
SILENCED_TASK, OTHER_TASK = TASK_FAILED_ID, TASK_ABORTED_ID


async def active_silences_everywhere(system: Pipeline, count: int, within: float = 60) -> None:
    """Until every subscriber service reports ``count`` active silences on its /metrics."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        found = [await system.metric(name, "herald_silences_active{") for name in SUBSCRIBERS]
        if found == [count] * len(SUBSCRIBERS):
            return
        assert asyncio.get_running_loop().time() < deadline, found
        await asyncio.sleep(0.3)


async def every_receipt(system: Pipeline, burst: Burst, within: float = 120) -> None:
    """Until every delivery the burst owes has a receipt, however it ended."""
    expected = {(e, *owed) for e in burst.event_ids() for owed in OWED}
    deadline = asyncio.get_running_loop().time() + within
    while True:
        receipts = system.receipts_for(set(burst.event_ids()))
        if expected <= {(r.event_id, r.service, r.destination, r.target) for r in receipts}:
            return
        assert asyncio.get_running_loop().time() < deadline, len(receipts)
        await asyncio.sleep(0.5)


async def test_a_silence_on_one_stream_holds_it_back_everywhere_until_it_is_expired(
    system: Pipeline,
) -> None:
    config = str(system.config)
    status, out, err = await herald(
        "silence", "add", "--config", config, "--match", "streams=Finance", "--for", "1h",
        "--comment", "Finance source database maintenance",
    )  # fmt: skip
    assert status == 0, err
    silence_id = out.split()[2]
    await active_silences_everywhere(system, 1)

    baseline = Baseline.of(system.destinations)
    silenced = await system.record(COUNT, SILENCED_TASK)
    alerted = await system.record(COUNT, OTHER_TASK)
    await system.send(silenced)
    await system.send(alerted)
    await every_receipt(system, silenced)
    await wait_for_receipts(system, alerted, within=120)
    await asyncio.sleep(2)  # a late send would arrive about now; give it the chance

    # The other stream: every destination, exactly once, by event id.
    assert delivered_exactly_once(system, alerted, baseline) == {}
    # The silenced stream: a silenced receipt from every service for every delivery it owes...
    receipts = system.receipts_for(set(silenced.event_ids()))
    assert {r.outcome for r in receipts} == {"silenced"}
    assert {r.service for r in receipts} == set(SUBSCRIBERS)
    # ... and nothing at any destination.
    problems = delivered_exactly_once(system, silenced, baseline)
    none_of = {"more than once": 0, "most copies": 1}
    assert problems == {
        "receipt outcomes": {"silenced": COUNT * len(OWED)},
        "email": {**none_of, "missing": COUNT * 2},  # two recipients
        "new relic": {**none_of, "missing": COUNT},
        "webhook": {**none_of, "missing": COUNT},
        "influxdb": {**none_of, "missing": COUNT},
        "archive": {"missing": COUNT},
        # Checked by the event id each request carries (X-Herald-Event-Id) or its payload holds.
        "slack": {**none_of, "missing": COUNT},
        "teams": {**none_of, "missing": COUNT},
        "signl4": {**none_of, "missing": COUNT},
        "new relic logs": {**none_of, "missing": COUNT},
        "butler mqtt full": {**none_of, "missing": COUNT},
    }

    status, out, err = await herald("silence", "expire", "--config", config, silence_id)
    assert (status, out) == (0, f"expired silence {silence_id}\n"), err
    await active_silences_everywhere(system, 0)
    baseline = Baseline.of(system.destinations)
    again = await system.record(COUNT, SILENCED_TASK)
    await system.send(again)
    await wait_for_receipts(system, again, within=120)
    await asyncio.sleep(2)
    assert delivered_exactly_once(system, again, baseline) == {}
