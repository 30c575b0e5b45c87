"""Ingest as a whole, against a real Mosquitto, with the QRS unreachable (enrichment is tested
against the Qlik Sense stand-in in test_enrichment.py)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from herald_ingest.listener import Address, SourceFilter
from herald_ingest.service import IngestConfig, IngestService
from herald_ingest.settings import IngestSettings, QlikSettings
from herald_shared import events
from herald_shared.settings import BrokerSettings
from herald_testkit import full_disk
from herald_testkit.fixtures import broker_settings_for
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer, Seen
from herald_testkit.ports import free_port
from herald_testkit.services import started
from herald_testkit.waiting import sample, wait_until

TASK_ID = "dec2a02a-1680-44ef-8dc2-e2bfb180af87"
APP_ID = "e7af59a0-c243-480d-9571-08727551a66f"
MESSAGES = {
    "failed": ("/scheduler-task-failed/", "Max retries reached"),
    "aborted": ("/scheduler-task-aborted/", "Execution State Change to Aborting"),
    "succeeded": ("/scheduler-task-success//", "Execution State Change to FinishedSuccess"),
}


def datagram(
    outcome: str,
    execution_id: str | None = None,
    *,
    task_id: str = TASK_ID,
    host: str = "pro2-win1",
    timestamp: str = "2021-02-16 09:24:59,099",
    padding: int = 0,
) -> bytes:
    message_type, message = MESSAGES[outcome]
    fields = [
        message_type,
        host,
        "Manually triggered reload of Test failing reloads 2",
        "Test failing reloads 2",
        "LAB\\goran",
        task_id,
        APP_ID,
        timestamp,
        "INFO",
        execution_id or str(uuid.uuid4()),
        message + " " * padding + "." * bool(padding),  # spaces: the parser keeps the message
    ]
    return ";".join(fields).encode()


def unreachable_qlik() -> QlikSettings:
    return QlikSettings.model_validate(
        {
            "qrs": {"url": f"https://127.0.0.1:{free_port()}", "attempts": 1, "timeout": 2},
            "qmc_url": "https://sense.example.com/qmc",
        }
    )


@contextlib.asynccontextmanager
async def running_ingest(
    broker: BrokerSettings, state_dir: Path, **ingest: Any
) -> AsyncIterator[IngestService]:
    settings = IngestSettings.model_validate(
        {"state_dir": str(state_dir), "udp": {"host": "127.0.0.1", "port": 0}, **ingest}
    )
    async with started(
        IngestService(IngestConfig(ingest=settings, qlik=unreachable_qlik()), broker)
    ) as service:
        yield service


def send(service: IngestService, *payloads: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for payload in payloads:
            sender.sendto(payload, ("127.0.0.1", service.udp_port))


def published(seen: list[Seen]) -> list[events.Event]:
    return [events.decode(m.payload) for m in seen if "/v1/events/" in m.topic]


def rejected(reason: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "herald_datagrams_rejected_total", {"service": "ingest", "reason": reason}
        )
        or 0.0
    )


async def test_a_failure_is_published_even_when_the_qrs_is_down(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    execution_id = str(uuid.uuid4())
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        running_ingest(broker_settings, tmp_path) as ingest,
    ):
        send(ingest, datagram("failed", execution_id))
        await seen.wait_for(lambda s: len(s) == 1)
    [message] = seen.seen
    assert message.topic == f"{topic_prefix}/v1/events/task_failed/reload/{TASK_ID}"
    [event] = published(seen.seen)
    assert isinstance(event, events.TaskFailed)
    assert event.event_id == events.event_id_for("task_failed", execution_id)
    assert event.task.name == "Manually triggered reload of Test failing reloads 2"
    assert event.app is not None
    assert event.app.name == "Test failing reloads 2"
    assert event.user == "LAB\\goran"
    assert event.log_timestamp == "2021-02-16 09:24:59,099"
    assert event.log_message == "Max retries reached"
    assert event.sense_host == "pro2-win1"
    assert event.links.qmc == "https://sense.example.com/qmc"
    assert event.enrichment.status == "partial"
    assert any(reason.startswith("task lookup failed") for reason in event.enrichment.reasons)


async def test_the_same_datagram_from_two_nodes_is_one_event_even_after_a_restart(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    execution_id = str(uuid.uuid4())
    async with Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen:
        async with running_ingest(broker_settings, tmp_path) as ingest:
            send(
                ingest,
                datagram("failed", execution_id, host="sense-node-1"),
                datagram("failed", execution_id, host="sense-node-2"),
            )
            await seen.wait_for(lambda s: len(s) == 1)
        async with running_ingest(broker_settings, tmp_path) as ingest:
            marker = str(uuid.uuid4())
            send(
                ingest,
                datagram("failed", execution_id, host="sense-node-3"),
                datagram("aborted", marker),
            )
            await seen.wait_for(lambda s: len(s) == 2)
    ids = [event.event_id for event in published(seen.seen)]
    assert ids == [
        events.event_id_for("task_failed", execution_id),
        events.event_id_for("task_aborted", marker),
    ]


async def test_a_success_after_a_failure_carries_recovers(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    failed_execution = str(uuid.uuid4())
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        running_ingest(broker_settings, tmp_path) as ingest,
    ):
        send(
            ingest,
            datagram("succeeded"),
            datagram("failed", failed_execution),
            datagram("succeeded"),
        )
        await seen.wait_for(lambda s: len(s) == 3)
    first_success, failure, recovery = published(seen.seen)
    assert isinstance(first_success, events.TaskSucceeded)
    assert first_success.recovers is None
    assert isinstance(failure, events.TaskFailed)
    assert isinstance(recovery, events.TaskSucceeded)
    assert recovery.recovers is not None
    assert recovery.recovers.event_id == events.event_id_for("task_failed", failed_execution)
    assert recovery.recovers.kind == "task_failed"


async def test_datagrams_from_outside_the_allowed_sources_are_dropped_and_counted(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    before_source, before_format = rejected("source"), rejected("unknown_type")
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        running_ingest(broker_settings, tmp_path, allowed_sources=["10.0.0.0/8", "::1"]) as ingest,
    ):
        send(ingest, datagram("failed"), datagram("aborted"))
        async with asyncio.timeout(10):
            while rejected("source") - before_source < 2:
                await asyncio.sleep(0.02)
    assert seen.seen == []
    assert rejected("unknown_type") == before_format
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        running_ingest(broker_settings, tmp_path / "2", allowed_sources=["127.0.0.0/8"]) as ingest,
    ):
        send(ingest, b"\xff\xfe not a datagram", b"/scheduler-task-exploded/;x", datagram("failed"))
        await seen.wait_for(lambda s: len(s) == 1)
    assert rejected("unknown_type") == before_format + 1


async def test_allowed_sources_take_host_names_as_butler_does(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    """A Butler list of node names carries over: ``localhost`` lets 127.0.0.1 in; a name that
    resolves to nothing lets nothing in; a malformed entry is a configuration error."""
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        running_ingest(broker_settings, tmp_path, allowed_sources=["localhost"]) as ingest,
    ):
        send(ingest, datagram("failed"))
        await seen.wait_for(lambda s: len(s) == 1)
    before = rejected("source")
    async with running_ingest(
        broker_settings, tmp_path / "2", allowed_sources=["no-such-sense-node.invalid"]
    ) as ingest:
        send(ingest, datagram("failed"))
        async with asyncio.timeout(10):
            while rejected("source") == before:
                await asyncio.sleep(0.02)
    with pytest.raises(
        ValueError, match="'sense 01' is not an IP address, CIDR range or host name"
    ):
        IngestSettings.model_validate({"allowed_sources": ["sense 01"]})


async def test_a_host_name_in_allowed_sources_is_resolved_again() -> None:
    """A node that moves to a new address is let in once the name is resolved again."""
    answers = {"sense-01": {ipaddress.ip_address("10.0.0.1")}}

    async def resolver(name: str) -> set[Address]:
        return answers[name]

    sources = SourceFilter(["sense-01", "192.168.0.0/16"], resolver)
    await sources.refresh()
    assert sources.allows(ipaddress.ip_address("10.0.0.1"))
    assert sources.allows(ipaddress.ip_address("::ffff:10.0.0.1"))
    assert sources.allows(ipaddress.ip_address("192.168.3.4"))
    assert not sources.allows(ipaddress.ip_address("10.0.0.2"))
    answers["sense-01"] = {ipaddress.ip_address("10.0.0.2")}
    await sources.refresh()
    assert sources.allows(ipaddress.ip_address("10.0.0.2"))
    assert not sources.allows(ipaddress.ip_address("10.0.0.1"))


OUTAGE = 10.0  # seconds without a broker; ingest's reconnect backoff reaches its 1 s limit in 2


@pytest.mark.slow
async def test_a_broker_outage_during_a_stream_loses_and_doubles_nothing(
    private_mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    """The broker is away for OUTAGE seconds while 500 datagrams arrive; all 500 are published
    once. With the tests' reconnect backoff (0.1 s doubling up to 1 s) ingest has long been
    retrying at its slowest by the time the broker is back."""
    broker = broker_settings_for(private_mosquitto, topic_prefix)
    executions = [str(uuid.uuid4()) for _ in range(500)]
    async with (
        Observer(
            private_mosquitto.host,
            private_mosquitto.port,
            f"{topic_prefix}/v1/events/#",
            persistent=True,
        ) as seen,
        running_ingest(broker, tmp_path) as ingest,
    ):
        private_mosquitto.stop()
        outage_started = time.monotonic()
        for n, execution_id in enumerate(executions):  # 500 over about 5 s
            send(ingest, datagram("failed" if n % 2 else "aborted", execution_id))
            await asyncio.sleep(0.01)
        async with asyncio.timeout(30):
            while ingest.outbox.depth() < len(executions):
                await asyncio.sleep(0.05)
        await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - outage_started)))
        private_mosquitto.start()
        await seen.wait_for(lambda s: len(s) >= len(executions), within=60)
        await asyncio.sleep(1)  # anything doubled would arrive now
    ids = [event.event_id for event in published(seen.seen)]
    assert len(ids) == len(executions)
    assert sorted(ids) == sorted(
        events.event_id_for("task_failed" if n % 2 else "task_aborted", e)
        for n, e in enumerate(executions)
    )


async def test_ingest_listens_on_ipv6_and_ipv4_at_once(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    settings = IngestSettings.model_validate(
        {
            "state_dir": str(tmp_path),
            "udp": {"host": "::", "port": 0},
            "allowed_sources": ["::1", "127.0.0.1"],
        }
    )
    service = IngestService(IngestConfig(ingest=settings, qlik=unreachable_qlik()), broker_settings)
    await service.start()
    try:
        async with Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen:
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as over_ipv6:
                over_ipv6.sendto(datagram("failed"), ("::1", service.udp_port))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as over_ipv4:
                over_ipv4.sendto(datagram("aborted"), ("127.0.0.1", service.udp_port))
            await seen.wait_for(lambda s: len(s) == 2)
    finally:
        await service.stop()
    assert sorted(event.kind for event in published(seen.seen)) == ["task_aborted", "task_failed"]


async def test_a_datagram_from_a_node_whose_clock_was_reset_is_published_at_its_receive_time(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    """It used to make event building raise "year 0 is out of range", and was retried forever."""
    reset, valid = str(uuid.uuid4()), str(uuid.uuid4())
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        running_ingest(broker_settings, tmp_path) as ingest,
    ):
        before = time.time()
        send(
            ingest,
            datagram("failed", reset, timestamp="0001-01-01 00:00:00,000"),
            datagram("aborted", valid),
        )
        await seen.wait_for(lambda s: len(s) == 2)
    by_execution = {event.execution.id: event for event in published(seen.seen)}
    event = by_execution[reset]
    assert event.log_timestamp == "0001-01-01 00:00:00,000"  # what the node's clock said
    assert event.occurred_at == event.received_at
    assert event.received_at.timestamp() >= before - 1
    assert event.enrichment.status == "partial"
    assert any("0001-01-01" in reason for reason in event.enrichment.reasons)
    assert by_execution[valid].occurred_at.year == 2021


def datagrams_total(outcome: str) -> float:
    return sample("herald_datagrams_total", service="ingest", outcome=outcome)


# A datagram this long needs a page of its own, so none of them fits in what the database has.
LONG = 5000


async def test_datagrams_the_full_state_disk_will_not_take_are_published_once_it_has_room(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    executions = [str(uuid.uuid4()) for _ in range(20)]
    unstored = datagrams_total("unstored")
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        running_ingest(broker_settings, tmp_path) as ingest,
    ):
        full_disk.fill(ingest.db)
        send(ingest, *(datagram("failed", e, padding=LONG) for e in executions))
        await wait_until(lambda: datagrams_total("unstored") - unstored == 20)
        ready, why = ingest.readiness()
        assert not ready
        assert "database or disk is full" in why
        assert "20 held in memory" in why
        assert seen.seen == []
        full_disk.make_room(ingest.db)
        await seen.wait_for(lambda s: len(s) == 20)
        await wait_until(lambda: ingest.readiness()[0])
    assert sorted(event.execution.id for event in published(seen.seen)) == sorted(executions)
    assert datagrams_total("unstored") - unstored == 20


async def test_datagrams_beyond_the_memory_for_unstored_ones_are_counted_as_lost_and_logged(
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    executions = [str(uuid.uuid4()) for _ in range(20)]
    size = len(datagram("failed", executions[0], padding=LONG))
    lost, unstored = datagrams_total("lost"), datagrams_total("unstored")
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        running_ingest(broker_settings, tmp_path, unstored_buffer_bytes=3 * size) as ingest,
    ):
        full_disk.fill(ingest.db)
        send(ingest, *(datagram("failed", e, padding=LONG) for e in executions))
        await wait_until(lambda: datagrams_total("lost") - lost == 17)
        assert "17 lost" in ingest.readiness()[1]
        full_disk.make_room(ingest.db)
        await seen.wait_for(lambda s: len(s) == 3)
    assert datagrams_total("unstored") - unstored == 3
    assert sorted(event.execution.id for event in published(seen.seen)) == sorted(executions[:3])
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "lost" in r.getMessage()]
    assert errors
    assert "ingest.unstored_buffer_bytes" in errors[0].getMessage()
