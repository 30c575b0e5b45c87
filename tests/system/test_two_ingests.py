"""Two ingests (docs/deploy.md, "Two ingests"): every datagram goes to both, as a Sense node's two
appenders send it; one ingest is killed mid-burst; every alert still arrives exactly once at every
destination, and only one of them sweeps the QRS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from herald_testkit.pipeline import (
    SECOND_INGEST,
    Baseline,
    Pipeline,
    delivered_exactly_once,
    wait_for_receipts,
    whole_system,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

BURST = 200
SWEEPS = 'herald_reconcile_sweeps_total{outcome="'


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pipeline]:
    async with whole_system(
        tmp_path_factory.mktemp("two-ingests"),
        two_ingests=True,
        ingest_extra={"reconcile": {"interval": "2s"}},  # the lease changes hands within seconds
    ) as pipeline:
        yield pipeline


async def test_one_of_two_ingests_killed_mid_burst_loses_and_doubles_no_alert(
    pair: Pipeline,
) -> None:
    baseline = Baseline.of(pair.destinations)
    burst = await pair.record(BURST)
    sending = asyncio.create_task(pair.send(burst, rate=200))
    while len(burst.sent_at) < BURST // 2:
        await asyncio.sleep(0.02)
    await pair.kill("ingest")
    await sending
    await wait_for_receipts(pair, burst, within=120)
    await asyncio.sleep(2)  # a duplicate would arrive about now; give it the chance
    assert delivered_exactly_once(pair, burst, baseline) == {}


async def test_only_one_of_two_ingests_sweeps_the_qrs(pair: Pipeline) -> None:
    # Each ingest swept once at its start, before it had heard the other's lease; since then
    # the one that holds the lease sweeps and the other skips. (The first test killed ingest.)
    await pair.start_service("ingest")
    skipped = 0.0
    for _ in range(300):
        skipped = await pair.metric("ingest", SWEEPS + 'skipped"') + await pair.metric(
            SECOND_INGEST, SWEEPS + 'skipped"'
        )
        if skipped:
            break
        await asyncio.sleep(0.1)
    assert skipped >= 1
