"""Butler's measurements in a real InfluxDB 1.x, read back with InfluxQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from herald_metrics_writer.destinations.influxdb import InfluxDbSettings, InfluxDestination
from herald_metrics_writer.line_protocol import timestamp_ns
from herald_shared import samples
from herald_shared.delivery.destination import PermanentError, TransientError
from herald_shared.events import Event
from herald_testkit.influxdb import InfluxDB

TASK_ID = "dec2a02a-1680-44ef-8dc2-e2bfb180af87"
APP_ID = "e7af59a0-c243-480d-9571-08727551a66f"
DETAILS = (
    "2021-02-16T08:24:40.000Z\tChanging task state from Triggered to Started\n"
    "2021-02-16T08:24:40.000Z\tReference to scriptlog added\n"
    "2021-02-16T08:24:59.099Z\tChanging task state from Started to {status}\n"
)


def _settings(url: str, database: str, **overrides: Any) -> InfluxDbSettings:
    values: dict[str, Any] = {
        "url": url,
        "flush_interval": 0.05,
        "timeout": 2.0,
        "v1": {"database": database},
    }
    values.update(overrides)
    return InfluxDbSettings.model_validate(values)


@pytest.fixture
def database() -> str:
    return f"db_{uuid.uuid4().hex[:10]}"


async def _write(destination: InfluxDestination, *events: Event) -> None:
    for event in events:
        assert destination.targets(event), "the destination must want the event"
        await destination.deliver(event, "")


@pytest.fixture
async def destination(influxdb: InfluxDB, database: str) -> AsyncIterator[InfluxDestination]:
    settings = _settings(
        influxdb.url,
        database,
        static_tags={"env": "prod", "site": "overridden"},
        measurement_tags={"reload_task_failed": {"site": "lab", "severity": "high"}},
    )
    destination = InfluxDestination(settings, "metrics-writer")
    await destination.start()
    yield destination
    await destination.close()


def _field_types(influxdb: InfluxDB, database: str, measurement: str) -> dict[str, str]:
    [series] = influxdb.query(f"SHOW FIELD KEYS FROM {measurement}", database)
    return dict(series["values"])


def _tag_keys(influxdb: InfluxDB, database: str, measurement: str) -> set[str]:
    [series] = influxdb.query(f"SHOW TAG KEYS FROM {measurement}", database)
    return {key for [key] in series["values"]}


async def test_a_failed_reload_is_written_with_butlers_tags_fields_and_the_events_time(
    influxdb: InfluxDB, database: str, destination: InfluxDestination
) -> None:
    event = samples.sample_failed()
    await _write(destination, event)

    [row] = influxdb.rows("SELECT * FROM reload_task_failed", database)
    assert row["time"] == timestamp_ns(event.occurred_at) == 1613463899099000000
    tags = {key: row[key] for key in _tag_keys(influxdb, database, "reload_task_failed")}
    assert tags == {
        "env": "prod",
        "site": "lab",  # the measurement's static tag overrides the global one
        "severity": "high",
        "host": "pro2-win1",
        "user": "LAB/goran",
        "task_id": TASK_ID,
        "task_name": "Manually triggered reload of Test failing reloads 2",
        "app_id": APP_ID,
        "app_name": "Test failing reloads 2",
        "log_level": "INFO",
        "task_executingNodeName": "pro2-win1",
        "task_executionStatusNum": "8",
        "task_exeuctionStatusText": "FinishedFail",  # Butler's misspelling, kept on purpose
        "taskTag_Finance": "true",
        "taskTag_Daily": "true",
        "appTag_Sales": "true",
    }
    assert _field_types(influxdb, database, "reload_task_failed") == {
        "log_timestamp": "string",
        "execution_id": "string",
        "log_message": "string",
        "task_executionStartTime_json": "string",
        "task_executionStopTime_json": "string",
        "task_executionDuration_json": "string",
        "task_executionDuration_sec": "float",
        "task_executionDuration_min": "float",
        "task_executionDuration_h": "float",
        "task_scriptLogSize": "float",
        "task_scriptLogTailCount": "float",
        "scriptLog": "string",
        "reload_log": "string",
    }
    assert row["log_timestamp"] == "2021-02-16 09:24:59,099"
    assert row["execution_id"] == "14a81bf5-f81c-4047-b1a1-193b0920de28"
    assert row["log_message"] == "Max retries reached"
    start = json.loads(row["task_executionStartTime_json"])
    assert start["startTimeUTC"] == "2021-02-16T08:24:40.000Z"
    assert start["startTimeLocal1"] == "2021-02-16 08:24:40"
    assert set(start) == {"startTimeUTC"} | {f"startTimeLocal{n}" for n in range(1, 6)}
    assert json.loads(row["task_executionStopTime_json"])["stopTimeUTC"] == (
        "2021-02-16T08:24:59.099Z"
    )
    assert json.loads(row["task_executionDuration_json"]) == {
        "hours": 0,
        "minutes": 0,
        "seconds": 19,
    }
    assert row["task_executionDuration_sec"] == 19
    assert row["task_executionDuration_min"] == pytest.approx(19 / 60)
    assert row["task_executionDuration_h"] == pytest.approx(19 / 3600)
    script_log = samples.sample_failed().script_log
    assert script_log is not None
    assert row["task_scriptLogSize"] == script_log.size_bytes
    assert row["task_scriptLogTailCount"] == 20
    assert script_log.full_text is not None
    # Butler: details, a rule, then the last 20 lines (here all 14) joined with CRLF
    expected_log = (
        DETAILS.format(status="FinishedFail")
        + "\r\n-------------------------------\r\n\r\n"
        + script_log.full_text
    )
    assert row["scriptLog"] == expected_log
    assert row["reload_log"] == expected_log


async def test_a_successful_reload_has_head_and_tail_and_its_own_static_tags(
    influxdb: InfluxDB, database: str
) -> None:
    settings = _settings(
        influxdb.url,
        database,
        use_task_tags=False,
        success_head_lines=2,
        success_tail_lines=3,
        measurement_tags={"reload_task_success": {"kind": "ok"}},
    )
    destination = InfluxDestination(settings, "metrics-writer")
    await destination.start()
    try:
        event = samples.sample_succeeded()
        await _write(destination, event)
    finally:
        await destination.close()

    [row] = influxdb.rows("SELECT * FROM reload_task_success", database)
    assert row["time"] == timestamp_ns(event.occurred_at)
    tags = _tag_keys(influxdb, database, "reload_task_success")
    assert "kind" in tags
    assert "appTag_Sales" in tags
    assert not any(tag.startswith("taskTag_") for tag in tags)  # use_task_tags: false
    assert row["task_exeuctionStatusText"] == "FinishedSuccess"
    assert row["task_executionStatusNum"] == "7"
    assert row["user"] == "INTERNAL/sa_scheduler"
    types = _field_types(influxdb, database, "reload_task_success")
    assert types["task_scriptLogHeadCount"] == "float"
    assert types["task_scriptLogTailCount"] == "float"
    assert row["task_scriptLogHeadCount"] == 2
    assert row["task_scriptLogTailCount"] == 3
    script_log = event.script_log
    assert script_log is not None
    lines = script_log.head + script_log.tail  # the sample's 14 lines
    assert row["scriptLog"] == (
        "2024-10-10T13:59:44.000Z\tChanging task state from Triggered to Started\n"
        "2024-10-10T13:59:44.000Z\tReference to scriptlog added\n"
        "2024-10-10T14:00:03.099Z\tChanging task state from Started to FinishedSuccess\n"
        + "\r\n---------- SCRIPT LOG HEAD (2 lines) ----------\r\n"
        + "\r\n".join(lines[:2])
        + "\r\n\r\n---------- SCRIPT LOG TAIL (3 lines) ----------\r\n"
        + "\r\n".join(lines[-3:])
    )
    assert row["reload_log"] == row["scriptLog"]


async def test_without_a_script_log_butlers_placeholders_are_written(
    influxdb: InfluxDB, database: str, destination: InfluxDestination
) -> None:
    event = samples.sample_partial()
    await _write(destination, event)

    [row] = influxdb.rows("SELECT * FROM reload_task_failed", database)
    assert row["task_executingNodeName"] == "unknown"
    assert row["task_executionStatusNum"] == "-1"
    assert row["task_exeuctionStatusText"] == "Script log not available"
    assert row["scriptLog"] == "Script log not available"
    assert row["task_scriptLogSize"] == 0
    assert row["task_scriptLogTailCount"] == 0
    fields = _field_types(influxdb, database, "reload_task_failed")
    assert "reload_log" not in fields
    assert "task_executionDuration_sec" not in fields


def test_aborts_are_never_written_and_successes_follow_the_custom_property() -> None:
    by_property = InfluxDestination(
        InfluxDbSettings.model_validate({"success": {"mode": "by_custom_property"}}),
        "metrics-writer",
    )
    assert by_property.targets(samples.sample_aborted()) == ()
    assert by_property.targets(samples.sample_failed())
    succeeded = samples.sample_succeeded()
    assert by_property.targets(succeeded) == ()  # no Butler_SuccessReloadTask_InfluxDB: Yes
    succeeded.task.custom_properties["Butler_SuccessReloadTask_InfluxDB"] = ["No", "Yes"]
    assert by_property.targets(succeeded)
    everything = InfluxDestination(InfluxDbSettings(), "metrics-writer")
    assert everything.targets(samples.sample_succeeded())


async def test_other_task_types_get_their_own_measurement(
    influxdb: InfluxDB, database: str, destination: InfluxDestination
) -> None:
    event = samples.sample_failed()
    event.task.type = "external_program"
    await _write(destination, event)
    [series] = influxdb.query("SHOW MEASUREMENTS", database)
    assert series["values"] == [["external_program_task_failed"]]


async def test_influxdb_unreachable_is_transient_and_a_rejected_write_permanent(
    influxdb: InfluxDB, database: str
) -> None:
    from herald_testkit.ports import free_port

    nobody = InfluxDestination(
        _settings(f"http://127.0.0.1:{free_port()}", database), "metrics-writer"
    )
    await nobody.start()
    try:
        with pytest.raises(TransientError):
            await nobody.deliver(samples.sample_failed(), "")
    finally:
        await nobody.close()

    no_database = InfluxDestination(
        _settings(influxdb.url, database, v1={"database": database, "create_database": False}),
        "metrics-writer",
    )
    await no_database.start()
    try:
        with pytest.raises(PermanentError, match="database not found"):
            await no_database.deliver(samples.sample_failed(), "")
    finally:
        await no_database.close()


async def test_one_batch_is_one_request_and_a_bad_point_does_not_sink_the_others(
    influxdb: InfluxDB, database: str
) -> None:
    import asyncio

    # InfluxDB 1.x refuses a field whose type changes within a shard: in 1970's shard
    # log_message is a string, so a float log_message there is a 400 for its batch. The string
    # goes in first through a writer of its own that flushes at once: alone in a batch of three,
    # it would wait out the 30 s below.
    seeding = InfluxDestination(_settings(influxdb.url, database), "metrics-writer")
    await seeding.start()
    try:
        await seeding.writer.write('reload_task_failed log_message="text" 0')
    finally:
        await seeding.close()
    # 30 s: only a full batch of three can be written while the test runs.
    settings = _settings(influxdb.url, database, batch_size=3, flush_interval=30)
    destination = InfluxDestination(settings, "metrics-writer")
    await destination.start()
    try:
        good = samples.sample_failed()
        other = samples.sample_partial()
        results = await asyncio.gather(
            destination.writer.write(destination_line(destination, good)),
            destination.writer.write("reload_task_failed log_message=2 1"),
            destination.writer.write(destination_line(destination, other)),
            return_exceptions=True,
        )
    finally:
        await destination.close()
    assert results[0] is None
    assert isinstance(results[1], PermanentError)
    assert "field type conflict" in results[1].reason
    assert results[2] is None
    rows = influxdb.rows("SELECT execution_id FROM reload_task_failed WHERE time > 0", database)
    assert len(rows) == 2


def destination_line(destination: InfluxDestination, event: Event) -> str:
    from herald_metrics_writer import butler_schema

    point = butler_schema.point(event, butler_schema.SchemaOptions())
    assert point is not None
    return point.to_line()
