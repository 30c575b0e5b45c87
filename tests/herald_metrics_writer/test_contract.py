"""InfluxDB v1, v2 and v3, and the Prometheus series, against the destination contract
(``herald_testkit.contract``)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from herald_metrics_writer.destinations import influxdb, prometheus
from herald_shared import samples
from herald_shared.delivery.destination import Context, Destination
from herald_shared.settings import BrokerSettings
from herald_testkit import contract
from herald_testkit.http import HttpReceiver

V1_PASSWORD = "v1-p4ssw0rd-contract"
V1_BASIC = base64.b64encode(f"herald:{V1_PASSWORD}".encode()).decode()
V2_TOKEN = "v2-token-s3cr3t-0123456789"
V3_TOKEN = "v3-token-s3cr3t-9876543210"
SECRETS = {1: [V1_PASSWORD, V1_BASIC], 2: [V2_TOKEN], 3: [V3_TOKEN]}
VERSIONS = {
    1: {"v1": {"database": "butler", "username": "herald", "password": V1_PASSWORD}},
    2: {"v2": {"org": "herald", "bucket": "butler", "token": V2_TOKEN}},
    3: {"v3": {"database": "butler", "token": V3_TOKEN}},
}
SAMPLE = samples.sample_failed()
CONTEXT = Context(service=contract.SERVICE, broker=BrokerSettings())


def _settings(version: int, url: str, timeout: float, when: Any) -> influxdb.InfluxDbSettings:
    return influxdb.InfluxDbSettings.model_validate(
        {
            "version": version,
            "url": url,
            "timeout": timeout,
            "batch_size": 1,  # every point its own write: the row answers that write
            **VERSIONS[version],
            **({} if when is None else {"when": when}),
        }
    )


def _influx(version: int) -> contract.Build:
    def build(
        url: str, *, timeout: float = 10.0, when: dict[str, Any] | None = None
    ) -> Destination:
        built = influxdb.destinations(_settings(version, url, timeout, when), CONTEXT)
        return built[0]

    return build


@pytest.fixture(params=sorted(VERSIONS), ids=lambda version: f"influxdb-v{version}")
def version(request: pytest.FixtureRequest) -> int:
    version: int = request.param
    return version


@pytest.mark.parametrize("row", contract.HTTP_STATUS_TABLE, ids=str)
async def test_every_status_means_what_the_contract_says(version: int, row: contract.Row) -> None:
    await contract.check_http_status(_influx(version), row, SAMPLE, SECRETS[version])


async def test_no_token_or_password_leaks(version: int, tmp_path: Path) -> None:
    settings = _settings(version, "http://127.0.0.1:1/", 10.0, None)
    await contract.check_http_secrets(
        _influx(version), SAMPLE, SECRETS[version], tmp_path, settings
    )


async def test_when_selects_the_events_and_each_point_is_one_delivery(
    version: int, tmp_path: Path
) -> None:
    async with HttpReceiver() as server:
        destination = _influx(version)(server.url, when=contract.selecting(SAMPLE))
        await contract.check_selection(destination, SAMPLE, [""], tmp_path)


async def test_prometheus_when_selects_the_events_it_counts(tmp_path: Path) -> None:
    settings = prometheus.PrometheusSettings.model_validate({"when": contract.selecting(SAMPLE)})
    [destination] = prometheus.destinations(settings, CONTEXT)
    await contract.check_selection(destination, SAMPLE, [""], tmp_path)
