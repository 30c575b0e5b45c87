"""The metrics writer as it runs: a real Mosquitto, events in, points in InfluxDB, receipts out."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import REGISTRY

from herald_metrics_writer.service import SERVICE, build
from herald_metrics_writer.settings import MetricsWriterSettings
from herald_shared import samples
from herald_shared.events import Event, event_id_for
from herald_shared.runtime import installed_service
from herald_shared.settings import BrokerSettings
from herald_testkit.influxdb import InfluxDB
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer, Seen
from herald_testkit.subscribers import ServiceUnderTest, publish_events

NAME = "metrics-writer"


def _failures(count: int) -> list[Event]:
    """``count`` failures of different executions, one second apart."""
    base = samples.sample_failed()
    found: list[Event] = []
    for n in range(count):
        execution_id = str(uuid.uuid4())
        found.append(
            msgspec.structs.replace(
                base,
                event_id=event_id_for("task_failed", execution_id),
                occurred_at=base.occurred_at + timedelta(seconds=n),
                execution=msgspec.structs.replace(base.execution, id=execution_id),
            )
        )
    return found


def _settings(
    tmp_path: Path, influx_url: str, database: str, **influx: Any
) -> MetricsWriterSettings:
    return MetricsWriterSettings.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "influxdb": {
                "url": influx_url,
                "v1": {"database": database},
                "flush_interval": 0.1,
                "timeout": 2.0,
                **influx,
            },
            "delivery": {"initial_backoff": 0.2, "max_backoff": 1.0, "shutdown_grace": 2.0},
        }
    )


_service = ServiceUnderTest(build, NAME)
_running, _receipts = _service.running, _service.receipts


def _delivered(prefix: str, count: int) -> Callable[[list[Seen]], bool]:
    def enough(seen: list[Seen]) -> bool:
        receipts = _receipts(seen, prefix)
        influx = {r.event_id for r in receipts if r.destination == "influxdb"}
        return len(influx) >= count and all(r.outcome == "delivered" for r in receipts)

    return enough


def _transient_writes() -> float:
    labels = {"service": NAME, "result": "transient_error"}
    return REGISTRY.get_sample_value("herald_influxdb_writes_total", labels) or 0.0


def _count(influxdb: InfluxDB, database: str) -> int:
    series = influxdb.query("SELECT COUNT(execution_id) FROM reload_task_failed", database)
    return int(series[0]["values"][0][1]) if series else 0


async def _eventually(condition: Callable[[], bool], within: float = 60.0) -> None:
    async def until() -> None:
        while not condition():
            await asyncio.sleep(0.1)

    await asyncio.wait_for(until(), within)


def test_the_service_is_registered() -> None:
    assert installed_service(NAME) is SERVICE
    assert SERVICE.section == "metrics_writer"


async def test_nothing_is_lost_or_doubled_while_influxdb_is_down(
    tmp_path: Path,
    mosquitto: Mosquitto,
    broker_settings: BrokerSettings,
    topic_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    influxdb = InfluxDB(tmp_path / "influxdb")  # not started yet: down from the beginning
    database = "butler"
    published = _failures(200)
    settings = _settings(tmp_path, influxdb.url, database)
    caplog.set_level(logging.WARNING)
    try:
        async with (
            Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as observer,
            _running(settings, broker_settings),
        ):
            before = _transient_writes()
            await publish_events(mosquitto, topic_prefix, *published)
            # Writes fail while it is down; the runner keeps retrying them.
            await _eventually(lambda: _transient_writes() >= before + 3)
            await asyncio.to_thread(influxdb.start)
            await observer.wait_for(_delivered(topic_prefix, 200), within=120)
            assert _count(influxdb, database) == 200
            receipts = [
                r for r in _receipts(observer.seen, topic_prefix) if r.destination == "influxdb"
            ]
            assert len(receipts) == 200
            assert {r.event_id for r in receipts} == {e.event_id for e in published}
            # Publish the same 200 again (a redelivery): they are recognised, not written twice.
            await publish_events(mosquitto, topic_prefix, *published[:20])
            await asyncio.sleep(1.0)
            assert _count(influxdb, database) == 200
    finally:
        influxdb.stop()
