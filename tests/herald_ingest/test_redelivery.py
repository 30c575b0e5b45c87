"""What a broker loses after its PUBACK, ingest publishes again, until the subscriber has it.

Ingest and a subscriber service (the probe: the real subscriber frame around one HTTP
destination) run in this process against a real Mosquitto, which is SIGKILLed, given a queue
limit, or left holding a session that nobody resumes. Every test counts what reached the HTTP
receiver, one request per event, and what ingest's metrics and log say.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from tests.herald_ingest.test_service import datagram, running_ingest, send

from herald_ingest.service import IngestService
from herald_shared import events, topics
from herald_shared.settings import BrokerSettings, DeliverySettings
from herald_testkit.fixtures import broker_settings_for
from herald_testkit.http import HttpReceiver
from herald_testkit.mosquitto import Mosquitto, shipped_setting
from herald_testkit.mqtt import publisher
from herald_testkit.probe import ProbeSettings, build
from herald_testkit.subscribers import running

SERVICE = "probe"
LABELS = {"service": "ingest", "subscriber": SERVICE}  # ingest's metrics about the probe


def resent() -> float:
    sample = REGISTRY.get_sample_value("herald_events_resent_total", LABELS)
    return sample or 0.0


def published() -> float:
    """Events ingest has stored for publishing (the QRS is unreachable: all partial)."""
    sample = REGISTRY.get_sample_value(
        "herald_enrichments_total", {"service": "ingest", "status": "partial"}
    )
    return sample or 0.0


async def until(condition: Callable[[], bool], within: float = 60.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), within)


@dataclass
class Scene:
    """A broker, ingest on it, and the HTTP receiver behind the probe."""

    mosquitto: Mosquitto
    broker: BrokerSettings
    ingest: IngestService
    receiver: HttpReceiver
    state: Path

    def probe(self, name: str = "probe") -> ProbeSettings:
        return ProbeSettings(
            url=self.receiver.url,
            state_dir=self.state / name,
            delivery=DeliverySettings(initial_backoff=0.1, max_backoff=0.5),
        )

    async def introduce(self, probe: ProbeSettings) -> None:
        """Run the probe until ingest knows it, then stop it: its session keeps what comes."""
        async with running(build, probe, self.broker):
            await until(lambda: SERVICE in self.ingest.redelivery.expected())

    async def publish(self, count: int) -> list[str]:
        """``count`` failures through ingest, waited for until the broker PUBACKed them all."""
        executions = [str(uuid.uuid4()) for _ in range(count)]
        target = published() + count
        send(self.ingest, *(datagram("failed", execution) for execution in executions))
        await until(lambda: self.ingest.outbox.depth() == 0 and published() == target)
        return [events.event_id_for("task_failed", execution) for execution in executions]

    def once_each(self) -> Counter[str]:
        return Counter(r.headers["Idempotency-Key"] for r in self.receiver.accepted)

    async def received(self, event_ids: list[str]) -> None:
        await self.receiver.wait_for(lambda _: set(self.once_each()) >= set(event_ids), 60)


@contextlib.asynccontextmanager
async def scene(
    tmp_path: Path, prefix: str, *, redelivery: dict[str, object] | None = None, **broker: int
) -> AsyncIterator[Scene]:
    # log_type information: the autosaves are logged, so a test can tell when one happened.
    with Mosquitto(tmp_path / "mosquitto", extra="log_type information", **broker) as mosquitto:
        settings = broker_settings_for(mosquitto, prefix)
        quick = {"after": "1s", "max_interval": "2s", **(redelivery or {})}
        async with (
            HttpReceiver() as receiver,
            running_ingest(settings, tmp_path / "ingest", redelivery=quick) as ingest,
        ):
            yield Scene(mosquitto, settings, ingest, receiver, tmp_path)


async def test_a_broker_killed_before_its_autosave_loses_none_of_the_events_it_had_acknowledged(
    tmp_path: Path, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    autosave = int(shipped_setting("autosave_interval"))  # production's, 10 s
    before = resent()
    async with scene(tmp_path, topic_prefix, autosave_interval=autosave) as it:
        probe = it.probe()
        await it.introduce(probe)
        # Right after an autosave: the probe's session is saved, the events will not be.
        saves = it.mosquitto.saves()
        await until(lambda: it.mosquitto.saves() > saves)
        event_ids = await it.publish(20)
        await asyncio.sleep(2)  # the scenario: the crash comes 2 s after the PUBACKs
        it.mosquitto.kill()
        it.mosquitto.start()
        caplog.set_level(logging.WARNING, logger="herald_ingest.redelivery")
        async with running(build, probe, it.broker):
            await it.received(event_ids)
            await until(lambda: it.ingest.redelivery.waiting_for(SERVICE) == 0)
    assert it.once_each() == dict.fromkeys(event_ids, 1)
    assert resent() - before >= 20
    assert any(
        "probe has not acknowledged" in record.message and "published 20 again" in record.message
        for record in caplog.records
    )


async def test_a_subscriber_restarted_under_another_instance_name_gets_the_events_of_the_old(
    tmp_path: Path, topic_prefix: str
) -> None:
    before = resent()
    async with scene(tmp_path, topic_prefix) as it:
        await it.introduce(it.probe("pod-a"))
        event_ids = await it.publish(10)  # queued in pod-a's session, which never returns
        renamed = it.broker.model_copy(update={"instance": "pod-b"})
        async with running(build, it.probe("pod-b"), renamed):
            await it.received(event_ids)
    assert it.once_each() == dict.fromkeys(event_ids, 1)
    assert resent() - before >= 10


async def test_a_full_broker_queue_loses_nothing_and_ingest_says_how_many_it_resent(
    tmp_path: Path, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = resent()
    caplog.set_level(logging.WARNING, logger="herald_ingest.redelivery")
    async with scene(tmp_path, topic_prefix, max_queued_messages=5) as it:
        probe = it.probe()
        await it.introduce(probe)
        event_ids = await it.publish(10)  # the broker keeps 5 for the probe and drops 5
        async with running(build, probe, it.broker):
            await it.received(event_ids)
    assert it.once_each() == dict.fromkeys(event_ids, 1)
    assert resent() - before >= 5
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert any("probe has not acknowledged" in m and "published" in m for m in warnings)


async def test_events_a_service_never_acknowledges_are_given_up_with_an_error_and_a_count(
    tmp_path: Path, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    expired = REGISTRY.get_sample_value("herald_events_expired_total", LABELS) or 0
    async with scene(tmp_path, topic_prefix, redelivery={"keep_at_most": 4}) as it:
        await it.introduce(it.probe())
        await it.publish(10)
        await until(lambda: it.ingest.redelivery.waiting_for(SERVICE) == 4)
    now = REGISTRY.get_sample_value("herald_events_expired_total", LABELS)
    assert now == expired + 6
    errors = [r.message for r in caplog.records if r.levelno == logging.ERROR]
    assert errors
    assert all(m.startswith("probe never acknowledged") for m in errors)


async def test_without_a_subscriber_service_nothing_waits_and_a_cleared_status_ends_the_wait(
    tmp_path: Path, topic_prefix: str
) -> None:
    async with scene(tmp_path, topic_prefix) as it:
        await it.publish(3)  # only consumers without a status: nothing to wait for
        assert it.ingest.redelivery.expected() == []
        await it.introduce(it.probe())
        await it.publish(3)
        assert it.ingest.redelivery.waiting_for(SERVICE) == 3
        status = topics.status_topic(topic_prefix, SERVICE, it.broker.instance)
        async with publisher(it.mosquitto.host, it.mosquitto.port) as client:
            await client.publish(status, b"", qos=1, retain=True)  # the service is retired
        await until(lambda: it.ingest.redelivery.expected() == [])
        assert it.ingest.redelivery.waiting_for(SERVICE) == 0
