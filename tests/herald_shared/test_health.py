"""/livez, /readyz and /metrics as a kubelet and Prometheus see them."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import pytest

from herald_shared import metrics
from herald_shared.health import HealthServer
from herald_shared.settings import HealthSettings


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture
async def health() -> AsyncIterator[HealthServer]:
    server = HealthServer(HealthSettings(host="127.0.0.1", port=0, stall_after=1.0))
    server.start()
    server.mark_started()
    yield server
    server.stop()


async def test_readiness_follows_every_check_and_says_why(health: HealthServer) -> None:
    state = {"connected": False}
    health.add_check("log-archiver", lambda: (state["connected"], "not connected to the broker"))
    health.add_check("ingest", lambda: (True, "listening"))
    status, body = await asyncio.to_thread(_get, health.port, "/readyz")
    assert status == 503
    assert "not ready: log-archiver: not connected to the broker" in body
    assert "ok: ingest: listening" in body
    state["connected"] = True
    status, _ = await asyncio.to_thread(_get, health.port, "/readyz")
    assert status == 200


async def test_liveness_fails_when_the_event_loop_is_stuck(health: HealthServer) -> None:
    assert (await asyncio.to_thread(_get, health.port, "/livez"))[0] == 200
    seen: list[tuple[int, str]] = []

    def probe_while_stuck() -> None:
        time.sleep(2.5)  # the loop has missed its heartbeats by now
        seen.append(_get(health.port, "/livez"))

    prober = threading.Thread(target=probe_while_stuck)
    prober.start()
    time.sleep(5)  # noqa: ASYNC251 - deliberately blocking the event loop
    prober.join()
    assert seen[0][0] == 503
    assert "event loop stalled" in seen[0][1]
    await asyncio.sleep(1.2)  # the heartbeat resumes
    assert (await asyncio.to_thread(_get, health.port, "/livez"))[0] == 200


async def test_metrics_are_served_in_the_prometheus_text_format(health: HealthServer) -> None:
    metrics.DELIVERIES.labels(
        service="health-test", destination="archive", outcome="delivered"
    ).inc()
    status, body = await asyncio.to_thread(_get, health.port, "/metrics")
    assert status == 200
    assert "# TYPE herald_deliveries_total counter" in body
    assert "# HELP herald_broker_connected" in body
    assert (
        'herald_deliveries_total{destination="archive",outcome="delivered",service="health-test"} 1.0'
        in body
    )
    assert (await asyncio.to_thread(_get, health.port, "/nowhere"))[0] == 404


async def test_a_process_is_not_ready_while_its_services_are_starting() -> None:
    server = HealthServer(HealthSettings(host="127.0.0.1", port=0))
    server.start()
    try:
        status, body = await asyncio.to_thread(_get, server.port, "/readyz")
        assert status == 503
        assert "starting" in body
        server.mark_started()
        assert (await asyncio.to_thread(_get, server.port, "/readyz"))[0] == 200
    finally:
        server.stop()
