"""A broker that crashes loses nothing ingest handed it: the whole pipeline, each part in its own
process, against a Mosquitto with production's autosave interval, killed with SIGKILL.

The log archiver is stopped (its persistent session collects the events), ingest publishes a
burst that the broker PUBACKs, and 2 s later, well before the next autosave, the broker dies. It
comes back from its last save, without the burst; the archiver comes back, and ingest, which
has no acknowledgement from it, publishes the burst again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from herald_testkit.mosquitto import shipped_setting
from herald_testkit.pipeline import Baseline, Pipeline, delivered_exactly_once, wait_for_receipts
from herald_testkit.pipeline import whole_system as system_of

ARCHIVER = 'subscriber="log-archiver"'


async def until(condition: Callable[[], Awaitable[bool]], within: float = 120.0) -> None:
    async def poll() -> None:
        while not await condition():
            await asyncio.sleep(0.2)

    await asyncio.wait_for(poll(), within)


async def published(system: Pipeline) -> float:
    return await system.metric("ingest", "herald_enrichments_total{")


async def test_a_broker_killed_2_s_after_its_pubacks_loses_no_alert(tmp_path: Path) -> None:
    broker = {
        "autosave_interval": int(shipped_setting("autosave_interval")),
        "extra": "log_type information",  # the autosaves are logged: the crash follows one
    }
    quick = {"redelivery": {"after": "2s", "max_interval": "4s"}}
    async with system_of(tmp_path, broker_options=broker, ingest_extra=quick) as system:

        async def ingest_knows_the_archiver() -> bool:
            return ARCHIVER in await system.metrics_text("ingest")

        await until(ingest_knows_the_archiver)
        await system.stop_service("log-archiver")
        baseline = Baseline.of(system.destinations)
        burst = await system.record(20)
        before = await published(system)
        saves = system.broker.saves()

        async def saved() -> bool:
            return system.broker.saves() > saves

        await until(saved)
        await system.send(burst)

        async def all_acknowledged_by_the_broker() -> bool:
            outbox = await system.metric("ingest", 'herald_outbox_messages{service="ingest"}')
            return await published(system) == before + 20 and outbox == 0

        await until(all_acknowledged_by_the_broker)
        await asyncio.sleep(2)  # the scenario: the crash comes 2 s after the PUBACKs
        await system.crash_broker()
        await system.start_service("log-archiver")
        await wait_for_receipts(system, burst, within=120)
        await asyncio.sleep(2)  # a duplicate would arrive about now; give it the chance
        assert delivered_exactly_once(system, burst, baseline) == {}
        resent = await system.metric(
            "ingest", f'herald_events_resent_total{{service="ingest",{ARCHIVER}}}'
        )
    assert resent >= 20
