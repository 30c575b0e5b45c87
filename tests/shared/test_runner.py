"""The delivery runner inside a real subscriber service, against a real Mosquitto.

The destinations here are small scripted ones: the runner's behaviour is what is under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import msgspec
from prometheus_client import REGISTRY

from herald_shared import events, samples, topics
from herald_shared.delivery.destination import (
    Destination,
    PermanentError,
    Target,
    TransientError,
)
from herald_shared.events import Event
from herald_shared.settings import BrokerSettings, DeliverySettings
from herald_shared.subscriber import SubscriberService
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer, Seen, publisher
from herald_testkit.services import started

FAST = DeliverySettings(initial_backoff=0.05, max_backoff=0.2, deadline=30, shutdown_grace=5)


class Scripted(Destination):
    """Raises the scripted errors in order, then delivers; records every attempt's time."""

    def __init__(
        self,
        name: str,
        script: Sequence[Exception] = (),
        *,
        always: Exception | None = None,
        rate_limit: float | None = None,
        targets: Callable[[Event], Sequence[Target]] | None = None,
    ) -> None:
        self.name = name
        self._script = list(script)
        self._always = always
        self.rate_limit = rate_limit
        self._targets = targets
        self.attempts: list[tuple[str, str, float]] = []
        self.delivered: list[tuple[str, str]] = []

    def targets(self, event: Event) -> Sequence[Target]:
        return self._targets(event) if self._targets else super().targets(event)

    async def deliver(self, event: Event, target: str) -> str | None:
        self.attempts.append((event.event_id, target, time.monotonic()))
        if self._always is not None:
            raise self._always
        if self._script:
            raise self._script.pop(0)
        self.delivered.append((event.event_id, target))
        return "ok"


@contextlib.asynccontextmanager
async def running(
    settings: BrokerSettings,
    state_dir: Path,
    *destinations: Destination,
    delivery: DeliverySettings = FAST,
) -> AsyncIterator[SubscriberService]:
    service = SubscriberService(
        name="runner-test",
        destinations=destinations,
        broker=settings,
        delivery=delivery,
        state_dir=state_dir,
    )
    async with started(service):
        yield service


async def publish(mosquitto: Mosquitto, prefix: str, *items: Event) -> None:
    async with publisher(mosquitto.host, mosquitto.port) as client:
        for event in items:
            await client.publish(topics.topic_of(prefix, event), events.encode(event), qos=1)


def failure(n: int, task_id: str | None = None) -> events.TaskFailed:
    """A distinct failed event (its own execution), optionally of a given task."""
    base = samples.sample_failed()
    execution_id = f"00000000-0000-4000-8000-{n:012d}"
    task = base.task if task_id is None else msgspec.structs.replace(base.task, id=task_id)
    return msgspec.structs.replace(
        base,
        event_id=events.event_id_for("task_failed", execution_id),
        execution=msgspec.structs.replace(base.execution, id=execution_id),
        task=task,
    )


def receipts(seen: list[Seen], outcome: str | None = None) -> list[dict[str, object]]:
    found: list[dict[str, object]] = [m.json() for m in seen if "/v1/deliveries/" in m.topic]  # type: ignore[misc]
    return [r for r in found if outcome is None or r["outcome"] == outcome]


def dead_letters(seen: list[Seen]) -> list[dict[str, object]]:
    return [m.json() for m in seen if "/v1/dead-letter/" in m.topic]  # type: ignore[misc]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": "runner-test", **labels}) or 0.0


async def test_a_transient_failure_is_retried_until_it_succeeds(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    flaky = Scripted("flaky", [TransientError("503 busy"), TransientError("timeout")])
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as seen,
        running(broker_settings, tmp_path, flaky),
    ):
        await publish(mosquitto, topic_prefix, samples.sample_failed())
        await seen.wait_for(lambda s: bool(receipts(s)))
    assert flaky.delivered == [(samples.sample_failed().event_id, "")]
    [receipt] = receipts(seen.seen)
    assert receipt["outcome"] == "delivered"
    assert receipt["attempts"] == 3
    assert receipt["destination"] == "flaky"
    assert not dead_letters(seen.seen)


async def test_retry_after_is_honoured(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    throttled = Scripted("throttled", [TransientError("429 slow down", retry_after=1.5)])
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as seen,
        running(broker_settings, tmp_path, throttled),
    ):
        await publish(mosquitto, topic_prefix, samples.sample_failed())
        await seen.wait_for(lambda s: bool(receipts(s)))
    first, second = throttled.attempts
    # The backoff alone would retry after at most 0.05 s.
    assert second[2] - first[2] >= 1.5


async def test_a_permanent_error_is_dead_lettered_with_its_reason(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    refused = Scripted("refused", always=PermanentError("HTTP 404: no such channel"))
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as seen,
        running(broker_settings, tmp_path, refused),
    ):
        await publish(mosquitto, topic_prefix, samples.sample_failed())
        await seen.wait_for(lambda s: bool(dead_letters(s)) and bool(receipts(s)))
    assert len(refused.attempts) == 1  # never retried
    [letter] = dead_letters(seen.seen)
    assert letter["reason"] == "HTTP 404: no such channel"
    assert letter["destination"] == "refused"
    assert letter["event"] == events.to_builtins(samples.sample_failed())
    assert receipts(seen.seen)[0]["outcome"] == "dead_lettered"


