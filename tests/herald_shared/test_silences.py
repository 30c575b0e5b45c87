"""Silences in the delivery core, driven by the in-memory bus with the runner's own clock: what is
silenced ends with a ``silenced`` receipt naming the silence and reaches no destination; what is
not is delivered; expired and cleared silences silence nothing; recoveries follow the failure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from prometheus_client import REGISTRY

from herald_shared import samples, silences, topics
from herald_shared.delivery.destination import Destination
from herald_shared.events import Event
from herald_shared.settings import DeliverySettings
from herald_shared.silences import Matcher, Silence, SilenceBook
from herald_testkit.made_events import failure, recovery_of
from herald_testkit.memory_bus import memory_runner
from herald_testkit.mqtt import Seen

FAST = DeliverySettings(initial_backoff=0.05, max_backoff=0.2, deadline=30, shutdown_grace=5)
PREFIX = "herald"
SERVICE = "runner-test"
NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


class Recording(Destination):
    def __init__(self, name: str) -> None:
        self.name = name
        self.delivered: list[str] = []

    async def deliver(self, event: Event, target: str) -> str | None:
        self.delivered.append(event.event_id)
        return "ok"


class Clock:
    def __init__(self, at: datetime = NOW) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now


def silence(
    *matchers: str,
    hours: float = 2,
    starts: datetime = NOW - timedelta(minutes=1),
    services: list[str] | None = None,
    destinations: list[str] | None = None,
) -> Silence:
    return Silence(
        id=silences.new_id(),
        matchers=[Matcher(*m.split("=", 1)) for m in matchers],
        starts=starts,
        ends=starts + timedelta(hours=hours),
        author="alice",
        comment="Finance database maintenance",
        services=services,
        destinations=destinations,
    )


def book(*known: Silence) -> SilenceBook:
    found = SilenceBook(PREFIX, SERVICE)
    for item in known:
        found.add(item)
    return found


def receipts(seen: list[Seen], outcome: str | None = None) -> list[dict[str, object]]:
    found: list[dict[str, object]] = [m.json() for m in seen if "/v1/deliveries/" in m.topic]  # type: ignore[misc]
    return [r for r in found if outcome is None or r["outcome"] == outcome]


def metric(outcome: str, destination: str) -> float:
    labels = {"service": SERVICE, "destination": destination, "outcome": outcome}
    return REGISTRY.get_sample_value("herald_deliveries_total", labels) or 0.0


async def test_a_silenced_stream_gets_silenced_receipts_naming_the_silence_and_no_send(
    tmp_path: Path,
) -> None:
    finance = silence("streams=finance")  # patterns are case-insensitive, as in when:
    slack, mail = Recording("slack"), Recording("mail")
    quiet, loud = failure(1, "Finance"), failure(2, "Sales")
    before = metric("silenced", "slack")
    async with memory_runner(
        tmp_path, [slack, mail], delivery=FAST, clock=Clock(), silences=book(finance)
    ) as runner:
        await runner.publish(quiet, loud)
        await runner.bus.wait_for(lambda s: len(receipts(s)) == 4)
    assert slack.delivered == [loud.event_id]
    assert mail.delivered == [loud.event_id]
    silenced = receipts(runner.bus.seen, "silenced")
    assert sorted(str(r["destination"]) for r in silenced) == ["mail", "slack"]
    assert {r["event_id"] for r in silenced} == {quiet.event_id}
    detail = str(silenced[0]["detail"])
    assert detail.startswith(f"silenced by {finance.id} until ")
    assert "Finance database maintenance (alice)" in detail
    assert metric("silenced", "slack") - before == 1


async def test_every_matcher_of_a_silence_must_hold(tmp_path: Path) -> None:
    narrow = silence("streams=Finance", "task_names=Reload Finance*", "kinds=task_failed")
    sent = Recording("sent")
    named = failure(1, "Finance", name="Reload Finance ledger")
    other_name = failure(2, "Finance", name="Reload HR")
    other_stream = failure(3, "Sales", name="Reload Finance ledger")
    async with memory_runner(
        tmp_path, [sent], delivery=FAST, clock=Clock(), silences=book(narrow)
    ) as runner:
        await runner.publish(named, other_name, other_stream)
        await runner.bus.wait_for(lambda s: len(receipts(s)) == 3)
    assert sorted(sent.delivered) == sorted([other_name.event_id, other_stream.event_id])
    assert [r["event_id"] for r in receipts(runner.bus.seen, "silenced")] == [named.event_id]


async def test_tags_and_custom_properties_can_be_silenced(tmp_path: Path) -> None:
    # The sample task has the tags Finance, Daily and Herald_Team: finance.
    by_tag = silence("task_tags=Daily")
    by_property = silence("task_custom_properties.Herald_Team=finance")
    elsewhere = silence("task_custom_properties.Herald_Team=hr")
    for item, outcome in (
        (by_tag, "silenced"),
        (by_property, "silenced"),
        (elsewhere, "delivered"),
    ):
        folder = tmp_path / item.id
        async with memory_runner(
            folder, [Recording("sent")], delivery=FAST, clock=Clock(), silences=book(item)
        ) as runner:
            await runner.publish(failure(1))
            await runner.bus.wait_for(lambda s: len(receipts(s)) == 1)
        assert receipts(runner.bus.seen)[0]["outcome"] == outcome, item.matchers


async def test_a_silence_that_has_ended_or_not_begun_silences_nothing(tmp_path: Path) -> None:
    ended = silence("streams=Finance", starts=NOW - timedelta(hours=3), hours=2)
    later = silence("streams=Finance", starts=NOW + timedelta(hours=1))
    sent = Recording("sent")
    async with memory_runner(
        tmp_path, [sent], delivery=FAST, clock=Clock(), silences=book(ended, later)
    ) as runner:
        await runner.publish(failure(1))
        await runner.bus.wait_for(lambda s: len(receipts(s)) == 1)
    assert sent.delivered == [failure(1).event_id]


async def test_an_empty_retained_payload_clears_the_silence(tmp_path: Path) -> None:
    finance = silence("streams=Finance")
    known = book(finance)
    sent = Recording("sent")
    async with memory_runner(
        tmp_path, [sent], delivery=FAST, clock=Clock(), silences=known
    ) as runner:
        await runner.publish(failure(1))
        known.update(topics.silence_topic(PREFIX, finance.id), b"")
        await runner.publish(failure(2))
        await runner.bus.wait_for(lambda s: len(receipts(s)) == 2)
    assert sent.delivered == [failure(2).event_id]
    assert known.active(Clock()()) == []


async def test_a_silence_limited_to_destinations_or_services_silences_only_those(
    tmp_path: Path,
) -> None:
    only_mail = silence("streams=Finance", destinations=["mail"])
    other_service = silence("streams=*", services=["emailer"])
    slack, mail = Recording("slack"), Recording("mail")
    async with memory_runner(
        tmp_path,
        [slack, mail],
        delivery=FAST,
        clock=Clock(),
        silences=book(only_mail, other_service),
    ) as runner:
        await runner.publish(failure(1))
        await runner.bus.wait_for(lambda s: len(receipts(s)) == 2)
    assert slack.delivered == [failure(1).event_id]
    assert mail.delivered == []


async def test_a_recovery_of_a_silenced_failure_is_silenced_until_the_silence_ends(
    tmp_path: Path,
) -> None:
    failures_only = silence("kinds=task_failed", "streams=Finance", hours=1)
    clock = Clock()
    sent = Recording("sent")
    first, second = failure(1), failure(2)
    async with memory_runner(
        tmp_path, [sent], delivery=FAST, clock=clock, silences=book(failures_only)
    ) as runner:
        await runner.publish(first, second, recovery_of(first, 1))
        await runner.bus.wait_for(lambda s: len(receipts(s)) == 3)
        clock.now += 2 * 3600  # the silence has ended: this recovery is news
        await runner.publish(recovery_of(second, 2))
        await runner.bus.wait_for(lambda s: len(receipts(s)) == 4)
    assert sent.delivered == [recovery_of(second, 2).event_id]
    [recovered] = [
        r for r in receipts(runner.bus.seen) if r["event_id"] == recovery_of(first, 1).event_id
    ]
    assert recovered["outcome"] == "silenced"
    assert "the recovery of a failure it silenced" in str(recovered["detail"])


async def test_a_recovery_is_still_silenced_after_a_restart(tmp_path: Path) -> None:
    failures_only = silence("kinds=task_failed")
    first = failure(1)
    for published in (first, recovery_of(first, 1)):
        async with memory_runner(
            tmp_path,
            [Recording("sent")],
            delivery=FAST,
            clock=Clock(),
            silences=book(failures_only),
        ) as runner:
            await runner.publish(published)
            await runner.bus.wait_for(lambda s: len(receipts(s)) == 1)
        assert receipts(runner.bus.seen)[0]["outcome"] == "silenced"


def test_a_silence_round_trips_as_json_and_bad_ones_are_refused() -> None:
    finance = silence("streams=Finance", "task_custom_properties.Herald_Team=finance")
    assert silences.decode(silences.encode(finance)) == finance
    with pytest.raises(ValueError, match="'stream' is not a silence key"):
        silences.criterion(Matcher("stream", "Finance"))
    with pytest.raises(ValueError, match="one of task_failed, task_aborted, task_succeeded"):
        silences.criterion(Matcher("kinds", "failed"))
    with pytest.raises(ValueError, match="needs at least one matcher"):
        silences.decode(msgspec.json.encode({**msgspec.to_builtins(finance), "matchers": []}))


def test_a_bad_silence_message_is_ignored_and_the_others_still_apply() -> None:
    good = silence("streams=Finance")
    known = book(good)
    known.update(topics.silence_topic(PREFIX, "broken"), b"{not json")
    other = silence("streams=Sales")
    known.update(topics.silence_topic(PREFIX, "not-its-id"), silences.encode(other))
    assert [s.id for s in known.matching(failure(1), NOW.timestamp())] == [good.id]
    assert known.get(other.id) is None


@pytest.mark.parametrize(
    "matcher",
    [
        "kinds=task_failed",
        "kinds=task_succeeded",
        "task_types=reload",
        "task_types=distribute",
        "task_names=manually TRIGGERED*",
        "task_names=Reload*",
        "task_names=Manually triggered reload of Test failing reloads 2",
        "app_names=test failing reloads ?",
        "app_names=[A-Z]*",
        "streams=FINANCE",
        "streams=Fin*",
        "streams=Sales",
        "task_tags=Daily",
        "task_tags=daily",
        "app_tags=Finance",
        "task_custom_properties.Herald_Team=finance",
        "task_custom_properties.Herald_Team=Finance",
        "task_custom_properties.Nobody=finance",
        "app_custom_properties.Department=Finance",
    ],
)
def test_a_service_decides_each_criterion_as_when_does(matcher: str) -> None:
    # The service compiles matchers for speed; when: is what they mean.
    key, value = matcher.split("=", 1)
    criterion = silences.criterion(Matcher(key, value))
    no_stream = samples.sample_failed()
    assert no_stream.app is not None
    no_stream = msgspec.structs.replace(
        no_stream, app=msgspec.structs.replace(no_stream.app, stream=None)
    )
    for event in (failure(1), samples.sample_partial(), no_stream, samples.sample_succeeded()):
        known = book(silence(matcher))
        assert bool(known.matching(event, NOW.timestamp())) == criterion.matches(event), (
            matcher,
            event.event_id,
        )
