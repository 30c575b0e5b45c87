"""Replaying dead letters inside a real subscriber service: the incident forwarder's webhooks
against real HTTP receivers that answer 500 until they recover, a real Mosquitto carrying the
requests, the answers and the receipts.

Every test first dead-letters something: a 500 with a deadline shorter than the first backoff
gives up after one attempt. A replayed delivery starts afresh, so it gets that one attempt too.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from herald_incident_forwarder.service import build
from herald_incident_forwarder.settings import IncidentForwarderSettings
from herald_shared import replay, topics
from herald_shared.delivery.receipts import Receipt
from herald_shared.events import Event
from herald_shared.replay import ReplayAnswer, ReplayedDelivery, ReplayRequest
from herald_shared.settings import BrokerSettings
from herald_shared.subscriber import SubscriberService
from herald_testkit.http import Answer, HttpReceiver, accepted_webhook_ids
from herald_testkit.made_events import failure
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer, publisher
from herald_testkit.subscribers import ServiceUnderTest, publish_events
from herald_testkit.waiting import sample

SERVICE = ServiceUnderTest(build, "incident-forwarder")
FAILING = Answer(status=500, body="relay down")
RECOVERED = Answer(status=200)


def settings(state: Path, **webhooks: HttpReceiver) -> IncidentForwarderSettings:
    return IncidentForwarderSettings.model_validate(
        {
            "state_dir": str(state),
            "webhooks": [{"name": name, "url": r.url} for name, r in webhooks.items()],
            # One attempt, then a dead letter: the first retry would pass the deadline.
            "delivery": {"initial_backoff": "5s", "deadline": "1s"},
        }
    )


def request(
    *event_ids: str, destination: str | None = None, since: datetime | None = None
) -> ReplayRequest:
    return ReplayRequest(
        id=replay.new_request_id(),
        event_ids=list(event_ids),
        destination=destination,
        since=since,
        requested_by="test",
        requested_at=datetime.now(UTC),
    )


@dataclass
class Scene:
    """A running service and what the broker carries about it."""

    mosquitto: Mosquitto
    prefix: str
    observer: Observer
    service: SubscriberService

    def ended(self, outcome: str, event: Event) -> list[Receipt]:
        return [
            r
            for r in SERVICE.receipts(self.observer.seen, self.prefix)
            if r.outcome == outcome and r.event_id == event.event_id
        ]

    async def wait_ended(self, outcome: str, *items: Event, each: int = 1) -> None:
        await self.observer.wait_for(
            lambda _: all(len(self.ended(outcome, e)) >= each for e in items)
        )

    async def dead_letter(self, *items: Event, each: int = 1) -> None:
        """Publish ``items`` and wait until each has ``each`` dead-lettered receipts."""
        await publish_events(self.mosquitto, self.prefix, *items)
        await self.wait_ended("dead_lettered", *items, each=each)

    async def send(self, payload: bytes) -> None:
        async with publisher(self.mosquitto.host, self.mosquitto.port) as client:
            await client.publish(topics.replay_topic(self.prefix, SERVICE.name), payload, qos=1)

    def answers(self, asked: ReplayRequest) -> dict[str, ReplayAnswer]:
        """The answers to ``asked`` by the topic they came on."""
        found = {}
        for seen in self.observer.seen:
            if "/v1/replayed/" in seen.topic:
                answer = replay.decode_answer(seen.payload)
                if answer.id == asked.id:
                    found[seen.topic] = answer
        return found

    async def ask(self, asked: ReplayRequest, instances: int = 1) -> list[ReplayAnswer]:
        """Send the request and wait for the answers of ``instances`` instances."""
        await self.send(replay.encode(asked))
        await self.observer.wait_for(lambda _: len(self.answers(asked)) >= instances)
        return list(self.answers(asked).values())


@contextlib.asynccontextmanager
async def scene(
    mosquitto: Mosquitto,
    prefix: str,
    broker: BrokerSettings,
    state: Path,
    **receivers: HttpReceiver,
) -> AsyncIterator[Scene]:
    """The service delivering to ``receivers`` (webhook:<name>), which answer 500 for now."""
    for receiver in receivers.values():
        receiver.default = FAILING
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        SERVICE.running(settings(state, **receivers), broker) as service,
    ):
        yield Scene(mosquitto, prefix, observer, service)


Opening = Callable[..., contextlib.AbstractAsyncContextManager[Scene]]


@pytest.fixture
def opening(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> Opening:
    """``opening(**receivers)``: :func:`scene` on this test's broker, prefix and state."""
    return functools.partial(scene, mosquitto, topic_prefix, broker_settings, tmp_path)


