"""Reload metrics on /metrics: valid for promtool, per task, and capped."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator

import msgspec
import pytest
from prometheus_client import REGISTRY, generate_latest

from herald_metrics_writer.destinations.prometheus import PrometheusDestination, PrometheusSettings
from herald_shared import samples
from herald_shared.events import Task

SERVICE = "metrics-writer"


@pytest.fixture
async def prometheus() -> AsyncIterator[PrometheusDestination]:
    destination = PrometheusDestination(
        PrometheusSettings(labels=["task_name", "stream"], max_series=3), SERVICE
    )
    await destination.start()
    yield destination
    await destination.close()


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"service": SERVICE, **labels})


async def test_outcomes_times_and_durations_per_task(prometheus: PrometheusDestination) -> None:
    failed = samples.sample_failed()
    await prometheus.deliver(failed, "")
    await prometheus.deliver(samples.sample_aborted(), "")
    succeeded = samples.sample_succeeded(recovers=failed)
    await prometheus.deliver(succeeded, "")

    task = {"task_name": failed.task.name, "stream": "Finance"}
    assert _value("herald_reload_outcomes_total", **task, outcome="failed") == 1
    assert _value("herald_reload_outcomes_total", **task, outcome="aborted") == 1
    assert _value("herald_reload_outcomes_total", **task, outcome="succeeded") == 1
    assert _value("herald_reload_last_failure_timestamp_seconds", **task) == (
        failed.occurred_at.timestamp()
    )
    assert _value("herald_reload_last_success_timestamp_seconds", **task) == (
        succeeded.occurred_at.timestamp()
    )
    assert _value("herald_reload_duration_seconds_count", **task, outcome="failed") == 1
    assert _value("herald_reload_duration_seconds_sum", **task, outcome="failed") == 19.099
    assert _value("herald_reload_duration_seconds_bucket", **task, outcome="failed", le="10.0") == 0
    assert _value("herald_reload_duration_seconds_bucket", **task, outcome="failed", le="30.0") == 1


async def test_promtool_accepts_the_metrics_output(prometheus: PrometheusDestination) -> None:
    for event in samples.sample_events():
        await prometheus.deliver(event, "")
    exposition = generate_latest(REGISTRY)
    assert b"herald_reload_outcomes_total" in exposition
    result = await asyncio.to_thread(
        subprocess.run,
        ["promtool", "check", "metrics"],
        input=exposition,
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


async def test_the_series_cap_holds_and_counts_what_it_dropped(
    prometheus: PrometheusDestination,
) -> None:
    base = samples.sample_failed()
    for n in range(10):
        event = msgspec.structs.replace(base, task=Task(id=f"task-{n}", name=f"Reload {n}"))
        detail = await prometheus.deliver(event, "")
        assert (detail is None) == (n < 3)
    assert len(prometheus.series) == 3
    assert _value("herald_reload_series_dropped_total") == 7
    exposition = generate_latest(REGISTRY).decode()
    counted = [
        line for line in exposition.splitlines() if line.startswith("herald_reload_outcomes_total{")
    ]
    assert len(counted) == 3
    # A task already counted keeps being counted.
    await prometheus.deliver(
        msgspec.structs.replace(base, task=Task(id="task-0", name="Reload 0")), ""
    )
    assert (
        _value(
            "herald_reload_outcomes_total", task_name="Reload 0", stream="Finance", outcome="failed"
        )
        == 2
    )