async def test_retries_stop_at_the_deadline_with_a_dead_letter(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    down = Scripted("down", always=TransientError("connection refused"))
    delivery = DeliverySettings(initial_backoff=0.05, max_backoff=0.1, deadline=1.0)
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as seen,
        running(broker_settings, tmp_path, down, delivery=delivery),
    ):
        await publish(mosquitto, topic_prefix, samples.sample_failed())
        await seen.wait_for(lambda s: bool(dead_letters(s)))
    [letter] = dead_letters(seen.seen)
    assert str(letter["reason"]).startswith("gave up after")
    assert str(letter["reason"]).endswith("connection refused")
    assert len(down.attempts) > 2


async def test_the_rate_limit_suppresses_and_counts(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    limited = Scripted("limited", rate_limit=600, targets=lambda e: [Target(rate_key=e.task.id)])
    before = metric("herald_deliveries_total", destination="limited", outcome="suppressed")
    same_task = [failure(n) for n in range(3)]
    other_task = failure(9, task_id="11111111-2222-4333-8444-555555555555")
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as seen,
        running(broker_settings, tmp_path, limited),
    ):
        await publish(mosquitto, topic_prefix, *same_task, other_task)
        await seen.wait_for(lambda s: len(receipts(s)) == 4)
    assert sorted(limited.delivered) == sorted(
        [(same_task[0].event_id, ""), (other_task.event_id, "")]
    )
    suppressed = receipts(seen.seen, "suppressed")
    assert sorted(r["event_id"] for r in suppressed) == sorted(e.event_id for e in same_task[1:])  # type: ignore[type-var]
    assert "rate limit" in str(suppressed[0]["detail"])
    after = metric("herald_deliveries_total", destination="limited", outcome="suppressed")
    assert after - before == 2


async def test_an_event_already_in_the_ledger_is_not_delivered_again(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    once = Scripted("once")
    event = samples.sample_failed()
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as seen,
        running(broker_settings, tmp_path, once),
    ):
        await publish(mosquitto, topic_prefix, event)
        await seen.wait_for(lambda s: len(receipts(s)) == 1)
        await publish(mosquitto, topic_prefix, event, failure(1))  # a redelivery, then news
        await seen.wait_for(lambda s: len(receipts(s)) == 2)
    # And after a restart of the service, the ledger still remembers.
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as seen_later,
        running(broker_settings, tmp_path, once),
    ):
        await publish(mosquitto, topic_prefix, event, failure(2))
        await seen_later.wait_for(lambda s: len(receipts(s)) == 1)
    assert once.delivered == [
        (event.event_id, ""),
        (failure(1).event_id, ""),
        (failure(2).event_id, ""),
    ]
    assert receipts(seen_later.seen)[0]["event_id"] == failure(2).event_id


async def test_a_destination_that_is_down_stalls_neither_the_others_nor_the_broker(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    down = Scripted("down", always=TransientError("connection refused"))
    healthy = Scripted("healthy")
    burst = [failure(n) for n in range(3 * broker_settings.receive_maximum)]
    async with running(broker_settings, tmp_path, down, healthy):
        await publish(mosquitto, topic_prefix, *burst)
        async with asyncio.timeout(60):
            while len(healthy.delivered) < len(burst):
                await asyncio.sleep(0.05)
    assert sorted(healthy.delivered) == sorted((e.event_id, "") for e in burst)
    assert not down.delivered


async def test_a_bug_in_a_destination_is_retried_not_lost(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    buggy = Scripted("buggy", [KeyError("appOwnerEmail")])
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as seen,
        running(broker_settings, tmp_path, buggy),
    ):
        await publish(mosquitto, topic_prefix, samples.sample_failed())
        await seen.wait_for(lambda s: bool(receipts(s)))
    assert receipts(seen.seen)[0]["outcome"] == "delivered"
    assert receipts(seen.seen)[0]["attempts"] == 2


async def test_each_target_is_delivered_and_receipted_separately(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    mail = Scripted(
        "mail", targets=lambda e: [Target(id="a@example.com"), Target(id="b@example.com")]
    )
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as seen,
        running(broker_settings, tmp_path, mail),
    ):
        await publish(mosquitto, topic_prefix, samples.sample_failed())
        await seen.wait_for(lambda s: len(receipts(s)) == 2)
    assert sorted(target for _, target in mail.delivered) == ["a@example.com", "b@example.com"]


async def test_a_message_that_is_not_an_event_is_dead_lettered_and_the_service_goes_on(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    archive = Scripted("archive")
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as seen,
        running(broker_settings, tmp_path, archive),
    ):
        async with publisher(mosquitto.host, mosquitto.port) as client:
            await client.publish(
                f"{topic_prefix}/v1/events/task_failed/reload/x", b"{not json", qos=1
            )
        await publish(mosquitto, topic_prefix, samples.sample_failed())
        await seen.wait_for(lambda s: bool(dead_letters(s)) and bool(receipts(s)))
    [letter] = dead_letters(seen.seen)
    assert letter["payload"] == "{not json"
    assert str(letter["reason"]).startswith("not a Herald event")
    assert archive.delivered == [(samples.sample_failed().event_id, "")]


async def test_pending_deliveries_survive_a_restart_of_the_service(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    down = Scripted("relay", always=TransientError("connection refused"))
    async with running(broker_settings, tmp_path, down):
        await publish(mosquitto, topic_prefix, samples.sample_failed())
        async with asyncio.timeout(10):
            while not down.attempts:
                await asyncio.sleep(0.02)
    # Acknowledged to the broker, so only the ledger still has it.
    back = Scripted("relay")
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as seen,
        running(broker_settings, tmp_path, back),
    ):
        await seen.wait_for(lambda s: bool(receipts(s)))
    assert back.delivered == [(samples.sample_failed().event_id, "")]
    assert receipts(seen.seen)[0]["attempts"] >= 2  # type: ignore[operator]