@pytest.fixture
async def relay() -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver() as receiver:
        yield receiver


def replayed_count(destination: str) -> float:
    return sample("herald_replayed_total", service=SERVICE.name, destination=destination)


async def test_a_dead_letter_replayed_after_the_destination_recovers_is_delivered_once(
    opening: Opening, broker_settings: BrokerSettings, relay: HttpReceiver
) -> None:
    event = failure(1)
    async with opening(relay=relay) as it:
        await it.dead_letter(event)
        relay.default = RECOVERED
        before = replayed_count("webhook:relay")

        [answer] = await it.ask(request())
        assert answer.service == SERVICE.name
        assert answer.instance == broker_settings.instance
        assert answer.replayed == [ReplayedDelivery(event.event_id, "webhook:relay", "")]
        assert answer.not_found == []
        await it.wait_ended("delivered", event)
        [delivered] = it.ended("delivered", event)
        assert delivered.attempts == 1  # counted afresh from the replay
        assert replayed_count("webhook:relay") == before + 1

        # The same request again: nothing is dead-lettered any more, and nothing is sent again.
        [again] = await it.ask(request(event.event_id))
        assert again.replayed == []
        assert again.not_found == [event.event_id]
    assert accepted_webhook_ids(relay) == [event.event_id]
    assert len(it.ended("delivered", event)) == 1


async def test_a_replay_that_fails_again_is_dead_lettered_again_with_its_reason(
    opening: Opening, relay: HttpReceiver
) -> None:
    event = failure(2)
    async with opening(relay=relay) as it:
        await it.dead_letter(event)
        await it.ask(request(event.event_id))
        await it.wait_ended("dead_lettered", event, each=2)
    _, again = it.ended("dead_lettered", event)
    assert again.detail is not None
    assert "relay down" in again.detail
    assert len(relay.requests) == 2


async def test_a_replay_by_event_id_touches_only_that_event(
    opening: Opening, relay: HttpReceiver
) -> None:
    chosen, other = failure(3), failure(4)
    async with opening(relay=relay) as it:
        await it.dead_letter(chosen, other)
        relay.default = RECOVERED
        [answer] = await it.ask(request(chosen.event_id))
        assert [r.event_id for r in answer.replayed] == [chosen.event_id]
        await it.wait_ended("delivered", chosen)
        ledger = it.service.runner.ledger
        assert ledger.state_of(other.event_id, "webhook:relay") == "dead_lettered"
    assert accepted_webhook_ids(relay) == [chosen.event_id]


async def test_destination_and_since_choose_which_dead_letters_are_replayed(
    opening: Opening,
) -> None:
    early, late = failure(5), failure(6)
    async with (
        HttpReceiver() as a,
        HttpReceiver() as b,
        opening(a=a, b=b) as it,
    ):
        await it.dead_letter(early, each=2)
        await it.dead_letter(late, each=2)
        a.default = b.default = RECOVERED
        [early_end, *_] = it.ended("dead_lettered", early)
        [late_end, *_] = it.ended("dead_lettered", late)
        between = early_end.at + (late_end.at - early_end.at) / 2

        [by_destination] = await it.ask(request(destination="webhook:b", since=between))
        assert by_destination.replayed == [ReplayedDelivery(late.event_id, "webhook:b", "")]
        [rest] = await it.ask(request(since=between))
        assert rest.replayed == [ReplayedDelivery(late.event_id, "webhook:a", "")]
        await it.wait_ended("delivered", late, each=2)
        ledger = it.service.runner.ledger
        assert ledger.state_of(early.event_id, "webhook:a") == "dead_lettered"
        assert ledger.state_of(early.event_id, "webhook:b") == "dead_lettered"
    assert it.ended("delivered", early) == []


