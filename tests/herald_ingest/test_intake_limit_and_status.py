"""Butler's intake rate limit (``ingest.max_datagrams_per_minute``) and its UDP-server status
notice (``ingest.udp_status_topic``), against a real Mosquitto and real UDP."""

from __future__ import annotations

import json
import logging
import socket
import uuid
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from tests.herald_ingest.test_service import (
    datagram,
    published,
    running_ingest,
    send,
    unreachable_qlik,
)

from herald_ingest.intake_limit import WINDOW, IntakeLimit
from herald_ingest.service import IngestConfig, IngestService
from herald_ingest.settings import IngestSettings
from herald_shared.settings import BrokerSettings
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer


def over_limit() -> float:
    return (
        REGISTRY.get_sample_value(
            "herald_datagrams_total", {"service": "ingest", "outcome": "over_limit"}
        )
        or 0.0
    )


def test_the_limit_counts_a_fixed_window_that_starts_with_its_first_datagram() -> None:
    now = [1000.0]
    limit = IntakeLimit(2, clock=lambda: now[0])
    assert [limit.take(), limit.take(), limit.take()] == [True, True, False]
    now[0] += WINDOW - 0.001
    assert not limit.take()  # still the window that began at 1000
    now[0] = 1000.0 + WINDOW + 5
    assert [limit.take(), limit.take(), limit.take()] == [True, True, False]
    assert IntakeLimit(None).take()  # no limit


def test_the_limit_warns_once_per_task_and_window() -> None:
    now = [0.0]
    limit = IntakeLimit(1, clock=lambda: now[0])
    limit.take()
    assert limit.first_in_window("a")
    assert not limit.first_in_window("a")
    assert limit.first_in_window("b")
    now[0] += WINDOW
    limit.take()
    assert limit.first_in_window("a")


async def test_datagrams_over_the_limit_are_dead_lettered_counted_and_named_never_published(
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = over_limit()
    flood = [datagram("failed", str(uuid.uuid4())) for _ in range(5)]
    repeat = flood[0]  # a duplicate uses no budget and is no dead letter
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as seen,
        running_ingest(broker_settings, tmp_path, max_datagrams_per_minute=3) as ingest,
    ):
        with caplog.at_level(logging.WARNING, logger="herald_ingest.service"):
            send(ingest, *flood, repeat)
            await seen.wait_for(
                lambda s: (
                    len(published(s)) == 3
                    and sum("/v1/dead-letter/ingest" in m.topic for m in s) == 2
                )
            )
    letters = [json.loads(m.payload) for m in seen.seen if "/v1/dead-letter/ingest" in m.topic]
    delivered = {event.execution.id for event in published(seen.seen)}
    dead = {letter["payload"].split(";")[9] for letter in letters}
    assert delivered | dead == {d.decode().split(";")[9] for d in flood}
    assert not delivered & dead
    assert all("max_datagrams_per_minute (3 datagrams in 60 s)" in m["reason"] for m in letters)
    assert over_limit() - before == 2
    warnings = [r.getMessage() for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert len(warnings) == 1  # one per task and window, the rest are counted
    assert "'Manually triggered reload of Test failing reloads 2'" in warnings[0]


async def test_the_udp_status_topic_hears_start_when_the_socket_is_open(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    topic = f"{topic_prefix}/butler/task_failure_server"
    async with (
        Observer(mosquitto.host, mosquitto.port, topic) as seen,
        running_ingest(broker_settings, tmp_path, udp_status_topic=topic),
    ):
        await seen.wait_for(lambda s: len(s) == 1)
    assert [(m.topic, m.payload) for m in seen.seen] == [(topic, b"start")]


async def test_the_udp_status_topic_hears_error_when_the_port_is_taken(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    topic = f"{topic_prefix}/butler/task_failure_server"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        settings = IngestSettings.model_validate(
            {
                "state_dir": str(tmp_path),
                "udp": {"host": "127.0.0.1", "port": taken.getsockname()[1]},
                "udp_status_topic": topic,
            }
        )
        service = IngestService(
            IngestConfig(ingest=settings, qlik=unreachable_qlik()), broker_settings
        )
        async with Observer(mosquitto.host, mosquitto.port, topic) as seen:
            with pytest.raises(OSError, match="in use"):
                await service.start()
            await seen.wait_for(lambda s: len(s) == 1)
    assert [m.payload for m in seen.seen] == [b"error"]
