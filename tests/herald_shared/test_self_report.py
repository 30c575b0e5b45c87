"""What a subscriber service says of itself on the broker (the console's services page): a real
incident forwarder, a real Mosquitto, a webhook receiver that answers 500 until it recovers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from herald_incident_forwarder.service import build
from herald_incident_forwarder.settings import IncidentForwarderSettings
from herald_shared import self_report, tail, topics
from herald_shared.self_report import SelfReport
from herald_shared.settings import BrokerSettings
from herald_testkit.http import Answer, HttpReceiver
from herald_testkit.made_events import failure
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer
from herald_testkit.subscribers import ServiceUnderTest, publish_events

SERVICE = ServiceUnderTest(build, "incident-forwarder")


@pytest.fixture(autouse=True)
def often(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(self_report, "INTERVAL", 0.1)


@pytest.fixture
async def relay() -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver() as receiver:
        yield receiver


def reports(observer: Observer, topic: str) -> list[SelfReport | None]:
    """Every report seen on ``topic``; None for a cleared one."""
    return [
        self_report.decode(m.payload) if m.payload else None
        for m in observer.seen
        if m.topic == topic
    ]


async def test_an_instance_says_its_version_readiness_queue_and_last_event_then_clears_it(
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    relay: HttpReceiver,
    tmp_path: Path,
) -> None:
    relay.default = Answer(status=500, body="relay down")
    settings = IncidentForwarderSettings.model_validate(
        {
            "state_dir": str(tmp_path),
            "webhooks": [{"name": "relay", "url": relay.url}],
            "delivery": {"initial_backoff": "0.2s", "max_backoff": "0.5s", "deadline": "1h"},
        }
    )
    topic = topics.self_report_topic(topic_prefix, SERVICE.name, broker_settings.instance)
    async with Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as observer:
        async with SERVICE.running(settings, broker_settings):
            await observer.wait_for(lambda _: any(r and r.ready for r in reports(observer, topic)))
            started = next(r for r in reports(observer, topic) if r is not None and r.ready)
            assert started.why == "connected, destinations ready"
            assert started.version == self_report.herald_version() != ""
            assert (started.queued, started.last_event_at) == (0, None)

            await publish_events(mosquitto, topic_prefix, failure(1))
            await observer.wait_for(
                lambda _: any(r is not None and r.queued == 1 for r in reports(observer, topic))
            )
            retrying = next(r for r in reports(observer, topic) if r is not None and r.queued)
            assert retrying.last_event_at is not None
            assert retrying.started_at == started.started_at

            relay.default = Answer(status=200)
            await observer.wait_for(
                lambda _: (last := reports(observer, topic)[-1]) is not None and last.queued == 0
            )
        # A clean stop clears it: the instance is gone, not silent.
        await observer.wait_for(lambda _: reports(observer, topic)[-1] is None)
    line = tail.describe(topic, self_report.encode(retrying))
    assert line == (
        f"HEALTH     {SERVICE.name}/{broker_settings.instance}: ready, 1 queued,"
        f" version {retrying.version}"
    )
    assert tail.describe(topic, b"").endswith(": (stopped)")