async def test_ids_never_held_or_purged_and_unknown_destinations_are_reported(
    opening: Opening, relay: HttpReceiver
) -> None:
    purged = failure(7)
    async with opening(relay=relay) as it:
        await it.dead_letter(purged)
        later = datetime.now(UTC).timestamp() + 1
        assert it.service.runner.ledger.purge(later, later) == 1  # past its retention

        [answer] = await it.ask(request("never-held", purged.event_id))
        assert answer.replayed == []
        assert answer.not_found == ["never-held", purged.event_id]
        [unknown] = await it.ask(request(destination="webhook:gone"))
        assert unknown.replayed == []
        assert unknown.unknown_destinations == ["webhook:gone"]
    assert len(relay.requests) == 1  # the purged one was not tried again


async def test_a_dead_letter_of_a_destination_no_longer_configured_stays_and_is_named(
    opening: Opening,
) -> None:
    event = failure(8)
    async with HttpReceiver() as old, HttpReceiver() as kept:
        async with opening(old=old, kept=kept) as it:
            await it.dead_letter(event, each=2)
        async with opening(kept=kept) as it:
            kept.default = RECOVERED
            [answer] = await it.ask(request(event.event_id))
            assert answer.replayed == [ReplayedDelivery(event.event_id, "webhook:kept", "")]
            assert answer.unknown_destinations == ["webhook:old"]
            assert answer.not_found == []
            await it.wait_ended("delivered", event)
            ledger = it.service.runner.ledger
            assert ledger.state_of(event.event_id, "webhook:old") == "dead_lettered"


HOSTILE = [
    b"",
    b"not json",
    b"[]",
    b'{"id": 7}',
    b'{"id": "r", "requested_by": "x", "requested_at": "2026-12-03T08:00:00"'
    b', "since": "2026-12-03T06:00:00"}',  # since without a zone
    b'{"id": "r", "requested_by": "x", "requested_at": "2026-12-03T08:00:00Z", "event_ids": "all"}',
    b"\xff\xfe" * 5000,
]


async def test_a_hostile_request_is_logged_and_counted_and_the_service_goes_on(
    opening: Opening, topic_prefix: str, caplog: pytest.LogCaptureFixture, relay: HttpReceiver
) -> None:
    caplog.set_level(logging.WARNING)
    event = failure(9)
    rejected = "herald_replay_requests_total"
    before = sample(rejected, service=SERVICE.name, outcome="rejected")
    async with opening(relay=relay) as it:
        await it.dead_letter(event)
        for payload in HOSTILE:
            await it.send(payload)
        relay.default = RECOVERED
        [answer] = await it.ask(request())  # still answering
        assert [r.event_id for r in answer.replayed] == [event.event_id]
        await it.wait_ended("delivered", event)
        assert it.service.readiness() == (True, "connected, destinations ready")
    after = sample(rejected, service=SERVICE.name, outcome="rejected")
    assert after - before == len(HOSTILE)
    replay_topic = topics.replay_topic(topic_prefix, SERVICE.name)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    ignored = [w for w in warnings if w.startswith(f"ignoring a message on {replay_topic}:")]
    assert len(ignored) == len(HOSTILE)
    assert any("since needs a time zone" in w for w in ignored)


async def test_two_instances_each_answer_for_their_own_ledger(
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
    relay: HttpReceiver,
) -> None:
    shared = broker_settings.model_copy(update={"shared_subscriptions": True})
    instances = [shared.model_copy(update={"instance": f"{shared.instance}-{n}"}) for n in "ab"]
    published = [failure(n) for n in range(10, 16)]
    async with (
        scene(mosquitto, topic_prefix, instances[0], tmp_path / "a", relay=relay) as a,
        scene(mosquitto, topic_prefix, instances[1], tmp_path / "b", relay=relay) as b,
    ):
        await a.dead_letter(*published)  # the broker splits them between the two
        relay.default = RECOVERED
        asked = request()
        await a.ask(asked, instances=2)
        held: dict[str, set[str]] = {}
        for settings_of, it in zip(instances, (a, b), strict=True):
            topic = topics.replayed_topic(topic_prefix, SERVICE.name, settings_of.instance)
            answer = a.answers(asked)[topic]
            assert answer.instance == settings_of.instance
            held[topic] = {r.event_id for r in answer.replayed}
            assert all(it.service.runner.ledger.knows(event_id) for event_id in held[topic])
        first, second = held.values()
        assert first, second  # a shared subscription goes round-robin
        assert second, first
        assert first.isdisjoint(second)
        assert first | second == {e.event_id for e in published}
        await a.wait_ended("delivered", *published)
    assert len(relay.accepted) == len(published)
