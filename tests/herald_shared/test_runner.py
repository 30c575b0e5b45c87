"""The delivery runner: routing, retries and payloads driven by an in-memory bus; redelivery,
restarts and faults inside a real subscriber service against a real Mosquitto.

The destinations here are small scripted ones: the runner's behaviour is what is under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import msgspec
import pytest
from prometheus_client import REGISTRY

from herald_shared import events, samples, topics
from herald_shared.db import database_for
from herald_shared.delivery.destination import (
    Destination,
    PermanentError,
    Target,
    TransientError,
)
from herald_shared.delivery.ledger import Ledger
from herald_shared.events import Event
from herald_shared.settings import BrokerSettings, DeliverySettings
from herald_shared.subscriber import SubscriberService
from herald_testkit import full_disk
from herald_testkit.memory_bus import memory_runner
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer, Seen, publisher
from herald_testkit.services import started
from herald_testkit.waiting import wait_until

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
        on_attempt: Callable[[int], None] | None = None,
    ) -> None:
        self.name = name
        self._script = list(script)
        self._always = always
        self.rate_limit = rate_limit
        self._targets = targets
        self._on_attempt = on_attempt
        self.attempts: list[tuple[str, str, float]] = []
        self.delivered: list[tuple[str, str]] = []

    def targets(self, event: Event) -> Sequence[Target]:
        return self._targets(event) if self._targets else super().targets(event)

    async def deliver(self, event: Event, target: str) -> str | None:
        self.attempts.append((event.event_id, target, time.monotonic()))
        if self._on_attempt is not None:
            self._on_attempt(len(self.attempts))
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


async def test_a_transient_failure_is_retried_until_it_succeeds(tmp_path: Path) -> None:
    flaky = Scripted("flaky", [TransientError("503 busy"), TransientError("timeout")])
    async with memory_runner(tmp_path, [flaky], delivery=FAST) as runner:
        await runner.publish(samples.sample_failed())
        seen = runner.bus
        await seen.wait_for(lambda s: bool(receipts(s)))
    assert flaky.delivered == [(samples.sample_failed().event_id, "")]
    [receipt] = receipts(seen.seen)
    assert receipt["outcome"] == "delivered"
    assert receipt["attempts"] == 3
    assert receipt["destination"] == "flaky"
    assert not dead_letters(seen.seen)


async def test_retry_after_is_honoured(tmp_path: Path) -> None:
    throttled = Scripted("throttled", [TransientError("429 slow down", retry_after=1.5)])
    async with memory_runner(tmp_path, [throttled], delivery=FAST) as runner:
        await runner.publish(samples.sample_failed())
        await runner.bus.wait_for(lambda s: bool(receipts(s)))
    first, second = throttled.attempts
    # The backoff alone would retry after at most 0.05 s.
    assert second[2] - first[2] >= 1.5


async def test_a_permanent_error_is_dead_lettered_with_its_reason(tmp_path: Path) -> None:
    refused = Scripted("refused", always=PermanentError("HTTP 404: no such channel"))
    async with memory_runner(tmp_path, [refused], delivery=FAST) as runner:
        await runner.publish(samples.sample_failed())
        seen = runner.bus
        await seen.wait_for(lambda s: bool(dead_letters(s)) and bool(receipts(s)))
    assert len(refused.attempts) == 1  # never retried
    [letter] = dead_letters(seen.seen)
    assert letter["reason"] == "HTTP 404: no such channel"
    assert letter["destination"] == "refused"
    assert letter["event"] == events.to_builtins(samples.sample_failed())
    assert receipts(seen.seen)[0]["outcome"] == "dead_lettered"


async def test_retries_stop_at_the_deadline_with_a_dead_letter(tmp_path: Path) -> None:
    down = Scripted("down", always=TransientError("connection refused"))
    delivery = DeliverySettings(initial_backoff=0.05, max_backoff=0.1, deadline=1.0)
    async with memory_runner(tmp_path, [down], delivery=delivery) as runner:
        await runner.publish(samples.sample_failed())
        seen = runner.bus
        await seen.wait_for(lambda s: bool(dead_letters(s)))
    [letter] = dead_letters(seen.seen)
    assert str(letter["reason"]).startswith("gave up after")
    assert str(letter["reason"]).endswith("connection refused")
    assert len(down.attempts) > 2


async def test_the_rate_limit_suppresses_and_counts(tmp_path: Path) -> None:
    limited = Scripted("limited", rate_limit=600, targets=lambda e: [Target(rate_key=e.task.id)])
    before = metric("herald_deliveries_total", destination="limited", outcome="suppressed")
    same_task = [failure(n) for n in range(3)]
    other_task = failure(9, task_id="11111111-2222-4333-8444-555555555555")
    async with memory_runner(tmp_path, [limited], delivery=FAST) as runner:
        await runner.publish(*same_task, other_task)
        seen = runner.bus
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


async def test_each_target_is_delivered_and_receipted_separately(tmp_path: Path) -> None:
    mail = Scripted(
        "mail", targets=lambda e: [Target(id="a@example.com"), Target(id="b@example.com")]
    )
    async with memory_runner(tmp_path, [mail], delivery=FAST) as runner:
        await runner.publish(samples.sample_failed())
        await runner.bus.wait_for(lambda s: len(receipts(s)) == 2)
    assert sorted(target for _, target in mail.delivered) == ["a@example.com", "b@example.com"]


async def test_a_message_that_is_not_an_event_is_dead_lettered_and_the_service_goes_on(
    tmp_path: Path,
) -> None:
    archive = Scripted("archive")
    async with memory_runner(tmp_path, [archive], delivery=FAST) as runner:
        await runner.send("herald/v1/events/task_failed/reload/x", b"{not json")
        await runner.publish(samples.sample_failed())
        seen = runner.bus
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


# --- the wall clock stepping (the runner's clock is the test's) ------------------------------


class SteppedClock:
    """A wall clock the test steps; it runs on with real time in between."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def test_a_clock_stepped_back_does_not_extend_a_rate_limit(tmp_path: Path) -> None:
    clock = SteppedClock()
    limited = Scripted("limited", rate_limit=600, targets=lambda e: [Target(rate_key=e.task.id)])
    first, held, after_the_window = failure(1), failure(2), failure(3)
    async with memory_runner(tmp_path, [limited], delivery=FAST, clock=clock) as runner:
        await runner.publish(first)
        clock.offset = -3600  # an hour back, a few milliseconds after the first alert went out
        await runner.publish(held)
        clock.offset += 601  # one window later by the clock as it reads now
        await runner.publish(after_the_window)
        await runner.bus.wait_for(lambda s: len(receipts(s)) == 3)
    assert sorted(limited.delivered) == sorted(
        [(first.event_id, ""), (after_the_window.event_id, "")]
    )
    [suppressed] = receipts(runner.bus.seen, "suppressed")
    assert suppressed["event_id"] == held.event_id


