"""The v2 write path against a real VictoriaMetrics, the v3 path against a checking stand-in,
and tokens that never leak."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest

from herald_metrics_writer.destinations.influxdb import InfluxDbSettings, InfluxDestination
from herald_metrics_writer.line_protocol import timestamp_ns
from herald_metrics_writer.settings import MetricsWriterSettings
from herald_shared import samples
from herald_shared.config import ConfigDocument, ConfigError
from herald_shared.delivery.destination import PermanentError
from herald_testkit import contract
from herald_testkit.http import Answer, HttpReceiver
from herald_testkit.influxdb_v3 import InfluxDB3StandIn
from herald_testkit.victoria_metrics import VictoriaMetrics

V2_TOKEN = "v2-token-s3cr3t-0123456789"
V3_TOKEN = "v3-token-s3cr3t-9876543210"


async def test_v2_writes_reach_victoria_metrics_with_the_events_time(
    victoria_metrics: VictoriaMetrics,
) -> None:
    settings = InfluxDbSettings.model_validate(
        {
            "version": 2,
            "url": victoria_metrics.url,
            "v2": {"org": "qlik", "bucket": "butler", "token": V2_TOKEN},
            "flush_interval": 0.05,
        }
    )
    destination = InfluxDestination(settings, "metrics-writer")
    await destination.start()
    try:
        # VictoriaMetrics 1.79 splits lines at every newline, even inside a quoted string
        # field (InfluxDB does not), so it drops points with a multi-line script log: the
        # event without a script log has none.
        event = samples.sample_partial()
        detail = await destination.deliver(event, "")
    finally:
        await destination.close()
    assert detail is not None
    assert "/api/v2/write" in detail
    assert V2_TOKEN not in detail

    [series] = victoria_metrics.export('{__name__="reload_task_failed_task_scriptLogSize"}')
    assert series["values"] == [0]
    assert series["timestamps"] == [timestamp_ns(event.occurred_at) // 1_000_000]
    labels = series["metric"]
    assert labels["task_exeuctionStatusText"] == "Script log not available"
    assert labels["task_id"] == "3f1c9a52-7d0e-4d2b-9a8e-0b7c1e2d4f60"
    assert labels["user"] == "INTERNAL/sa_scheduler"
    # String fields arrive too (VictoriaMetrics keeps them as 0).
    assert victoria_metrics.export('{__name__="reload_task_failed_scriptLog"}')


async def test_v3_writes_the_request_influxdb_3_expects() -> None:
    async with InfluxDB3StandIn(database="butler", token=V3_TOKEN) as server:
        settings = InfluxDbSettings.model_validate(
            {
                "version": 3,
                "url": server.url,
                "v3": {"database": "butler", "token": V3_TOKEN},
                "flush_interval": 0.05,
            }
        )
        destination = InfluxDestination(settings, "metrics-writer")
        await destination.start()
        try:
            await destination.deliver(samples.sample_failed(), "")
            await destination.deliver(samples.sample_succeeded(), "")
        finally:
            await destination.close()
    assert [r.status for r in server.requests] == [204, 204]
    request = server.requests[0]
    assert request.query == {"db": "butler", "precision": "nanosecond"}
    assert request.authorization == f"Bearer {V3_TOKEN}"
    failed, succeeded = server.points
    assert failed.measurement == "reload_task_failed"
    assert failed.time_ns == timestamp_ns(samples.sample_failed().occurred_at)
    assert failed.tags["task_exeuctionStatusText"] == "FinishedFail"
    assert failed.fields["task_executionDuration_sec"] == 19.0
    assert isinstance(failed.fields["scriptLog"], str)
    assert "\r\n" in failed.fields["scriptLog"]
    assert succeeded.measurement == "reload_task_success"


async def test_a_wrong_token_is_permanent_and_never_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with InfluxDB3StandIn(database="butler", token="the-right-one") as server:
        settings = InfluxDbSettings.model_validate(
            {
                "version": 3,
                "url": server.url,
                "v3": {"database": "butler", "token": V3_TOKEN},
                "flush_interval": 0.05,
            }
        )
        destination = InfluxDestination(settings, "metrics-writer")
        await destination.start()
        try:
            with pytest.raises(PermanentError) as raised:
                await destination.deliver(samples.sample_failed(), "")
        finally:
            await destination.close()
    assert "401" in raised.value.reason
    contract.assert_hidden(
        [V3_TOKEN], reason=raised.value.reason, log=caplog.text, settings=settings
    )


def test_tokens_come_from_files_and_versions_need_their_keys(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(V2_TOKEN + "\n")
    document = ConfigDocument(
        path=Path("herald.yaml"),
        data={
            "metrics_writer": {
                "influxdb": {
                    "version": 2,
                    "url": "https://influx.example.com:8086",
                    "v2": {"org": "o", "bucket": "b", "token_file": str(token_file)},
                }
            }
        },
    )
    settings = document.section("metrics_writer", MetricsWriterSettings)
    token = settings.influxdb.v2.token
    assert token is not None
    assert token.get_secret_value() == V2_TOKEN

    missing = ConfigDocument(
        path=Path("herald.yaml"), data={"metrics_writer": {"influxdb": {"version": 3}}}
    )
    with pytest.raises(ConfigError, match=r"version 3 needs v3\.database and v3\.token"):
        missing.section("metrics_writer", MetricsWriterSettings)
    unknown = ConfigDocument(
        path=Path("herald.yaml"), data={"metrics_writer": {"influxdb": {"hostIP": "x"}}}
    )
    with pytest.raises(ConfigError, match="hostIP"):
        unknown.section("metrics_writer", MetricsWriterSettings)


async def _write_one_v1_point(influx: HttpReceiver, password: str) -> tuple[InfluxDbSettings, str]:
    """One failed reload written by a v1 destination with basic auth; its settings and detail."""
    settings = InfluxDbSettings.model_validate(
        {
            "version": 1,
            "url": influx.url,
            "v1": {"database": "butler", "username": "herald", "password": password},
            "flush_interval": 0.05,
        }
    )
    destination = InfluxDestination(settings, "metrics-writer")
    await destination.start()
    try:
        detail = await destination.deliver(samples.sample_failed(), "")
    finally:
        await destination.close()
    create, write = influx.requests
    assert create.path.startswith("/query?q=CREATE+DATABASE")
    assert write.path.startswith("/write?db=butler")
    assert detail is not None
    return settings, detail


async def test_v1_credentials_go_as_basic_auth_and_never_into_the_receipt() -> None:
    async with HttpReceiver() as influx:  # answers 200: all a v1 write needs to be stored
        settings, detail = await _write_one_v1_point(influx, "v1-p4ssw0rd")
    create, write = influx.requests
    expected = "Basic " + base64.b64encode(b"herald:v1-p4ssw0rd").decode()
    assert {create.headers["Authorization"], write.headers["Authorization"]} == {expected}
    contract.assert_hidden(["v1-p4ssw0rd"], detail=detail, settings=settings)


async def test_a_v1_user_without_admin_rights_still_writes_when_create_database_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # InfluxDB 1.x answers CREATE DATABASE with 403 for a user that may only write; the
    # database an administrator made is there, so the writes must go on.
    async with HttpReceiver() as influx:
        influx.respond_with(Answer(403, '{"error":"error authorizing query: requires admin"}'))
        influx.default = Answer(204, "")
        _, detail = await _write_one_v1_point(influx, "w-p4ss")
    assert "reload_task_failed" in detail
    [warning] = [r.getMessage() for r in caplog.records if "CREATE DATABASE" in r.getMessage()]
    assert "/query (CREATE DATABASE butler) answered 403: " in warning
    assert "metrics_writer.influxdb.v1.create_database" in warning
