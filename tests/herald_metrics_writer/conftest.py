"""Real InfluxDB 1.x and VictoriaMetrics for the metrics writer's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from herald_testkit.influxdb import InfluxDB
from herald_testkit.victoria_metrics import VictoriaMetrics


@pytest.fixture(scope="module")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    """One InfluxDB per test module; tests keep apart by their own database."""
    with InfluxDB(tmp_path_factory.mktemp("influxdb")) as server:
        yield server


@pytest.fixture(scope="module")
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    with VictoriaMetrics(tmp_path_factory.mktemp("victoria")) as server:
        yield server
