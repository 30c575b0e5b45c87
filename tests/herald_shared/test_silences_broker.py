"""Silences through a real Mosquitto: ``herald silence`` adds, lists and expires them as retained
messages; a subscriber service learns them, also one added while it was down, and stops
silencing once one is expired."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from herald_shared import events, silences, tail, topics
from herald_shared.delivery.destination import Destination
from herald_shared.events import Event
from herald_shared.settings import BrokerSettings, DeliverySettings
from herald_shared.subscriber import SubscriberService
from herald_testkit.fixtures import broker_settings_for
from herald_testkit.made_events import failure
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer, Seen, publisher
from herald_testkit.processes import herald
from herald_testkit.services import started
from herald_testkit.waiting import wait_until

FAST = DeliverySettings(initial_backoff=0.05, max_backoff=0.2, deadline=30, shutdown_grace=5)


class Recording(Destination):
    name = "sent"

    def __init__(self) -> None:
        self.delivered: list[str] = []

    async def deliver(self, event: Event, target: str) -> str | None:
        self.delivered.append(event.event_id)
        return "ok"


@contextlib.asynccontextmanager
async def running(
    broker: BrokerSettings, state_dir: Path, destination: Destination
) -> AsyncIterator[SubscriberService]:
    service = SubscriberService(
        name="silence-test",
        destinations=[destination],
        broker=broker,
        delivery=FAST,
        state_dir=state_dir,
    )
    async with started(service):
        yield service


def config_file(tmp_path: Path, mosquitto: Mosquitto, prefix: str) -> str:
    path = tmp_path / "herald.yaml"
    path.write_text(
        f"broker: {{host: {mosquitto.host}, port: {mosquitto.port}, topic_prefix: {prefix},"
        f" instance: {prefix}}}\n"
    )
    return str(path)


async def add_silence(config: str, *arguments: str) -> str:
    status, out, err = await herald(
        "silence", "add", "--config", config, *arguments, "--comment", "DB maintenance"
    )
    assert status == 0, err
    assert out.startswith("added silence ")
    return out.split()[2]


async def publish(mosquitto: Mosquitto, prefix: str, *items: Event) -> None:
    async with publisher(mosquitto.host, mosquitto.port) as client:
        for event in items:
            await client.publish(topics.topic_of(prefix, event), events.encode(event), qos=1)


def outcomes(seen: list[Seen]) -> dict[str, str]:
    found: list[dict[str, str]] = [m.json() for m in seen]  # type: ignore[misc]
    return {r["event_id"]: r["outcome"] for r in found}


async def test_a_silence_added_while_the_service_was_down_applies_when_it_is_back(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    config = config_file(tmp_path, mosquitto, topic_prefix)
    sent = Recording()
    finance, sales = failure(1, "Finance"), failure(2, "Sales")
    deliveries = topics.deliveries_topic(topic_prefix, "silence-test")
    async with Observer(mosquitto.host, mosquitto.port, deliveries) as observer:
        async with running(broker_settings, tmp_path / "state", sent):
            pass  # its persistent session now exists; the service goes down
        silence_id = await add_silence(config, "--match", "streams=Finance", "--for", "2h")
        await publish(mosquitto, topic_prefix, finance, sales)
        async with running(broker_settings, tmp_path / "state", sent):
            await observer.wait_for(lambda seen: len(seen) == 2)
        # A replica that never ran before learns it from the retained message alone.
        newcomer = broker_settings_for(mosquitto, topic_prefix, instance="newcomer")
        later = failure(3, "Finance")
        async with running(newcomer, tmp_path / "newcomer", sent) as service:
            await wait_until(lambda: service.silences.get(silence_id) is not None)
            await publish(mosquitto, topic_prefix, later)
            await observer.wait_for(lambda seen: len(seen) == 3)
    assert sent.delivered == [sales.event_id]
    assert outcomes(observer.seen) == {
        finance.event_id: "silenced",
        sales.event_id: "delivered",
        later.event_id: "silenced",
    }
    assert silence_id in observer.seen[0].json()["detail"]  # type: ignore[index]


async def test_the_silence_command_lists_and_expires_and_new_failures_alert_again(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    config = config_file(tmp_path, mosquitto, topic_prefix)
    sent = Recording()
    deliveries = topics.deliveries_topic(topic_prefix, "silence-test")
    silenced, after = failure(1), failure(2)
    async with (
        Observer(mosquitto.host, mosquitto.port, deliveries) as observer,
        running(broker_settings, tmp_path, sent) as service,
    ):
        silence_id = await add_silence(
            config,
            "--match",
            "task_names=Manually*",
            "--match",
            "kinds=task_failed",
            "--until",
            "2099-01-01T00:00+00:00",
            "--author",
            "alice",
        )
        await wait_until(lambda: service.silences.get(silence_id) is not None)
        await publish(mosquitto, topic_prefix, silenced)
        await observer.wait_for(lambda seen: len(seen) == 1)

        status, listed, _ = await herald("silence", "list", "--config", config)
        assert status == 0
        [line] = listed.splitlines()
        assert line.startswith(f"{silence_id}  active   until 2099-01-01")
        assert line.endswith("task_names=Manually* kinds=task_failed  by alice: DB maintenance")

        status, out, _ = await herald("silence", "expire", "--config", config, silence_id[:8])
        assert (status, out) == (0, f"expired silence {silence_id}\n")
        await wait_until(lambda: service.silences.get(silence_id) is None)
        await publish(mosquitto, topic_prefix, after)
        await observer.wait_for(lambda seen: len(seen) == 2)

        status, listed, _ = await herald("silence", "list", "--config", config, "--all")
        assert listed == "no silences\n"
        status, _, err = await herald("silence", "expire", "--config", config, silence_id)
        assert status == 1
        assert f"no silence on {mosquitto.host}:{mosquitto.port} has an id starting with" in err
    assert outcomes(observer.seen) == {silenced.event_id: "silenced", after.event_id: "delivered"}
    assert sent.delivered == [after.event_id]


async def test_the_silence_command_refuses_what_it_cannot_match_on(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    config = config_file(tmp_path, mosquitto, topic_prefix)
    for arguments, problem in (
        (["--match", "stream=Finance", "--for", "2h"], "'stream' is not a silence key"),
        (["--match", "kinds=failed", "--for", "2h"], "one of task_failed, task_aborted"),
        (["--match", "streams", "--for", "2h"], "write KEY=VALUE"),
        (["--match", "streams=Finance", "--for", "soon"], "expected a duration"),
        (["--match", "streams=Finance", "--until", "2001-01-01T00:00Z"], "before it starts"),
    ):
        status, _, err = await herald(
            "silence", "add", "--config", config, *arguments, "--comment", "x"
        )
        assert status == 2, arguments
        assert problem in err, err


def test_tail_shows_a_silence_and_its_expiry_readably() -> None:
    silence = silences.Silence(
        id="5f0c",
        matchers=[silences.Matcher("streams", "Finance")],
        starts=datetime(2026, 12, 6, 2, 0, tzinfo=UTC),
        ends=datetime(2026, 12, 6, 6, 30, tzinfo=UTC),
        author="alice",
        comment="DB maintenance",
        destinations=["email-failed"],
    )
    topic = topics.silence_topic("herald", "5f0c")
    assert tail.describe(topic, silences.encode(silence)) == (
        "SILENCE    5f0c streams=Finance to email-failed from 2026-12-06 02:00 until"
        " 2026-12-06 06:30 UTC, by alice: DB maintenance"
    )
    assert tail.describe(topic, b"") == "SILENCE    5f0c expired (cleared)"
