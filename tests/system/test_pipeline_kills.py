"""The whole pipeline, each part in its own process, with a part killed or restarted in the
middle of a burst: a subscriber service or ingest SIGKILLed, Mosquitto restarted, ingest down
while reloads fail. Every alert still arrives exactly once at every destination; only what was in
flight at a kill may arrive twice (:data:`REPEATABLE`), and nothing is missing.

tests/system/test_pipeline.py says what the system owes per event and how each destination is
checked; these tests have a system of their own, so the two files run side by side in two
workers.
"""

from __future__ import annotations

import asyncio

import pytest

from herald_testkit.pipeline import (
    SUBSCRIBERS,
    Baseline,
    Pipeline,
    counted_once_by_prometheus,
    delivered_exactly_once,
    wait_for_receipts,
)
from herald_testkit.settle import repeated_only_in_flight, settle_and_check
from herald_testkit.waiting import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

BURST = 200

#: What a SIGKILLed service may have sent twice: what a destination accepted in the instant before
#: the kill, before the service had stored that it did. These destinations have no idempotency
#: key Herald could give them (SMTP, Slack, Teams, New Relic's Event API, Signl4's webhook; a
#: webhook receiver can use the event id in ``herald_event``). InfluxDB overwrites the same point
#: and the archive the same file, so the metrics writer and the log archiver repeat nothing.
REPEATABLE = {
    "emailer": {"email"},
    "chat-notifier": {"slack", "teams"},
    "incident-forwarder": {
        "new relic",
        "new relic logs",
        "signl4",
        "webhook",
        "butler mqtt",
        "butler mqtt full",
    },
    "metrics-writer": set(),
    "log-archiver": set(),
}
BUTLER_MQTT = frozenset({"butler mqtt", "butler mqtt full"})


@pytest.mark.parametrize("service", SUBSCRIBERS)
async def test_a_subscriber_killed_mid_burst_and_restarted_loses_nothing(
    system: Pipeline, service: str
) -> None:
    baseline = await Baseline.taken(system)
    burst = await system.record(BURST)
    mails_before = len(system.destinations.smtp.received)
    sending = asyncio.create_task(system.send(burst, rate=100))
    # Mid-burst: the e-mails have started going out, most are still owed.
    await wait_until(lambda: len(system.destinations.smtp.received) - mails_before >= 40)
    await system.kill(service)
    await asyncio.sleep(0.5)
    await system.start_service(service)
    await sending
    await wait_for_receipts(system, burst, within=120)
    await asyncio.sleep(2)
    problems = delivered_exactly_once(system, burst, baseline)
    repeats = {name: problems.pop(name) for name in REPEATABLE[service] if name in problems}
    assert problems == {}
    assert all(repeated_only_in_flight(p, BURST) for p in repeats.values()), repeats
    assert await counted_once_by_prometheus(system, burst, baseline) == {}


async def test_mosquitto_restarted_mid_burst_loses_and_repeats_nothing(system: Pipeline) -> None:
    baseline = await Baseline.taken(system)
    burst = await system.record(BURST)
    sending = asyncio.create_task(system.send(burst, rate=100))
    await wait_until(lambda: len(burst.sent_at) >= BURST // 3)
    await system.restart_broker(downtime=1.0)
    await sending
    # Butler's topics are on the restarted broker itself, and MQTT QoS 1 is "at least once": a
    # PUBACK lost in the restart brings a second copy of the message that was in flight.
    await settle_and_check(system, burst, baseline, within=30, repeatable=BUTLER_MQTT)


async def test_ingest_killed_mid_burst_still_delivers_every_datagram_it_had_accepted(
    system: Pipeline,
) -> None:
    baseline = await Baseline.taken(system)
    burst = await system.record(BURST)
    half = BURST // 2
    accepted = 'herald_datagrams_total{outcome="accepted"'
    before = await system.metric("ingest", accepted)
    # A slow QRS keeps most of the first half waiting in ingest's inbox when it is killed.
    await system.sim_faults(latency=0.3)
    await system.send(burst, stop=half)
    for _ in range(200):
        if await system.metric("ingest", accepted) - before >= half:
            break
        await asyncio.sleep(0.05)
    assert await system.metric("ingest", accepted) - before == half
    await system.kill("ingest")
    await system.sim_faults(clear=True)
    await system.start_service("ingest")
    # Datagrams sent while ingest is down are lost by UDP's nature: the rest goes after.
    await system.send(burst, start=half)
    await settle_and_check(system, burst, baseline, within=30)


async def test_failures_while_ingest_was_down_reach_every_destination_once_after_it_starts(
    system: Pipeline,
) -> None:
    baseline = Baseline.of(system.destinations)
    await system.kill("ingest")
    burst = await system.record(50, ended_just_now=True)  # no datagram: no one listens
    await system.start_service("ingest")  # its reconciliation sweep runs at start
    await settle_and_check(system, burst, baseline, within=60)
