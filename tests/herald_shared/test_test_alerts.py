"""How the runner treats a test alert (``herald send-test``, ``test: true``), on the in-memory bus:
never rate limited and taking no slot from a real alert, answered by every destination, its
retries announced with their reason."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec

from herald_shared import events, samples
from herald_shared.delivery.destination import Destination, Target, TransientError
from herald_shared.events import Event
from herald_shared.matcher import When
from herald_shared.settings import DeliverySettings
from herald_shared.tail import describe
from herald_testkit.memory_bus import memory_runner
from herald_testkit.mqtt import Seen

FAST = DeliverySettings(initial_backoff=0.05, max_backoff=0.2, deadline=30, shutdown_grace=5)


class PerTask(Destination):
    """One message per task per 10 minutes, like the e-mail and chat defaults."""

    rate_limit = 600.0

    def __init__(self, name: str, failures: Sequence[Exception] = ()) -> None:
        self.name = name
        self._failures = list(failures)
        self.delivered: list[str] = []

    def targets(self, event: Event) -> Sequence[Target]:
        return [Target(rate_key=event.task.id)]

    async def deliver(self, event: Event, target: str) -> str | None:
        if self._failures:
            raise self._failures.pop(0)
        self.delivered.append(event.event_id)
        return None


class Counter(PerTask):
    skips_tests = "test alert: not counted"


def alert(n: int, *, test: bool) -> events.TaskFailed:
    base = samples.sample_failed()
    execution_id = f"00000000-0000-4000-8000-{n:012d}"
    return msgspec.structs.replace(
        base,
        event_id=events.event_id_for("task_failed", execution_id),
        execution=msgspec.structs.replace(base.execution, id=execution_id),
        test=test,
    )


def reports(seen: list[Seen], family: str) -> list[dict[str, object]]:
    return [msgspec.json.decode(s.payload) for s in seen if f"/v1/{family}/" in s.topic]


async def test_a_test_alert_is_never_suppressed_and_takes_no_slot_from_a_real_alert(
    tmp_path: Path,
) -> None:
    chat = PerTask("chat")
    tests = [alert(1, test=True), alert(2, test=True)]
    real = alert(3, test=False)
    async with memory_runner(tmp_path, [chat], delivery=FAST) as runner:
        await runner.publish(*tests, real)
        await runner.bus.wait_for(lambda s: len(reports(s, "deliveries")) == 3)
    assert sorted(chat.delivered) == sorted([tests[0].event_id, tests[1].event_id, real.event_id])


async def test_every_destination_answers_a_test_alert_and_its_retries_are_announced(
    tmp_path: Path,
) -> None:
    flaky = PerTask("flaky", [TransientError("503 busy")])
    counter = Counter("counter")
    picky = PerTask("picky")
    picky.when = When.model_validate({"kinds": ["task_succeeded"]})
    test = alert(1, test=True)
    async with memory_runner(tmp_path, [flaky, counter, picky], delivery=FAST) as runner:
        await runner.publish(test)
        await runner.bus.wait_for(lambda s: len(reports(s, "deliveries")) == 3)
        seen = runner.bus.seen
    outcomes = {r["destination"]: (r["outcome"], r["detail"]) for r in reports(seen, "deliveries")}
    assert outcomes == {
        "flaky": ("delivered", None),
        "counter": ("skipped", "test alert: not counted"),
        "picky": ("skipped", "its when: does not choose this test alert"),
    }
    pending = [(p["destination"], p["attempts"], p["reason"]) for p in reports(seen, "pending")]
    assert pending == [("flaky", 0, "taken on"), ("flaky", 1, "503 busy")]
    # A real alert announces nothing pending: the topic is for test alerts only.
    async with memory_runner(tmp_path / "real", [PerTask("chat")], delivery=FAST) as runner:
        await runner.publish(alert(2, test=False))
        await runner.bus.wait_for(lambda s: len(reports(s, "deliveries")) == 1)
        assert reports(runner.bus.seen, "pending") == []


def test_herald_tail_shows_what_each_instance_serves_and_a_test_alerts_retries() -> None:
    assert (
        describe("herald/v1/destinations/emailer/node1", b'["email-failed", "email-aborted"]')
        == "SERVES     emailer/node1: email-failed, email-aborted"
    )
    assert describe("herald/v1/destinations/emailer/node1", b"") == (
        "SERVES     emailer/node1: (stopped)"
    )
    pending = (
        b'{"event_id": "x", "service": "emailer", "destination": "email-failed",'
        b' "target": "ops@example.com", "attempts": 2, "reason": "connection refused",'
        b' "at": "2026-12-02T16:00:00Z"}'
    )
    assert describe("herald/v1/pending/emailer", pending) == (
        "PENDING    emailer/email-failed to ops@example.com (test alert) after 2 attempts:"
        " connection refused"
    )
