"""The fields an e-mail template sees, built from the event (docs/butler-compatibility.md §3.2, in snake_case).

Every template (subject, HTML and text, built-in or an operator's) gets these names. A value
that the event does not carry (a partial event, a task without an app) is ``None`` or an empty
list, so a template can test it with ``{% if … %}``; nothing is ever filled in with a guess.

Alert
    ``outcome`` (failed, aborted, succeeded, recovered), ``kind`` (the event's tag),
    ``event_id``, ``occurred_at`` (text, UTC), ``source``, ``enrichment_status`` (complete or
    partial), ``enrichment_reasons`` (list of text), ``recovers`` (None, or ``{kind, event_id,
    occurred_at}`` of the failure or abort this success ends).
Scheduler datagram (Butler: hostName, user, logTimeStamp, logLevel, logMessage)
    ``host_name``, ``user`` (``DIR\\user``, as the scheduler sent it), ``log_timestamp`` (the
    Sense node's local time, as sent), ``log_level``, ``log_message``.
Task (taskName, taskId, taskTags, taskCustomProperties, taskIsManuallyTriggered, …)
    ``task_name``, ``task_id``, ``task_type``, ``task_type_text`` (``reload``, ``external
    program``, …, as subjects say it), ``task_tags`` (list), ``task_custom_properties``
    (list of ``{name, value}``, one per value, as Butler), ``task_is_manually_triggered``,
    ``task_is_partial_reload``, ``task_max_retries``, ``task_session_timeout`` (minutes),
    ``task_next_execution`` (text, ``Never`` when not scheduled again), ``task_modified_by_username``,
    ``task_modified_date``.
App (appName, appId, appUrl, appDescription, …)
    ``app_name``, ``app_id``, ``app_url``, ``app_description``, ``app_file_size`` (bytes),
    ``app_file_size_text`` (e.g. ``2.3 MiB``), ``app_last_successful_reload``,
    ``app_last_modified_date``, ``app_last_modified_by_username``, ``app_publish_time``,
    ``app_published``, ``app_stream_name`` (the name; None when unpublished), ``app_tags``,
    ``app_custom_properties`` (list of ``{name, value}``).
App owner (appOwnerName, appOwnerUserId, appOwnerUserDirectory, appOwnerEmail)
    ``app_owner_name``, ``app_owner_user_id``, ``app_owner_user_directory``, ``app_owner_email``
    (the first address), ``app_owner_emails`` (all of them).
Execution (executingNodeName, executionDuration, executionStartTime, …)
    ``executing_node_name``, ``execution_status_num``, ``execution_status_text``,
    ``execution_duration`` (``{hours, minutes, seconds, text}``, e.g. text ``0:00:19``),
    ``execution_start_time`` / ``execution_stop_time`` (text, UTC),
    ``execution_details`` (list of ``{timestamp_utc, details_type, message}``).
Script log (scriptLogSize, scriptLogSizeRows, scriptLogHead, …)
    ``script_log_size`` (bytes), ``script_log_size_rows``, ``script_log_size_characters``,
    ``script_log_head`` / ``script_log_tail`` (text, lines joined by newlines),
    ``script_log_head_count`` / ``script_log_tail_count``.
Links (qlikSenseQMC, qlikSenseHub, genericUrls)
    ``qlik_sense_qmc``, ``qlik_sense_hub``, ``generic_urls`` (list of ``{id, link_text, comment,
    url}``).
Butler's names (taskName, appOwnerEmail, scriptLogHead, executionStartTime.startTimeLocal1, …)
    every field of :func:`herald_shared.butler_fields.butler_fields`, so Butler's templates
    render unchanged once converted to Jinja2 (docs/templates.md gives each one's type and an
    example; ``site_timezone`` is the zone of the local times and of the ``local_time``
    filter). A missing value is ``""`` there, as Butler rendered it:
    ``site_timezone``, ``hostName``, ``user``, ``taskName``, ``taskId``, ``taskTags``,
    ``taskCustomProperties``, ``taskIsManuallyTriggered``, ``taskIsPartialReload``,
    ``taskMaxRetries``, ``taskModifiedByUsername``, ``taskModifiedDate``,
    ``taskSessionTimeout``, ``taskNextExecution``, ``appName``, ``appId``, ``appUrl``,
    ``appDescription``, ``appFileSize``, ``appLastSuccessfulReload``, ``appLastModifiedDate``,
    ``appLastModifiedByUserName``, ``appPublishTime``, ``appPublished``, ``appStreamName``,
    ``appTags``, ``appCustomProperties``, ``appOwnerName``, ``appOwnerUserId``,
    ``appOwnerUserDirectory``, ``appOwnerEmail``, ``logTimeStamp``, ``logLevel``,
    ``logMessage``, ``executionId``, ``executingNodeName``, ``executionDuration``,
    ``executionStartTime``, ``executionStopTime``, ``executionStatusNum``,
    ``executionStatusText``, ``executionDetails``, ``executionDetailsConcatenated``,
    ``scriptLogSize``, ``scriptLogSizeRows``, ``scriptLogSizeCharacters``, ``scriptLogHead``,
    ``scriptLogHeadCount``, ``scriptLogTail``, ``scriptLogTailCount``, ``qlikSenseQMC``,
    ``qlikSenseHub``, ``genericUrls``.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from herald_shared.butler_fields import butler_fields
from herald_shared.events import Event, TaskSucceeded
from herald_shared.outcomes import outcome_of, task_type_text

TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.strftime(TIME_FORMAT)


def _pairs(properties: dict[str, list[str]]) -> list[dict[str, str]]:
    return [
        {"name": name, "value": value} for name, values in properties.items() for value in values
    ]


def _size_text(size: int | None) -> str | None:
    if size is None:
        return None
    amount = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{size} bytes" if unit == "bytes" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def _duration(milliseconds: int | None) -> dict[str, Any] | None:
    if milliseconds is None:
        return None
    total = milliseconds // 1000
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return {
        "hours": hours,
        "minutes": minutes,
        "seconds": seconds,
        "text": f"{hours}:{minutes:02d}:{seconds:02d}",
    }


def build_context(event: Event, zone: tzinfo | None = None) -> dict[str, Any]:
    """The fields for ``event``; Butler's local times are in ``zone`` (None: this host's)."""
    task, app, execution = event.task, event.app, event.execution
    owner = app.owner if app is not None else None
    script_log = event.script_log
    links = event.links
    recovers = event.recovers if isinstance(event, TaskSucceeded) else None
    full_text = script_log.full_text if script_log is not None else None
    return {
        **butler_fields(event, zone),
        # alert
        "outcome": outcome_of(event),
        "kind": event.kind,
        "event_id": event.event_id,
        "occurred_at": _time(event.occurred_at),
        "source": event.source,
        "enrichment_status": event.enrichment.status,
        "enrichment_reasons": list(event.enrichment.reasons),
        "recovers": None
        if recovers is None
        else {
            "kind": recovers.kind,
            "event_id": recovers.event_id,
            "occurred_at": _time(recovers.occurred_at),
        },
        # scheduler datagram
        "host_name": event.sense_host or None,
        "user": event.user or None,
        "log_timestamp": event.log_timestamp or None,
        "log_level": event.log_level or None,
        "log_message": event.log_message or None,
        # task
        "task_name": task.name,
        "task_id": task.id,
        "task_type": task.type,
        "task_type_text": task_type_text(event),
        "task_tags": list(task.tags),
        "task_custom_properties": _pairs(task.custom_properties),
        "task_is_manually_triggered": task.manually_triggered,
        "task_is_partial_reload": task.partial_reload,
        "task_max_retries": task.max_retries,
        "task_session_timeout": task.session_timeout_minutes,
        # Only an enriched event knows the schedule: None there means "not known".
        "task_next_execution": _time(task.next_execution)
        if task.next_execution is not None
        else ("Never" if task.modified_at is not None else None),
        "task_modified_by_username": task.modified_by,
        "task_modified_date": _time(task.modified_at),
        # app
        "app_name": app.name if app else None,
        "app_id": app.id if app else None,
        "app_url": links.app,
        "app_description": (app.description or None) if app else None,
        "app_file_size": app.file_size if app else None,
        "app_file_size_text": _size_text(app.file_size) if app else None,
        "app_last_successful_reload": _time(app.last_reload) if app else None,
        "app_last_modified_date": _time(app.modified_at) if app else None,
        "app_last_modified_by_username": app.modified_by if app else None,
        "app_publish_time": _time(app.publish_time) if app else None,
        "app_published": app.published if app else None,
        "app_stream_name": app.stream.name if app and app.stream else None,
        "app_tags": list(app.tags) if app else [],
        "app_custom_properties": _pairs(app.custom_properties) if app else [],
        # app owner
        "app_owner_name": (owner.name or None) if owner else None,
        "app_owner_user_id": (owner.user_id or None) if owner else None,
        "app_owner_user_directory": (owner.directory or None) if owner else None,
        "app_owner_email": owner.emails[0] if owner and owner.emails else None,
        "app_owner_emails": list(owner.emails) if owner else [],
        # execution
        "executing_node_name": execution.node,
        "execution_status_num": execution.status_code,
        "execution_status_text": execution.status,
        "execution_duration": _duration(execution.duration_ms),
        "execution_start_time": _time(execution.started_at),
        "execution_stop_time": _time(execution.stopped_at),
        "execution_details": [
            {
                "timestamp_utc": _time(detail.at),
                "details_type": detail.detail_type,
                "message": detail.message,
            }
            for detail in execution.details
        ],
        # script log
        "script_log_size": script_log.size_bytes if script_log else None,
        "script_log_size_rows": script_log.total_lines if script_log else None,
        "script_log_size_characters": len(full_text) if full_text is not None else None,
        "script_log_head": "\n".join(script_log.head) if script_log else None,
        "script_log_head_count": len(script_log.head) if script_log else 0,
        "script_log_tail": "\n".join(script_log.tail) if script_log else None,
        "script_log_tail_count": len(script_log.tail) if script_log else 0,
        # links
        "qlik_sense_qmc": links.qmc,
        "qlik_sense_hub": links.hub,
        "generic_urls": [
            {"id": link.id, "link_text": link.text, "comment": link.comment, "url": link.url}
            for link in links.generic
        ],
    }
