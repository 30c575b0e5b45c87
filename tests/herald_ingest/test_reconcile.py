"""The reconciliation sweep against the Qlik Sense stand-in and a real Mosquitto: runs whose
datagram never arrived are alerted once, whichever of datagram and sweep comes first, and the
sweep costs the QRS one request when nothing happened."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from herald_ingest.lease import Claim
from herald_ingest.service import IngestConfig, IngestService
from herald_ingest.settings import IngestSettings, QlikSettings
from herald_qlik_sim import QlikSim, emitter
from herald_qlik_sim import data as sim_data
from herald_qlik_sim.model import Execution, Outcome
from herald_shared import events
from herald_shared.settings import BrokerSettings
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer, Seen
from herald_testkit.services import started
from herald_testkit.waiting import wait_until

RELOAD_TASKS = (
    sim_data.TASK_FAILED_ID,
    sim_data.TASK_ABORTED_ID,
    sim_data.TASK_SUCCEEDED_ID,
    sim_data.TASK_NO_OWNER_EMAIL_ID,
)
LIST_CALLS = ("executionresult_count", "executionresult_full")


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[QlikSim]:
    async with QlikSim(tmp_path / "certs") as running:
        yield running


@contextlib.asynccontextmanager
async def ingest_for(
    sim: QlikSim,
    broker: BrokerSettings,
    tmp_path: Path,
    allowed_sources: list[str] | None = None,
    **reconcile: Any,
) -> AsyncIterator[IngestService]:
    """Ingest on the sim; ``enabled: false`` leaves the sweeps to the test (``sweep.once()``)."""
    qlik = QlikSettings.model_validate(
        {
            "qrs": {
                "url": sim.origin,
                "client_cert": str(sim.certs.client),
                "client_key": str(sim.certs.client_key),
                "ca_cert": str(sim.certs.root),
                "attempts": 1,
            }
        }
    )
    sources = {"allowed_sources": allowed_sources} if allowed_sources else {}
    settings = IngestSettings.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "udp": {"host": "127.0.0.1", "port": 0},
            "reconcile": {"interval": "1h", **reconcile},  # at start, then by hand
            **sources,
        }
    )
    async with started(IngestService(IngestConfig(ingest=settings, qlik=qlik), broker)) as ingest:
        yield ingest


def fail_silently(sim: QlikSim, count: int, *, ago: timedelta = timedelta()) -> list[Execution]:
    """Failed runs of the sim's reload tasks that no datagram reports."""
    start = datetime.now(UTC) - ago - timedelta(seconds=10)
    return [
        sim.record("failed", RELOAD_TASKS[n % len(RELOAD_TASKS)], start=start if ago else None)
        for n in range(count)
    ]


def send(sim: QlikSim, ingest: IngestService, outcome: Outcome, *runs: Execution) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for run in runs:
            task = sim.site.tasks[run.task_id]
            item = emitter.datagram(
                outcome, task, sim.site.app_of(task), execution_id=run.execution_id
            )
            sender.sendto(item.encode(), ("127.0.0.1", ingest.udp_port))


async def settled(sim: QlikSim, ingest: IngestService, seen: Observer) -> list[events.Event]:
    """Every event published so far: a sentinel datagram sent last arrives after all of them."""
    sentinel = sim.record("aborted")
    send(sim, ingest, "aborted", sentinel)
    await seen.wait_for(lambda s: any(_execution_of(m) == sentinel.execution_id for m in s))
    published = [events.decode(m.payload) for m in seen.seen if "/v1/events/" in m.topic]
    return [e for e in published if e.execution.id != sentinel.execution_id]


def _execution_of(message: Seen) -> str:
    return events.decode(message.payload).execution.id


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": "ingest", **labels}) or 0.0


async def test_runs_that_failed_while_ingest_was_stopped_are_alerted_once_after_it_starts(
    sim: QlikSim,
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
) -> None:
    async with ingest_for(sim, broker_settings, tmp_path) as ingest:
        await wait_until(lambda: ingest.sweep.checkpoint is not None)  # the sweep at start
    missed = fail_silently(sim, 50)  # no datagram reaches a stopped ingest
    before = metric("herald_reconcile_events_total")
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        ingest_for(sim, broker_settings, tmp_path) as ingest,
    ):
        await seen.wait_for(lambda s: len(s) >= 50, within=60)
        again = await ingest.sweep.once()
        published = await settled(sim, ingest, seen)
    assert again.published == 0
    expected = {events.event_id_for("task_failed", run.execution_id) for run in missed}
    assert Counter(e.event_id for e in published) == dict.fromkeys(expected, 1)
    by_execution = {run.execution_id: run for run in missed}
    for event in published:
        assert isinstance(event, events.TaskFailed)
        assert event.source == "reconcile"
        assert event.enrichment.status == "complete", event.enrichment.reasons
        run = by_execution[event.execution.id]
        assert event.task.id == run.task_id
        assert event.task.name == sim.site.tasks[run.task_id].name
        assert (event.execution.result_id, event.execution.status) == (run.id, "FinishedFail")
        assert event.script_log is not None
        assert event.occurred_at == run.stop.astimezone(UTC).replace(
            microsecond=run.stop.microsecond // 1000 * 1000
        )
    assert metric("herald_reconcile_events_total") - before == 50


