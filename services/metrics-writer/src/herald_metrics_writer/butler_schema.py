"""Butler's InfluxDB measurements, built from Herald's event (docs/butler-compatibility.md §4h).

Grafana dashboards written for Butler query these names, so they are reproduced exactly,
including the misspelt ``task_exeuctionStatusText`` tag. Two deliberate differences: the point's
time is the event's ``occurred_at`` (Butler lets the server stamp it at write time, so a retried
or late write lands at the wrong time), and ``taskTag_<tag>``/``appTag_<tag>`` are really written
(Butler's are lost to a key mismatch).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Final

from herald_metrics_writer.line_protocol import FieldValue, Point, timestamp_ns
from herald_shared.butler_fields import local_times
from herald_shared.events import Event, TaskAborted, TaskFailed

NO_SCRIPT_LOG: Final = "Script log not available"
# The misspelling is Butler's, and dashboards query it.
STATUS_TEXT_TAG: Final = "task_exeuctionStatusText"


@dataclass(frozen=True)
class SchemaOptions:
    static_tags: Mapping[str, str] = field(default_factory=dict)
    measurement_tags: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    use_task_tags: bool = True
    use_app_tags: bool = True
    failed_tail_lines: int = 20
    success_head_lines: int = 15
    success_tail_lines: int = 25
    zone: tzinfo = UTC  # of the Local1..5 times in the *_json fields


def measurement(event: Event) -> str | None:
    """``reload_task_failed``, ``user_sync_task_success``, …; None for aborts (never written)."""
    if isinstance(event, TaskAborted):
        return None
    outcome = "failed" if isinstance(event, TaskFailed) else "success"
    return f"{event.task.type}_task_{outcome}"


def point(event: Event, options: SchemaOptions) -> Point | None:
    name = measurement(event)
    if name is None:
        return None
    failed = isinstance(event, TaskFailed)
    has_log = event.script_log is not None
    execution = event.execution

    tags: dict[str, str] = dict(options.static_tags)
    tags.update(
        {
            "host": event.sense_host,
            "user": event.user.replace("\\", "/"),
            "task_id": event.task.id,
            "task_name": event.task.name,
            "app_id": event.app.id if event.app else "",
            "app_name": event.app.name if event.app else "",
            "log_level": event.log_level,
        }
    )
    if has_log or not failed:
        tags["task_executingNodeName"] = execution.node or "unknown"
        status_num = execution.status_code if execution.status_code is not None else -1
        tags["task_executionStatusNum"] = str(status_num)
        tags[STATUS_TEXT_TAG] = execution.status or NO_SCRIPT_LOG
    else:
        tags["task_executingNodeName"] = "unknown"
        tags["task_executionStatusNum"] = "-1"
        tags[STATUS_TEXT_TAG] = NO_SCRIPT_LOG
    if options.use_app_tags and event.app is not None:
        tags.update({f"appTag_{tag}": "true" for tag in event.app.tags})
    if options.use_task_tags:
        tags.update({f"taskTag_{tag}": "true" for tag in event.task.tags})
    tags.update(options.measurement_tags.get(name, {}))

    fields: dict[str, FieldValue] = {
        "log_timestamp": event.log_timestamp,
        "execution_id": execution.id,
        "log_message": event.log_message,
    }
    lines = _script_lines(event)
    if failed and not has_log:
        fields.update(task_scriptLogSize=0.0, task_scriptLogTailCount=0.0, scriptLog=NO_SCRIPT_LOG)
    else:
        fields.update(_execution_fields(event, options.zone))
        details = _details_concatenated(event)
        if failed:
            tail_count = options.failed_tail_lines
            log = details + "\r\n-------------------------------\r\n\r\n" + _tail(lines, tail_count)
            fields["task_scriptLogTailCount"] = float(tail_count)
        else:
            head_count, tail_count = options.success_head_lines, options.success_tail_lines
            if has_log:
                log = (
                    f"{details}\r\n---------- SCRIPT LOG HEAD ({head_count} lines) ----------\r\n"
                    f"{_head(lines, head_count)}"
                    f"\r\n\r\n---------- SCRIPT LOG TAIL ({tail_count} lines) ----------\r\n"
                    f"{_tail(lines, tail_count)}"
                )
            else:
                head_count = tail_count = 0
                log = NO_SCRIPT_LOG
            fields["task_scriptLogHeadCount"] = float(head_count)
            fields["task_scriptLogTailCount"] = float(tail_count)
        size = event.script_log.size_bytes if event.script_log else 0
        fields["task_scriptLogSize"] = float(size)
        fields["scriptLog"] = log
        if has_log:
            fields["reload_log"] = log
    return Point(name, tags, fields, timestamp_ns(event.occurred_at))


def _script_lines(event: Event) -> list[str]:
    script_log = event.script_log
    if script_log is None:
        return []
    if script_log.full_text is not None:
        return script_log.full_text.split("\r\n")
    # Without the full text only ingest's own head and tail are known; use what there is.
    return script_log.tail or script_log.head


def _head(lines: list[str], count: int) -> str:
    return "\r\n".join(lines[:count]) if count else ""


def _tail(lines: list[str], count: int) -> str:
    return "\r\n".join(lines[-count:]) if count else ""


def _qrs_time(at: datetime) -> str:
    """The QRS's UTC ISO form, e.g. 2021-02-16T08:24:40.000Z."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _details_concatenated(event: Event) -> str:
    details = sorted(
        event.execution.details, key=lambda d: _qrs_time(d.at) if d.at is not None else ""
    )
    return "".join(
        f"{_qrs_time(d.at) if d.at is not None else '-'}\t{d.message}\n" for d in details
    )


def _time_json(prefix: str, at: datetime | None, zone: tzinfo) -> str:
    """Butler's executionStartTime/StopTime object as JSON, the Local formats in ``zone``
    (Butler used its host's zone; Herald's is influxdb.timezone, else qlik.timezone, else UTC)."""
    return json.dumps(local_times(at, prefix, zone))


def _execution_fields(event: Event, zone: tzinfo) -> dict[str, FieldValue]:
    execution = event.execution
    duration_ms = execution.duration_ms
    if duration_ms is None and execution.started_at and execution.stopped_at:
        duration_ms = int((execution.stopped_at - execution.started_at).total_seconds() * 1000)
    total_seconds = (duration_ms or 0) // 1000  # Butler rounds seconds down
    hours, rest = divmod(total_seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return {
        "task_executionStartTime_json": _time_json("startTime", execution.started_at, zone),
        "task_executionStopTime_json": _time_json("stopTime", execution.stopped_at, zone),
        "task_executionDuration_json": json.dumps(
            {"hours": hours, "minutes": minutes, "seconds": seconds}
        ),
        "task_executionDuration_sec": float(hours * 3600 + minutes * 60 + seconds),
        "task_executionDuration_min": hours * 60 + minutes + seconds / 60,
        "task_executionDuration_h": hours + minutes / 60 + seconds / 3600,
    }
