"""Butler's task_execution{Start,Stop}Time_json carry local times: in the site's time zone
(influxdb.timezone, else qlik.timezone), UTC when none is configured, as before."""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

from herald_metrics_writer import butler_schema
from herald_metrics_writer.service import configure
from herald_shared import config
from herald_shared.samples import sample_failed


def _start(options: butler_schema.SchemaOptions) -> dict[str, str]:
    point = butler_schema.point(sample_failed(), options)
    assert point is not None
    start: dict[str, str] = json.loads(str(point.fields["task_executionStartTime_json"]))
    return start


def test_the_json_times_are_in_the_configured_zone() -> None:
    start = _start(butler_schema.SchemaOptions(zone=ZoneInfo("Europe/Stockholm")))
    assert start["startTimeUTC"] == "2021-02-16T08:24:40.000Z"
    assert start["startTimeLocal1"] == "2021-02-16 09:24:40"
    assert start["startTimeLocal4"] == "February 16, 2021 at 9:24:40 AM GMT+1"


def test_without_a_zone_they_stay_utc() -> None:
    start = _start(butler_schema.SchemaOptions())
    assert start["startTimeLocal1"] == "2021-02-16 08:24:40"
    assert start["startTimeLocal4"] == "February 16, 2021 at 8:24:40 AM UTC"


def test_the_zone_defaults_to_qlik_timezone_and_influxdb_timezone_wins(tmp_path: Path) -> None:
    path = tmp_path / "herald.yaml"
    path.write_text("qlik: {timezone: Europe/Stockholm}\nmetrics_writer: {}\n")
    assert configure(config.load(path, environ={})).influxdb.timezone == "Europe/Stockholm"
    path.write_text(
        "qlik: {timezone: Europe/Stockholm}\nmetrics_writer: {influxdb: {timezone: Asia/Tokyo}}\n"
    )
    assert configure(config.load(path, environ={})).influxdb.timezone == "Asia/Tokyo"
