"""Herald's event as Butler's fields (docs/butler-compatibility.md §3.1), for payloads that must match Butler's.

Where this normalizes, and why:

- ``user``: Butler transforms the datagram's ``DIR\\user`` differently per destination; the
  helpers below reproduce each variant so every payload reads as Butler's did.
- ``qs_taskMetadata`` / ``qs_appMetadata``: Butler passes the QRS objects through whole. Herald's
  event carries their meaning, not the raw QRS answer, so these are rebuilt in the QRS shape
  (QRS key names and date format) from the event: the fields consumers use are there under the
  names they know, but fields the event does not carry are absent.
- Missing app (tasks without one, or a partial event): Butler's datagram fields are then empty
  strings, so they are here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from herald_shared.events import Event, TaskAborted, TaskFailed, TaskSucceeded
from herald_shared.outcomes import task_type_text

#: QRS ``taskType`` numbers (docs/butler-compatibility.md §1.8).
TASK_TYPE_NUMBERS: Final = {
    "reload": 0,
    "external_program": 1,
    "user_sync": 2,
    "distribute": 3,
    "preload": 4,
}
#: What the QRS writes for "never" (docs/butler-compatibility.md §2.4).
QRS_NEVER: Final = "1753-01-01T00:00:00.000Z"


def user_slashed(user: str) -> str:
    """Signl4, New Relic (qs_user), Slack, Teams: every backslash becomes a slash."""
    return user.replace("\\", "/")


def user_collapsed(user: str) -> str:
    """Webhook (failed), MQTT full payloads: double backslashes collapsed to one."""
    return user.replace("\\\\", "\\")


def qrs_time(value: datetime | None) -> str | None:
    """A timestamp as the QRS writes it: ``2021-02-16T08:24:40.000Z``."""
    if value is None:
        return None
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def outcome_words(event: Event) -> str:
    """Butler's event names (``Qlik Sense reload failed``), extended to other task types."""
    subject = task_type_text(event)
    verb = {TaskFailed: "failed", TaskAborted: "aborted", TaskSucceeded: "succeeded"}[type(event)]
    return f"Qlik Sense {subject} {verb}"


def app_name(event: Event) -> str:
    return event.app.name if event.app is not None else ""


def app_id(event: Event) -> str:
    return event.app.id if event.app is not None else ""


def custom_properties(values: dict[str, list[str]]) -> list[dict[str, str]]:
    """Butler's ``[{name, value}]``: one entry per value, so a multi-value property repeats."""
    return [{"name": name, "value": value} for name, many in values.items() for value in many]


def app_tags(event: Event) -> list[str]:
    return list(event.app.tags) if event.app is not None else []


def app_custom_properties(event: Event) -> list[dict[str, str]]:
    return custom_properties(event.app.custom_properties) if event.app is not None else []


def task_object(event: Event) -> dict[str, Any]:
    """``qs_taskMetadata`` as Butler's MQTT payload has it: the whole QRS task/full object the
    event carries, else what :func:`task_metadata` rebuilds of it."""
    return event.task.qrs if event.task.qrs is not None else task_metadata(event)


def app_object(event: Event) -> dict[str, Any]:
    """``qs_appMetadata`` as Butler's MQTT payload has it: the whole QRS app/full object."""
    if event.app is not None and event.app.qrs is not None:
        return event.app.qrs
    return app_metadata(event)


def task_metadata(event: Event) -> dict[str, Any]:
    """``qs_taskMetadata`` as far as the event's own fields know it: the subset New Relic gets
    (attributes are flattened there, and an event may have at most 255 of them)."""
    task = event.task
    return {
        "id": task.id,
        "name": task.name,
        "taskType": TASK_TYPE_NUMBERS[task.type],
        "isManuallyTriggered": task.manually_triggered,
        "isPartialReload": task.partial_reload,
        "maxRetries": task.max_retries,
        "taskSessionTimeout": task.session_timeout_minutes,
        "modifiedByUserName": task.modified_by,
        "modifiedDate": qrs_time(task.modified_at),
        "app": None if event.app is None else {"id": event.app.id, "name": event.app.name},
        "customProperties": [
            {"definition": {"name": name}, "value": value}
            for name, many in task.custom_properties.items()
            for value in many
        ],
        "tags": [{"name": tag} for tag in task.tags],
        "operational": {"nextExecution": qrs_time(task.next_execution) or QRS_NEVER},
    }


def app_metadata(event: Event) -> dict[str, Any]:
    """``qs_appMetadata``: the QRS app/full object, as far as the event knows it."""
    app = event.app
    if app is None:
        return {}
    owner = app.owner
    return {
        "id": app.id,
        "name": app.name,
        "description": app.description,
        "fileSize": app.file_size,
        "published": app.published,
        "publishTime": qrs_time(app.publish_time),
        "lastReloadTime": qrs_time(app.last_reload),
        "modifiedByUserName": app.modified_by,
        "modifiedDate": qrs_time(app.modified_at),
        "stream": None if app.stream is None else {"id": app.stream.id, "name": app.stream.name},
        "owner": None
        if owner is None
        else {
            "id": owner.id,
            "userId": owner.user_id,
            "userDirectory": owner.directory,
            "name": owner.name,
        },
        "customProperties": [
            {"definition": {"name": name}, "value": value}
            for name, many in app.custom_properties.items()
            for value in many
        ],
        "tags": [{"name": tag} for tag in app.tags],
    }


def execution_details_concatenated(event: Event) -> str:
    """``<UTC ISO>\\t<message>\\n`` per state-history row, sorted by time (docs/butler-compatibility.md §2.4)."""
    rows = sorted(
        ((qrs_time(detail.at) or "", detail.message) for detail in event.execution.details),
        key=lambda row: row[0],
    )
    return "".join(f"{at}\t{message}\n" for at, message in rows)


def execution_duration(event: Event) -> dict[str, int]:
    """``{hours, minutes, seconds}``, hours not wrapped at 24, seconds rounded down."""
    total = (event.execution.duration_ms or 0) // 1000
    return {"hours": total // 3600, "minutes": total % 3600 // 60, "seconds": total % 60}


def script_lines(event: Event) -> list[str]:
    """The script log's lines: the whole text when the event carries it, else its tail."""
    log = event.script_log
    if log is None:
        return []
    if log.full_text:
        return log.full_text.split("\r\n") if "\r\n" in log.full_text else log.full_text.split("\n")
    return list(log.tail)