async def test_retries_keep_their_pace_when_the_clock_steps_either_way(tmp_path: Path) -> None:
    clock = SteppedClock()

    def step(attempt: int) -> None:
        clock.offset += {1: 3600.0, 2: -7200.0}.get(attempt, 0.0)  # an hour on, two back

    flaky = Scripted(
        "flaky", [TransientError("503 busy"), TransientError("timeout")], on_attempt=step
    )
    async with memory_runner(tmp_path, [flaky], delivery=FAST, clock=clock) as runner:
        await runner.publish(samples.sample_failed())
        await runner.bus.wait_for(lambda s: bool(receipts(s)))
    [receipt] = receipts(runner.bus.seen)
    assert receipt["outcome"] == "delivered"  # not given up: an hour did not pass
    assert receipt["attempts"] == 3
    first, _, third = flaky.attempts
    assert third[2] - first[2] < 10  # backoff of at most 0.2 s each, not an hour


async def test_a_pending_delivery_is_resumed_on_time_after_the_clock_stepped_back(
    tmp_path: Path,
) -> None:
    down = Scripted("relay", always=TransientError("connection refused"))
    async with memory_runner(tmp_path, [down], delivery=FAST) as runner:
        await runner.publish(samples.sample_failed())
        async with asyncio.timeout(10):
            while not down.attempts:
                await asyncio.sleep(0.02)
    clock = SteppedClock()
    clock.offset = -3600
    back = Scripted("relay")
    async with memory_runner(tmp_path, [back], delivery=FAST, clock=clock) as runner:
        await runner.bus.wait_for(lambda s: bool(receipts(s)))
    assert back.delivered == [(samples.sample_failed().event_id, "")]


# --- faults: the ledger's disk, a lost event ---------------------------------------------------


