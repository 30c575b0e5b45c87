"""Grouped digests in the delivery core, driven by an in-memory bus and a clock the test moves:
when a group opens and closes, what a longer ``wait`` collects, a digest that fails, test alerts,
redelivered alerts and a restart with a group open."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import ValidationError

from herald_shared import replay, samples
from herald_shared.delivery.destination import Destination, PermanentError, Target
from herald_shared.delivery.grouping import Digest, digest_context
from herald_shared.delivery.runner import GROUP_TICK
from herald_shared.events import Event
from herald_shared.settings import DeliverySettings, GroupSettings
from herald_testkit import full_disk
from herald_testkit.made_events import failure
from herald_testkit.memory_bus import MemoryRunner, memory_runner
from herald_testkit.mqtt import Seen
from herald_testkit.waiting import wait_until

FAST = DeliverySettings(initial_backoff=0.05, max_backoff=0.2, deadline=30, shutdown_grace=5)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Readable(Destination):
    """Records single alerts and digests; ``refuse_digests`` makes every digest a 4xx."""

    def __init__(self, group: GroupSettings | None, *, refuse_digests: bool = False) -> None:
        self.name = "readable"
        self.group = group
        self._refuse = refuse_digests
        self.alone: list[str] = []
        self.digests: list[Digest] = []

    def targets(self, event: Event) -> Sequence[Target]:
        return (Target("ops"),)

    async def deliver(self, event: Event, target: str) -> str | None:
        self.alone.append(event.event_id)
        return "ok"

    async def deliver_digest(self, digest: Digest, target: str) -> str | None:
        if self._refuse:
            raise PermanentError("HTTP 404: no such channel")
        self.digests.append(digest)
        return f"{len(digest.events)} alerts"


async def _run_out(runner: MemoryRunner, clock: Clock) -> None:
    """Move the clock on an interval at a time until every group has sent its digests and
    closed (each step waits for the runner's timer to have looked)."""
    async with asyncio.timeout(60):
        while runner.runner.open_groups:
            clock.now += 11
            await asyncio.sleep(4 * GROUP_TICK)


def _receipts(seen: list[Seen]) -> list[dict[str, object]]:
    return [m.json() for m in seen if "/v1/deliveries/" in m.topic]  # type: ignore[misc]


def _outcomes(seen: list[Seen]) -> list[object]:
    return [r["outcome"] for r in _receipts(seen) if r["kind"] != "digest"]


async def test_a_group_closes_after_a_quiet_interval_and_the_next_alert_goes_alone(
    tmp_path: Path,
) -> None:
    clock = Clock()
    destination = Readable(GroupSettings(interval=60, threshold=0))
    first, second, third, later = (failure(n) for n in range(1, 5))
    async with memory_runner(tmp_path, [destination], delivery=FAST, clock=clock) as runner:
        await runner.publish(first, second, third)
        await runner.bus.wait_for(lambda s: len(_receipts(s)) == 3)
        assert destination.alone == [first.event_id]
        assert sorted(map(str, _outcomes(runner.bus.seen))) == ["delivered", "grouped", "grouped"]
        clock.now += 61  # the interval ended: one digest of the two
        await runner.bus.wait_for(lambda s: any(r["kind"] == "digest" for r in _receipts(s)))
        [digest] = destination.digests
        assert digest.event_ids == [second.event_id, third.event_id]
        clock.now += 61  # the next window collected nothing: the group closes
        await wait_until(lambda: runner.runner.open_groups == 0)
        await runner.publish(later)
        await runner.bus.wait_for(lambda s: len(_receipts(s)) == 5)
    assert destination.alone == [first.event_id, later.event_id]
    assert len(destination.digests) == 1


async def test_with_a_wait_the_first_alert_is_collected_too(tmp_path: Path) -> None:
    clock = Clock()
    destination = Readable(GroupSettings(wait=30, interval=300, threshold=0))
    burst = [failure(n) for n in range(1, 6)]
    async with memory_runner(tmp_path, [destination], delivery=FAST, clock=clock) as runner:
        await runner.publish(*burst)
        await runner.bus.wait_for(lambda s: len(_receipts(s)) == 5)
        clock.now += 31
        await runner.bus.wait_for(lambda s: any(r["kind"] == "digest" for r in _receipts(s)))
    assert destination.alone == []
    [digest] = destination.digests
    assert digest.event_ids == [event.event_id for event in burst]
    [receipt] = [r for r in _receipts(runner.bus.seen) if r["kind"] == "digest"]
    assert receipt["outcome"] == "delivered"
    assert receipt["event_ids"] == digest.event_ids
    assert receipt["detail"] == "5 alerts"


async def test_a_digest_that_fails_dead_letters_every_alert_it_carried_and_a_replay_sends_each(
    tmp_path: Path,
) -> None:
    clock = Clock()
    destination = Readable(GroupSettings(interval=10, threshold=0), refuse_digests=True)
    burst = [failure(n) for n in range(1, 4)]
    async with memory_runner(tmp_path, [destination], delivery=FAST, clock=clock) as runner:
        await runner.publish(*burst)
        clock.now += 11
        await runner.bus.wait_for(lambda s: any(r["kind"] == "digest" for r in _receipts(s)))
        letters = await runner.bus.wait_for(
            lambda s: sum("/v1/dead-letter/" in m.topic for m in s) == 2
        )
        dead: list[dict[str, Any]] = [m.json() for m in letters if "/v1/dead-letter/" in m.topic]  # type: ignore[misc]
        assert [letter["event"]["event_id"] for letter in dead] == [e.event_id for e in burst[1:]]
        assert all("HTTP 404: no such channel" in str(letter["reason"]) for letter in dead)
        [receipt] = [r for r in _receipts(runner.bus.seen) if r["kind"] == "digest"]
        assert receipt["outcome"] == "dead_lettered"

        # The digest's moment has passed: a replay delivers each alert it carried alone.
        request = replay.ReplayRequest(id="r1", requested_by="test", requested_at=datetime.now(UTC))
        answer = runner.runner.replay("herald/v1/replay/runner-test", replay.encode(request))
        assert answer is not None
        assert sorted(d.event_id for d in answer.replayed) == sorted(e.event_id for e in burst[1:])
        await wait_until(lambda: len(destination.alone) == 3)
    # The first went alone at once; the two the digest carried now went alone too, once each.
    assert sorted(destination.alone) == sorted(e.event_id for e in burst)


async def test_test_alerts_and_redelivered_alerts_are_never_grouped_again(tmp_path: Path) -> None:
    clock = Clock()
    destination = Readable(GroupSettings(interval=10, threshold=0))
    first, second = failure(1), failure(2)
    test_alert = msgspec.structs.replace(samples.sample_failed(), test=True)
    async with memory_runner(tmp_path, [destination], delivery=FAST, clock=clock) as runner:
        await runner.publish(first, second, test_alert, second)  # second comes twice
        await runner.bus.wait_for(lambda s: len(_receipts(s)) == 3)
        clock.now += 11
        await runner.bus.wait_for(lambda s: any(r["kind"] == "digest" for r in _receipts(s)))
    assert destination.alone == [first.event_id, test_alert.event_id]
    assert [d.event_ids for d in destination.digests] == [[second.event_id]]


async def test_a_group_open_at_a_restart_sends_its_digest_once(tmp_path: Path) -> None:
    clock = Clock()
    group = GroupSettings(interval=10, threshold=0)
    burst = [failure(n) for n in range(1, 5)]
    before = Readable(group)
    async with memory_runner(tmp_path, [before], delivery=FAST, clock=clock) as runner:
        await runner.publish(*burst)
        await runner.bus.wait_for(lambda s: len(_receipts(s)) == 4)
    after = Readable(group)
    clock.now += 11
    async with memory_runner(tmp_path, [after], delivery=FAST, clock=clock) as runner:
        await runner.bus.wait_for(lambda s: any(r["kind"] == "digest" for r in _receipts(s)))
        clock.now += 11  # the next window: nothing more
        await wait_until(lambda: runner.runner.open_groups == 0)
    assert before.digests == []
    assert [d.event_ids for d in after.digests] == [[e.event_id for e in burst[1:]]]


async def test_a_write_that_fails_leaves_no_group_behind_and_loses_no_alert(
    tmp_path: Path,
) -> None:
    clock = Clock()
    destination = Readable(GroupSettings(interval=10, threshold=0))
    first, second, third = failure(1), failure(2), failure(3)
    async with memory_runner(tmp_path, [destination], delivery=FAST, clock=clock) as runner:
        assert runner.db is not None
        full_disk.fill(runner.db)
        # The commit that would open the group fails: the event is not stored (the broker
        # delivers it again), and the group it opened in memory is gone with it.
        with pytest.raises(sqlite3.OperationalError, match="full"):
            await runner.publish(first)
        assert runner.runner.open_groups == 0
        full_disk.make_room(runner.db)
        await runner.publish(first, second)  # the broker's redelivery, and the next alert
        full_disk.fill(runner.db)
        with pytest.raises(sqlite3.OperationalError, match="full"):
            await runner.publish(third)
        full_disk.make_room(runner.db)
        await runner.publish(third)
        await runner.bus.wait_for(lambda s: len(_receipts(s)) == 3)
        await _run_out(runner, clock)
    assert destination.alone == [first.event_id]
    carried = [event_id for digest in destination.digests for event_id in digest.event_ids]
    assert carried == [second.event_id, third.event_id]


async def test_a_digest_is_sent_when_grouping_was_turned_off_or_the_clock_stepped_back(
    tmp_path: Path,
) -> None:
    clock = Clock()
    burst = [failure(n) for n in range(1, 4)]
    async with memory_runner(
        tmp_path, [Readable(GroupSettings(interval=600, threshold=0))], delivery=FAST, clock=clock
    ) as runner:
        await runner.publish(*burst)
        await runner.bus.wait_for(lambda s: len(_receipts(s)) == 3)
    clock.now -= 3600  # the wall clock was an hour fast, and is put right while it is down
    after = Readable(None)  # and the new configuration says group: {enabled: false}
    async with memory_runner(tmp_path, [after], delivery=FAST, clock=clock) as runner:
        await wait_until(lambda: runner.runner.open_groups == 0)
        await runner.publish(failure(4))  # no grouping any more: alone
        await runner.bus.wait_for(lambda s: len(_receipts(s)) == 2)
    assert [d.event_ids for d in after.digests] == [[e.event_id for e in burst[1:]]]
    assert after.alone == [failure(4).event_id]


def test_the_digest_title_says_how_many_of_what_where_and_since_when() -> None:
    aborted = msgspec.structs.replace(
        samples.sample_aborted(), occurred_at=samples.sample_failed().occurred_at
    )
    digest = Digest(
        id="digest-x",
        destination="d",
        target="",
        group={"stream": "Finance"},
        events=[samples.sample_failed(), aborted],
        max_items=1,
    )
    context = digest_context(digest, None)
    assert context["title"].startswith("2 reload tasks failed or were aborted in Finance since ")
    assert context["more"] == 1
    assert context["outcomes"] == ["failed", "aborted"]
    assert context["problem"] is True
    assert [item["event_id"] for item in context["items"]] == [digest.event_ids[0]]
    alone = digest_context(dataclasses.replace(digest, group={"stream": ""}), None)
    assert " outside any stream " in alone["title"]


@pytest.mark.parametrize(
    ("group", "says"),
    [
        ({"by": ["streem"]}, "by.0"),
        ({"by": ["stream", "stream"]}, "each key once"),
        ({"interval": "0s"}, "interval"),
        ({"threshold": -1}, "threshold"),
        ({"max_items": 0}, "max_items"),
        ({"enable": False}, "enable"),
    ],
)
def test_a_wrong_group_setting_is_refused_naming_the_key(
    group: dict[str, object], says: str
) -> None:
    with pytest.raises(ValidationError, match=says):
        GroupSettings.model_validate(group)
