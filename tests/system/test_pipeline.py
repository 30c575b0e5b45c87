"""The whole pipeline, each part in its own process: every alert arrives exactly once at every
destination, whatever fails in the middle of a burst.

Per event the system owes thirteen deliveries: an e-mail to each of two recipients, a Slack and a
Teams message, a New Relic event and log, a Signl4 alert, a webhook call, Butler's two MQTT
messages, an InfluxDB point, the Prometheus count and an archived script log. Rate limits are
off, so every one is expected. Each destination is checked by event or execution id (in the
payload, or the X-Herald-Event-Id header where the payload has none): every one of the burst's
ids exactly once. Butler's plain topic (the task name) and Prometheus (a count per task) carry
no id and are counted.

The bursts with a part killed or restarted are in tests/system/test_pipeline_kills.py: a system
of their own, in another worker.
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
    Baseline,
    Burst,
    Pipeline,
    counted_once_by_prometheus,
    delivered_exactly_once,
    wait_for_receipts,
)
from herald_testkit.settle import settle_and_check
from herald_testkit.waiting import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

BURST = 200


async def test_a_burst_of_failed_reloads_reaches_every_destination_exactly_once(
    system: Pipeline,
) -> None:
    baseline = await Baseline.taken(system)
    burst = await system.record(BURST)
    await system.send(burst)
    await settle_and_check(system, burst, baseline)


@pytest.mark.slow
# Five times the burst above, five times its limits: the suite's other workers share the cores.
@pytest.mark.timeout(900)
async def test_a_burst_of_a_thousand_failed_reloads_reaches_every_destination_exactly_once(
    system: Pipeline,
) -> None:
    baseline = await Baseline.taken(system)
    burst = await system.record(1000)
    await system.send(burst)
    await settle_and_check(system, burst, baseline, within=600)


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