class Unreachable(Destination):
    """Down (with the long, varying error text of a real proxy page) until ``up`` is set."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.up = False
        self.attempted: set[str] = set()
        self.delivered: set[str] = set()
        self._attempts: dict[str, int] = {}

    async def deliver(self, event: Event, target: str) -> str | None:
        self.attempted.add(event.event_id)
        if not self.up:
            n = self._attempts[event.event_id] = self._attempts.get(event.event_id, 0) + 1
            raise TransientError(f"HTTP 502 from the proxy: {'upstream busy; ' * min(5 * n, 400)}")
        self.delivered.add(event.event_id)
        return "ok"


def fill_the_disk(service: SubscriberService) -> None:
    full_disk.fill(service.db)


def make_room(service: SubscriberService) -> None:
    full_disk.make_room(service.db)


def ledger_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.ERROR and "cannot write to the ledger" in r.getMessage()
    ]


async def test_a_full_disk_ends_no_worker_and_everything_is_delivered_once_it_has_room(
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    relay = Unreachable("relay")
    pending = [failure(n) for n in range(20)]
    new = [failure(n) for n in range(100, 120)]
    async with running(broker_settings, tmp_path, relay) as service:
        await publish(mosquitto, topic_prefix, *pending)
        await wait_until(lambda: relay.attempted >= {e.event_id for e in pending})
        fill_the_disk(service)
        await publish(mosquitto, topic_prefix, *new)
        await wait_until(lambda: "database or disk is full" in service.readiness()[1])
        assert not service.readiness()[0]
        assert ledger_errors(caplog)
        relay.up = True
        make_room(service)
        everything = {e.event_id for e in pending + new}
        await wait_until(lambda: relay.delivered == everything)
        await wait_until(lambda: service.readiness()[0])


async def test_events_are_counted_as_stored_once_though_writing_them_failed(
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    relay = Unreachable("relay")
    relay.up = True
    burst = [failure(n) for n in range(30)]
    before = metric("herald_events_received_total", outcome="stored")
    async with running(broker_settings, tmp_path, relay) as service:
        fill_the_disk(service)
        await publish(mosquitto, topic_prefix, *burst)
        await wait_until(lambda: len(ledger_errors(caplog)) >= 3)
        make_room(service)
        await wait_until(lambda: relay.delivered == {e.event_id for e in burst})
    assert metric("herald_events_received_total", outcome="stored") - before == len(burst)


async def test_a_pending_delivery_whose_event_was_lost_is_dead_lettered_and_work_goes_on(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    one_worker = DeliverySettings(initial_backoff=0.05, max_backoff=0.2, concurrency=1)
    down = Scripted("relay", always=TransientError("connection refused"))
    lost = samples.sample_failed()
    async with running(broker_settings, tmp_path, down, delivery=one_worker):
        await publish(mosquitto, topic_prefix, lost)
        await wait_until(lambda: bool(down.attempts))
    with sqlite3.connect(tmp_path / "runner-test.sqlite3") as sql:
        sql.execute("DELETE FROM events WHERE event_id = ?", (lost.event_id,))
    back = Scripted("relay")
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as seen,
        running(broker_settings, tmp_path, back, delivery=one_worker),
    ):
        await seen.wait_for(lambda s: bool(dead_letters(s)))
        await publish(mosquitto, topic_prefix, failure(1))
        await seen.wait_for(lambda s: bool(receipts(s, "delivered")))
    [letter] = dead_letters(seen.seen)
    assert letter["event"] is None
    assert "missing from the ledger" in str(letter["reason"])
    [receipt] = receipts(seen.seen, "dead_lettered")
    assert receipt["event_id"] == lost.event_id
    assert back.delivered == [(failure(1).event_id, "")]


async def test_a_failing_purge_is_logged_and_tried_again_and_delivering_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A real SQLite failure, set up in the file before the runner opens it: a finished delivery
    # cannot be deleted, so the purge fails once there is something past the retention.
    db = database_for(tmp_path, "runner-test")
    Ledger(db)
    db.connection.execute(
        "CREATE TRIGGER injected BEFORE DELETE ON deliveries"
        " BEGIN SELECT RAISE(ABORT, 'injected: the purge fails'); END"
    )
    db.close()
    clock, relay = SteppedClock(), Scripted("relay")
    old, new = failure(1), failure(2)
    async with memory_runner(
        tmp_path, [relay], delivery=FAST, clock=clock, purge_interval=0.05
    ) as runner:
        await runner.publish(old)
        await runner.bus.wait_for(lambda s: len(receipts(s, "delivered")) == 1)
        clock.offset = FAST.ledger_retention + 60  # the delivery is now past the retention
        await wait_until(lambda: len(purge_failures(caplog)) >= 2)  # and again, at the interval
        await runner.publish(new)
        await runner.bus.wait_for(lambda s: len(receipts(s, "delivered")) == 2)
        assert runner.runner.health() == (True, "running, the ledger is writable")
        with contextlib.closing(sqlite3.connect(tmp_path / "runner-test.sqlite3")) as sql:
            sql.execute("DROP TRIGGER injected")
        await wait_until(lambda: not runner.runner.ledger.knows(old.event_id))
    assert relay.delivered == [(old.event_id, ""), (new.event_id, "")]
    assert "injected: the purge fails" in str(purge_failures(caplog)[0].exc_info)


def purge_failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("purging the ledger failed")]
