"""The whole pipeline, each part in its own process: every alert arrives exactly once at every
destination, whatever fails in the middle of a burst.

Per event the system owes thirteen deliveries: an e-mail to each of two recipients, a Slack and a
Teams message, a New Relic event and log, a Signl4 alert, a webhook call, Butler's two MQTT
messages, an InfluxDB point, the Prometheus count and an archived script log. Rate limits are
off, so every one is expected. Each destination is checked by event or execution id (in the
payload, or the X-Herald-Event-Id header where the payload has none): every one of the burst's
ids exactly once. Butler's plain topic (the task name) and Prometheus (a count per task) carry
no id and are counted.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import msgspec
import pytest

from herald_testkit.http import Answer
from herald_testkit.mqtt import Observer
from herald_testkit.pipeline import (
    OWED,
    PREFIX,
    SUBSCRIBERS,
    Baseline,
    Burst,
    Pipeline,
    counted_once_by_prometheus,
    delivered_exactly_once,
    wait_for_receipts,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

BURST = 200


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


async def wait_until(condition: object, within: float = 60.0) -> None:
    assert callable(condition)
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_burst_of_failed_reloads_reaches_every_destination_exactly_once(
    system: Pipeline,
) -> None:
    baseline = await Baseline.taken(system)
    burst = await system.record(BURST)
    await system.send(burst)
    await settle_and_check(system, burst, baseline)


@pytest.mark.slow
async def test_a_burst_of_a_thousand_failed_reloads_reaches_every_destination_exactly_once(
    system: Pipeline,
) -> None:
    baseline = await Baseline.taken(system)
    burst = await system.record(1000)
    await system.send(burst)
    await settle_and_check(system, burst, baseline)


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
IN_FLIGHT = 8  # delivery.concurrency: at most this many deliveries per destination at the kill
BUTLER_MQTT = frozenset({"butler mqtt", "butler mqtt full"})


def repeated_only_in_flight(problem: dict[str, int], events: int) -> bool:
    """Nothing missing, and no more than IN_FLIGHT alerts arrived twice (never three times)."""
    if "accepted" in problem:  # counted destinations: {"expected": n, "accepted": m}
        return events < problem["accepted"] <= events + IN_FLIGHT
    return (
        problem["missing"] == 0
        and problem["most copies"] == 2
        and (problem["more than once"] <= IN_FLIGHT)
    )


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


#: 500s each webhook delivery gets before the receiver recovers: with the system's backoff (200 ms
#: doubling up to 2 s) the last waits are at the limit.
REFUSALS = 6


async def test_a_destination_answering_500_for_a_while_gets_every_alert_once_it_recovers(
    system: Pipeline,
) -> None:
    webhook = system.destinations.webhook
    baseline = await Baseline.taken(system)
    burst = await system.record(100)
    executions = set(burst.execution_ids)

    def refused_enough() -> bool:
        refusals = Counter(
            msgspec.json.decode(request.body).get("executionId")
            for request in webhook.requests
            if request.status == 500
        )
        return all(refusals[e] >= REFUSALS for e in executions)

    webhook.default = Answer(status=500, body="internal error")
    try:
        await system.send(burst, rate=50)
        # Errors until every alert's backoff has grown to its limit, not for a fixed time.
        await wait_until(refused_enough, within=120)
    finally:
        webhook.default = Answer()
    await settle_and_check(system, burst, baseline)
    webhook_receipts = [
        r
        for r in system.receipts_for(set(burst.event_ids()))
        if r.destination == "webhook:ops" and r.outcome == "delivered"
    ]
    # Every one of the webhook's deliveries was retried through its refusals, not lost.
    assert len(webhook_receipts) == len(executions)
    assert min(r.attempts for r in webhook_receipts) > REFUSALS


async def test_a_slow_mail_server_holds_up_only_the_mail_and_every_alert_arrives_once(
    system: Pipeline,
) -> None:
    smtp = system.destinations.smtp
    baseline = await Baseline.taken(system)
    burst = await system.record(40)
    mails_before = len(smtp.received)
    others = {(e, *o) for e in burst.event_ids() for o in OWED if o[0] != "emailer"}

    def others_done() -> bool:
        done = system.receipts_for(set(burst.event_ids()))
        return others <= {(r.event_id, r.service, r.destination, r.target) for r in done}

    smtp.delay = 0.5  # a server that scans each message: 80 mails, 10 s over four connections
    try:
        await system.send(burst, rate=20)
        await wait_until(others_done)
        # Every other destination has all its alerts while the mail is still going out.
        assert len(smtp.received) - mails_before < 2 * len(burst.execution_ids)
        await settle_and_check(system, burst, baseline)
    finally:
        smtp.delay = 0.0
    mail = [r for r in system.receipts_for(set(burst.event_ids())) if r.service == "emailer"]
    assert {r.attempts for r in mail} == {1}  # slow is not failed: nothing was sent twice


async def test_with_the_qrs_slow_then_down_alerts_still_go_out_marked_partial(
    system: Pipeline,
) -> None:
    broker = system.broker
    async with Observer(broker.host, broker.port, f"{PREFIX}/v1/events/#") as events:
        baseline = await Baseline.taken(system)
        slow = await system.record(10)
        down = await system.record(10)
        try:
            await system.sim_faults(latency=2.0)
            await system.send(slow)
            await asyncio.sleep(3)
            await system.sim_faults(clear=True, fail_rate=1.0, fail_status=503)
            await system.send(down)
            await wait_for_receipts(system, slow, within=60)
            await wait_for_receipts(system, down, within=60)
        finally:
            await system.sim_faults(clear=True)
        await asyncio.sleep(2)
        both = Burst(
            task=slow.task,
            execution_ids=slow.execution_ids + down.execution_ids,
            stamps=slow.stamps + down.stamps,
        )
        # Without the QRS there is no script log: the archive skips them, everyone else alerts.
        assert delivered_exactly_once(system, both, baseline, script_logs=False) == {}
        assert await counted_once_by_prometheus(system, both, baseline) == {}
        status = {
            document["event_id"]: document["enrichment"]["status"]
            for document in (msgspec.json.decode(seen.payload) for seen in events.seen)
        }
        assert {status[e] for e in both.event_ids()} == {"partial"}