async def test_datagrams_and_the_sweep_racing_over_the_same_failures_alert_each_once(
    sim: QlikSim,
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
) -> None:
    runs = fail_silently(sim, 200)
    first, second, third = runs[:70], runs[70:140], runs[140:]
    sim.faults.latency = 0.02  # widens the window in which both paths are at work
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        ingest_for(sim, broker_settings, tmp_path, enabled=False) as ingest,
    ):
        send(sim, ingest, "failed", *first)  # datagrams first
        # Racing: the sweep reads and enriches while these datagrams arrive.
        sweep = asyncio.create_task(ingest.sweep.once())
        for run in second:
            send(sim, ingest, "failed", run)
            await asyncio.sleep(0.01)
        report = await sweep
        send(sim, ingest, "failed", *third, *second)  # after the sweep: all duplicates
        assert (await ingest.sweep.once()).published == 0
        published = await settled(sim, ingest, seen)
    expected = {events.event_id_for("task_failed", run.execution_id) for run in runs}
    assert Counter(e.event_id for e in published) == dict.fromkeys(expected, 1)
    sources = {e.execution.id: e.source for e in published}
    assert {sources[run.execution_id] for run in first} == {"udp"}
    assert {sources[run.execution_id] for run in third} == {"reconcile"}
    assert report.published == sum(1 for source in sources.values() if source == "reconcile")


async def test_a_qrs_down_during_a_sweep_keeps_the_checkpoint_and_the_next_sweep_catches_up(
    sim: QlikSim,
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
) -> None:
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        ingest_for(sim, broker_settings, tmp_path, enabled=False) as ingest,
    ):
        await ingest.sweep.once()
        checkpoint = ingest.sweep.checkpoint
        assert checkpoint is not None
        missed = fail_silently(sim, 10)
        failed_before = metric("herald_reconcile_sweeps_total", outcome="failed")
        sim.faults.fail_rate = 1.0
        sim.faults.endpoints = set(LIST_CALLS)
        down = await ingest.sweep.once()
        assert ingest.sweep.checkpoint == checkpoint
        assert metric("herald_reconcile_sweeps_total", outcome="failed") - failed_before == 1
        sim.faults.clear()
        back = await ingest.sweep.once()
        published = await settled(sim, ingest, seen)
        assert ingest.sweep.checkpoint is not None
        assert ingest.sweep.checkpoint > checkpoint
    assert down.published == 0
    assert back.published == 10
    assert sorted(e.execution.id for e in published) == sorted(r.execution_id for r in missed)


async def test_a_first_start_does_not_alert_failures_older_than_the_lookback(
    sim: QlikSim,
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
) -> None:
    fail_silently(sim, 5, ago=timedelta(hours=3))
    [recent] = fail_silently(sim, 1, ago=timedelta(minutes=30))
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        ingest_for(sim, broker_settings, tmp_path, lookback="1h") as ingest,
    ):
        await wait_until(lambda: ingest.sweep.checkpoint is not None)
        published = await settled(sim, ingest, seen)
    assert [(e.execution.id, e.source) for e in published] == [(recent.execution_id, "reconcile")]


