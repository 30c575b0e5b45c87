"""`herald replay` as a user runs it, against the incident forwarder as `herald run` runs it.

The service is a child process (so it can be SIGKILLed), its webhooks real HTTP receivers that
answer 500 until they recover; `herald replay` is a child process too, its exit status and its
lines what is checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt

from herald_shared import events, replay, topics
from herald_shared.events import Event
from herald_shared.replay import ReplayRequest
from herald_testkit.fixtures import broker_section
from herald_testkit.http import Answer, HttpReceiver, accepted_webhook_ids
from herald_testkit.made_events import failure
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer, publisher
from herald_testkit.ports import free_port
from herald_testkit.processes import Child, herald
from herald_testkit.subscribers import publish_events, receipts

SERVICE = "incident-forwarder"
FAILING = Answer(status=500, body="relay down")
RECOVERED = Answer(status=200)


@dataclass
class Forwarder:
    """The incident forwarder in its own process, and what the broker carries about it."""

    mosquitto: Mosquitto
    prefix: str
    config: Path
    observer: Observer
    child: Child | None = None

    async def start(self) -> None:
        self.child = await Child.python(
            "-m", "herald_shared.cli", "run", SERVICE, "--config", str(self.config)
        )
        online = topics.status_topic(self.prefix, SERVICE, self.prefix)
        already = len(self.observer.matching(lambda s: s.topic == online))
        await self.observer.wait_for(
            lambda _: (
                (statuses := self.observer.matching(lambda s: s.topic == online))[already:] != []
                and statuses[-1].payload == b"online"
            ),
            within=60,
        )

    async def stop(self, *, kill: bool = False) -> None:
        assert self.child is not None
        if kill:
            self.child.kill()
        else:
            self.child.terminate()
        await self.child.wait()
        await self.child.close()
        self.child = None

    def ended(self, outcome: str, event: Event) -> int:
        found = receipts(self.observer.seen, self.prefix, SERVICE)
        return sum(1 for r in found if r.outcome == outcome and r.event_id == event.event_id)

    async def dead_letter(self, *items: Event, each: int = 2) -> None:
        await publish_events(self.mosquitto, self.prefix, *items)
        await self.observer.wait_for(
            lambda _: all(self.ended("dead_lettered", e) >= each for e in items), within=30
        )

    async def replay(self, *arguments: str) -> tuple[int, str, str]:
        return await herald("replay", "--config", str(self.config), *arguments, within=90)


def _config(tmp_path: Path, mosquitto: Mosquitto, prefix: str, **webhooks: HttpReceiver) -> Path:
    document = {
        "broker": broker_section(mosquitto, prefix),
        "health": {"host": "127.0.0.1", "port": free_port()},
        "incident_forwarder": {
            "state_dir": str(tmp_path / "state"),
            "webhooks": [{"name": name, "url": r.url} for name, r in webhooks.items()],
            # One attempt, then a dead letter: the first retry would pass the deadline.
            "delivery": {"initial_backoff": "5s", "deadline": "1s"},
        },
    }
    path = tmp_path / "herald.yaml"
    path.write_text(json.dumps(document))  # JSON is YAML
    return path


@contextlib.asynccontextmanager
async def forwarder(
    tmp_path: Path, mosquitto: Mosquitto, prefix: str, **webhooks: HttpReceiver
) -> AsyncIterator[Forwarder]:
    for receiver in webhooks.values():
        receiver.default = FAILING
    config = _config(tmp_path, mosquitto, prefix, **webhooks)
    async with Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer:
        running = Forwarder(mosquitto, prefix, config, observer)
        await running.start()
        try:
            yield running
        finally:
            if running.child is not None:
                await running.stop()


async def test_replay_delivers_the_dead_letters_once_the_destinations_are_back_and_exits_0(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    event = failure(101)
    async with (
        HttpReceiver() as a,
        HttpReceiver() as b,
        forwarder(tmp_path, mosquitto, topic_prefix, a=a, b=b) as running,
    ):
        await running.dead_letter(event)
        a.default = b.default = RECOVERED
        code, out, err = await running.replay("--since", "1h", "--timeout", "30")
        assert code == 0, out + err
        assert f"asked {SERVICE} (1 instance) to replay the dead letters since " in out
        assert f"{SERVICE}/{topic_prefix}: replaying 2 dead letters" in out
        assert f"{SERVICE}: webhook:a: delivered" in out
        assert f"{SERVICE}: webhook:b: delivered" in out
        assert "summary: 2 delivered" in out

        code, out, err = await running.replay("--timeout", "30")
        assert code == 0, out + err
        assert f"{SERVICE}/{topic_prefix}: nothing to replay" in out
        assert "nothing to replay: no instance holds the dead letters" in out
    assert accepted_webhook_ids(a) == accepted_webhook_ids(b) == [event.event_id]


async def test_replay_that_fails_again_names_the_delivery_and_exits_1(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    event, other = failure(102), failure(103)
    async with (
        HttpReceiver() as a,
        HttpReceiver() as b,
        forwarder(tmp_path, mosquitto, topic_prefix, a=a, b=b) as running,
    ):
        await running.dead_letter(event, other)
        b.default = RECOVERED  # a is still down
        code, out, err = await running.replay(
            "--destination", "webhook:a", event.event_id, "--timeout", "30"
        )
        assert code == 1, out + err
        assert f"{SERVICE}/{topic_prefix}: replaying 1 dead letter" in out
        line = f"{SERVICE}: webhook:a: dead_lettered: gave up after 1 attempt"
        assert line in out
        assert "relay down" in out
        assert "herald: not everything asked for was delivered again:" in err
        assert line in err
        assert "summary: 1 dead_lettered" in out
    # The first attempts, then the one replayed: neither b nor the other event was tried again.
    assert len(b.requests) == 2
    assert len(a.requests) == 3


async def test_replay_says_which_events_it_found_nowhere_and_exits_1(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    async with (
        HttpReceiver() as a,
        forwarder(tmp_path, mosquitto, topic_prefix, a=a) as running,
    ):
        code, out, err = await running.replay("never-seen-event", "--timeout", "30")
    assert code == 1, out + err
    assert "nothing to replay: no instance holds the dead letters of never-seen-event" in out
    assert "never-seen-event: no dead letter for it (never held here, delivered, or purged)" in err


async def test_replay_refuses_what_no_online_instance_has_and_a_since_it_cannot_read(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    async with (
        HttpReceiver() as a,
        forwarder(tmp_path, mosquitto, topic_prefix, a=a) as running,
    ):
        code, _, err = await running.replay("--service", "emailer")
        assert code == 2
        assert f"herald: no instance of emailer is online (online: {SERVICE})" in err
        code, _, err = await running.replay("--destination", "webhook:gone")
        assert code == 2
        assert "delivers to 'webhook:gone' (their destinations: webhook:a)" in err
        code, _, err = await running.replay("--since", "yesterday")
        assert code == 2
        assert "expected a time such as 2026-12-03T06:00 or a duration such as 2h" in err


async def test_replay_names_an_online_instance_that_does_not_answer(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    ghost = [
        (topics.destinations_topic(topic_prefix, SERVICE, "ghost"), b'["webhook:a"]'),
        (topics.status_topic(topic_prefix, SERVICE, "ghost"), b"online"),
    ]
    async with (
        HttpReceiver() as a,
        forwarder(tmp_path, mosquitto, topic_prefix, a=a) as running,
        publisher(mosquitto.host, mosquitto.port) as client,
    ):
        for topic, payload in ghost:  # what an instance that hung says of itself
            await client.publish(topic, payload, qos=1, retain=True)
        try:
            code, out, err = await running.replay("--timeout", "3")
        finally:
            for topic, _ in ghost:
                await client.publish(topic, b"", qos=1, retain=True)
    assert code == 1, out + err
    assert f"asked {SERVICE} (2 instances)" in out
    assert f"{SERVICE}/{topic_prefix}: nothing to replay" in out
    assert f"no answer from {SERVICE}/ghost within 3 s: is it running?" in err


async def test_deliveries_a_replay_reset_are_delivered_after_the_service_was_killed(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    event = failure(104)
    async with (
        HttpReceiver() as a,
        forwarder(tmp_path, mosquitto, topic_prefix, a=a) as running,
    ):
        await running.dead_letter(event, each=1)
        a.respond_with(Answer(hang=True))  # the replayed attempt never ends…
        a.default = RECOVERED
        asked = ReplayRequest(
            id=replay.new_request_id(),
            event_ids=[event.event_id],
            requested_by="test",
            requested_at=datetime.now(UTC),
        )
        async with publisher(mosquitto.host, mosquitto.port) as client:
            await client.publish(
                topics.replay_topic(topic_prefix, SERVICE), replay.encode(asked), qos=1
            )
        answer = topics.replayed_topic(topic_prefix, SERVICE, topic_prefix)
        await running.observer.wait_for(lambda seen: any(s.topic == answer for s in seen))
        await a.wait_for(lambda receiver: len(receiver.requests) == 2)
        await running.stop(kill=True)  # …because the service is killed during it
        assert running.ended("delivered", event) == 0

        await running.start()
        await running.observer.wait_for(lambda _: running.ended("delivered", event) == 1)
    assert accepted_webhook_ids(a) == [event.event_id]


async def test_replay_works_in_the_one_machine_mode_with_the_embedded_broker(
    tmp_path: Path,
) -> None:
    event = failure(105)
    port = free_port()
    async with HttpReceiver() as relay:
        relay.default = FAILING
        config = tmp_path / "herald.yaml"
        config.write_text(
            json.dumps(
                {
                    "broker": {"host": "127.0.0.1", "port": port, "embedded": True},
                    "health": {"host": "127.0.0.1", "port": 0},
                    "incident_forwarder": {
                        "state_dir": str(tmp_path / "state"),
                        "webhooks": [{"name": "relay", "url": relay.url}],
                        "delivery": {"initial_backoff": "5s", "deadline": "1s"},
                    },
                }
            )
        )
        up = await Child.python("-m", "herald_shared.cli", "up", "--config", str(config))
        try:
            await publish_when_online(port, event)
            await relay.wait_for(lambda receiver: len(receiver.requests) == 1, within=60)
            relay.default = RECOVERED
            async with asyncio.timeout(60):
                while True:  # until the dead letter is committed
                    code, out, err = await herald(
                        "replay", "--config", str(config), "--timeout", "20"
                    )
                    if "replaying 1 dead letter" in out:
                        break
                    await asyncio.sleep(0.2)
        finally:
            up.terminate()
            assert await up.wait() == 0
    assert code == 0, out + err
    assert f"{SERVICE}: webhook:relay: delivered" in out
    assert accepted_webhook_ids(relay) == [event.event_id]


async def publish_when_online(port: int, event: Event) -> None:
    """Publish ``event`` into the embedded broker (MQTT 3.1.1 only) once the service is online."""
    async with asyncio.timeout(60):
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V311
                ) as client:
                    await client.subscribe(topics.status_topic("herald", SERVICE, "+"), qos=1)
                    async for message in client.messages:
                        if message.payload == b"online":
                            break
                    await client.publish(
                        topics.topic_of("herald", event), events.encode(event), qos=1
                    )
                    return
            except aiomqtt.MqttError:  # the broker is not up yet
                await asyncio.sleep(0.2)