async def test_an_idle_sweep_costs_the_qrs_one_request_and_a_busy_one_pages(
    sim: QlikSim,
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
) -> None:
    async with ingest_for(sim, broker_settings, tmp_path, enabled=False, page_size=10) as ingest:
        idle = [await ingest.sweep.once() for _ in range(3)]  # the sim's history is from 2024
        assert [report.requests for report in idle] == [1, 1, 1]
        assert sim.calls.counts() == {"executionresult_count": 3}  # and nothing else
        # 30 runs, one a minute: more than a page, so the sweep splits its window.
        for minute in range(30):
            sim.record("failed", start=datetime.now(UTC) - timedelta(minutes=minute, seconds=30))
    sim.calls.clear()
    # A first start looks back an hour: the 30 runs are in its window.
    async with ingest_for(
        sim, broker_settings, tmp_path / "first-start", enabled=False, page_size=10
    ) as ingest:
        busy = await ingest.sweep.once()
    list_calls = sum(sim.calls[name] for name in LIST_CALLS)
    print(f"idle sweep: 1 request; 30 new runs, pages of 10: {list_calls} requests {busy.pages}")
    assert busy.requests == list_calls
    assert sum(busy.pages) == 30 == busy.published
    assert max(busy.pages) <= 10
    assert sim.calls["executionresult_full"] == len(busy.pages) <= 2 * math.ceil(30 / 10)
    assert list_calls <= 1 + 3 * math.ceil(30 / 10)


async def test_datagrams_refused_for_a_stretch_are_alerted_by_the_next_sweep(
    sim: QlikSim,
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
) -> None:
    refused_before = metric("herald_datagrams_rejected_total", reason="source")
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        ingest_for(
            sim, broker_settings, tmp_path, enabled=False, allowed_sources=["10.0.0.0/8"]
        ) as ingest,
    ):
        runs = fail_silently(sim, 5)
        send(sim, ingest, "failed", *runs)  # from 127.0.0.1: not an allowed source
        await wait_until(
            lambda: metric("herald_datagrams_rejected_total", reason="source") - refused_before == 5
        )
        assert (await ingest.sweep.once()).published == 5
        assert (await ingest.sweep.once()).published == 0
        sentinel = sim.record("aborted")  # published after the others, by a third sweep
        await ingest.sweep.once()
        await seen.wait_for(lambda s: any(_execution_of(m) == sentinel.execution_id for m in s))
    published = [events.decode(m.payload) for m in seen.seen]
    assert sorted(e.execution.id for e in published[:-1]) == sorted(r.execution_id for r in runs)
    assert published[-1].execution.id == sentinel.execution_id
    assert {e.source for e in published} == {"reconcile"}


async def test_the_sweep_asks_only_for_the_outcomes_it_is_configured_for(
    sim: QlikSim,
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
) -> None:
    sim.record("succeeded")
    [failed] = fail_silently(sim, 1)
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        ingest_for(sim, broker_settings, tmp_path, enabled=False, outcomes=["failed"]) as ingest,
    ):
        report = await ingest.sweep.once()
        published = await settled(sim, ingest, seen)
    assert (report.seen, report.published) == (1, 1)
    assert [e.execution.id for e in published] == [failed.execution_id]
    assert all("status eq 7" not in call.path for call in sim.calls.records)


async def test_two_ingests_sweep_the_qrs_once_and_the_other_takes_over_where_it_left_off(
    sim: QlikSim,
    mosquitto: Mosquitto,
    topic_prefix: str,
    broker_settings: BrokerSettings,
    tmp_path: Path,
) -> None:
    first = broker_settings.model_copy(update={"instance": "ingest-a"})
    second = broker_settings.model_copy(update={"instance": "ingest-b"})
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/events/#") as seen,
        # No overlap: the takeover below re-reads nothing of what ingest-a did.
        ingest_for(sim, second, tmp_path / "b", enabled=False, overlap=0) as b,
    ):
        async with ingest_for(sim, first, tmp_path / "a", enabled=False, overlap=0) as a:
            await a.sweep.once()  # ingest-a claims the lease
            await wait_until(lambda: b.sweep.follows is not None)
            missed = fail_silently(sim, 20)
            sim.calls.clear()
            assert (await b.sweep.once()).skipped
            assert len(sim.calls) == 0  # ingest-b left the QRS alone
            assert (await a.sweep.once()).published == 20
            checkpoint = a.sweep.checkpoint
            assert checkpoint is not None
            ms = int(checkpoint.timestamp() * 1000)
            await wait_until(lambda: (b.sweep.follows or Claim("", 0)).checkpoint_ms == ms)
            assert (await b.sweep.once()).skipped
            assert b.sweep.checkpoint == checkpoint  # ingest-b keeps up with ingest-a
        await wait_until(lambda: b.sweep.follows is None)  # ingest-a stopped: lease released
        later = fail_silently(sim, 10)
        takeover = await b.sweep.once()
        published = await settled(sim, b, seen)
    assert not takeover.skipped
    assert takeover.published == 10
    expected = {events.event_id_for("task_failed", r.execution_id) for r in missed + later}
    assert Counter(e.event_id for e in published) == dict.fromkeys(expected, 1)
