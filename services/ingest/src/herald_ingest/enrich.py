"""From a datagram to a complete event: the QRS calls of docs/butler-compatibility.md §2, once per event.

Enrichment never holds an alert back. Each call that fails adds a reason; when the deadline
(``ingest.enrichment_deadline``) passes, whatever was gathered is published, marked ``partial``,
with what the datagram itself says for the rest. Every text the QRS returns (names, tags, custom
properties, owner, stream, execution details; not the script log, which has its own cap) is cut to
``ingest.udp.max_field_length`` characters, as the datagram's fields are. A built event is
checked against the event schema before it is handed on, so a QRS answer of an unforeseen shape
fails here (and is retried, see ``herald_ingest.poison``), never in a subscriber.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec

from herald_ingest.datagram import MAX_FIELD_LENGTH, Datagram, cap
from herald_ingest.qrs import QrsClient, QrsError
from herald_ingest.settings import QlikSettings
from herald_shared import events
from herald_shared.events import (
    App,
    Enrichment,
    Event,
    Execution,
    ExecutionDetail,
    GenericLink,
    Kind,
    Links,
    Owner,
    Recovery,
    ScriptLog,
    Stream,
    Task,
    TaskType,
    event_class,
    event_id_for,
)

log = logging.getLogger(__name__)

# QRS taskType numbers (docs/butler-compatibility.md §1.11).
TASK_TYPES: Final[dict[int, TaskType]] = {
    0: "reload",
    1: "external_program",
    2: "user_sync",
    3: "distribute",
    4: "preload",
}
# lastExecutionResult.status numbers (docs/butler-compatibility.md §2.4).
STATUS_TEXT: Final[dict[int, str]] = {
    0: "NeverStarted",
    1: "Triggered",
    2: "Started",
    3: "Queued",
    4: "AbortInitiated",
    5: "Aborting",
    6: "Aborted",
    7: "FinishedSuccess",
    8: "FinishedFail",
    9: "Skipped",
    10: "Retry",
    11: "Error",
    12: "Reset",
    13: "DistributionQueue",
    14: "DistributionRunning",
}
_NEVER_YEAR: Final = 1753  # the QRS's "no date"
# A task/full or app/full object larger than this (texts already capped) is not carried whole.
MAX_QRS_OBJECT_BYTES: Final = 64 * 1024
# Statuses after which an execution result no longer changes (Aborted, FinishedSuccess,
# FinishedFail, Skipped, Error, Reset).
FINAL_STATUSES: Final = frozenset({6, 7, 8, 9, 11, 12})


@dataclass
class Gathered:
    """What the QRS said so far; filled step by step, so a deadline keeps what arrived."""

    task: dict[str, Any] | None = None
    app: dict[str, Any] | None = None
    owner: dict[str, Any] | None = None
    execution: dict[str, Any] | None = None
    script_log: str | None = None
    reasons: list[str] = field(default_factory=list)


class Enricher:
    def __init__(
        self,
        qrs: QrsClient,
        qlik: QlikSettings,
        deadline: float,
        *,
        max_field_length: int = MAX_FIELD_LENGTH,
    ) -> None:
        self._qrs = qrs
        self._qlik = qlik
        self._deadline = deadline
        self._limit = max_field_length
        self._zone: tzinfo | None = ZoneInfo(qlik.timezone) if qlik.timezone else None

    async def gather(self, datagram: Datagram, execution: dict[str, Any] | None = None) -> Gathered:
        """Ask the QRS about the datagram's task, app, owner, execution and script log.

        ``execution``: the execution result already in hand (the reconciliation sweep read it),
        so it is not asked for again.
        """
        gathered = Gathered(execution=execution)
        try:
            async with asyncio.timeout(self._deadline):
                await asyncio.gather(
                    self._task_side(datagram, gathered), self._app_side(datagram, gathered)
                )
        except TimeoutError:
            gathered.reasons.append(
                f"the QRS did not answer everything within {self._deadline:g} s; "
                "published with what had arrived"
            )
        return gathered

    async def _task_side(self, datagram: Datagram, gathered: Gathered) -> None:
        try:
            gathered.task = await self._qrs.task(datagram.task_id)
        except QrsError as error:
            gathered.reasons.append(f"task lookup failed: {error}")
            return
        if gathered.task is None:
            gathered.reasons.append("the task is not in the QRS (deleted?)")
            return
        if not _is_final(gathered.execution):
            await self._execution(datagram, gathered)
        if gathered.execution is None:
            return
        if TASK_TYPES.get(gathered.task.get("taskType", 0)) == "reload":
            await self._script_log(datagram, gathered)

    async def _execution(self, datagram: Datagram, gathered: Gathered) -> None:
        """The execution result the datagram names (its execution id), never the task's last
        one: a retry that succeeded a second later must not turn this failure into a success.

        A run that is not final yet, or not in the QRS yet, is asked for again within a bound.
        """
        settings = self._qlik.qrs
        problem = ""
        for attempt in range(1, settings.execution_attempts + 1):
            if attempt > 1:
                await asyncio.sleep(settings.execution_retry_delay)
            try:
                found = await self._qrs.execution(datagram.execution_id)
            except QrsError as error:
                problem = f"execution result lookup failed: {error}"
                continue
            gathered.execution = found or gathered.execution
            if _is_final(found):
                return
            problem = (
                f"the QRS has no execution result for execution {datagram.execution_id}"
                if found is None
                else f"the execution was still {_status_text(found)}"
            )
        gathered.reasons.append(f"{problem} (asked {settings.execution_attempts} times)")

    async def _script_log(self, datagram: Datagram, gathered: Gathered) -> None:
        execution = gathered.execution or {}
        settings = self._qlik.qrs
        problem = ""
        for attempt in range(1, settings.script_log_attempts + 1):
            try:
                gathered.script_log = await self._qrs.script_log(
                    datagram.task_id,
                    str(execution.get("fileReferenceID") or ""),
                    execution.get("id"),
                )
            except QrsError as error:
                problem = str(error)
            else:
                if gathered.script_log is not None:
                    return
                problem = "the execution has no script log (yet)"
            if attempt < settings.script_log_attempts:
                # The log is often not downloadable for a moment after the failure, and the
                # execution result not yet pointing at it: ask again (docs/butler-compatibility.md §2.5).
                await asyncio.sleep(settings.script_log_retry_delay)
                try:
                    refreshed = await self._qrs.execution(datagram.execution_id)
                except QrsError:
                    continue
                execution = refreshed or execution
                gathered.execution = execution
        gathered.reasons.append(f"script log not available: {problem}")

    async def _app_side(self, datagram: Datagram, gathered: Gathered) -> None:
        if not datagram.app_id:
            return
        try:
            gathered.app = await self._qrs.app(datagram.app_id)
        except QrsError as error:
            gathered.reasons.append(f"app lookup failed: {error}")
            return
        if gathered.app is None:
            gathered.reasons.append("the app is not in the QRS (deleted?)")
            return
        owner = gathered.app.get("owner")
        if not isinstance(owner, dict) or not owner.get("id"):
            return
        try:
            gathered.owner = await self._qrs.user(owner["id"]) or owner
        except QrsError as error:
            gathered.owner = owner
            gathered.reasons.append(f"app owner lookup failed: {error}")

    # --- building the event --------------------------------------------------------------

    def build(
        self,
        datagram: Datagram,
        gathered: Gathered,
        *,
        kind: Kind,
        received_at: datetime,
        recovers: Recovery | None,
        source: str = "udp",
    ) -> Event:
        task_json = gathered.task or {}
        text = self._text
        task = Task(
            id=datagram.task_id,
            name=text(task_json.get("name") or datagram.task_name),
            type=TASK_TYPES.get(task_json.get("taskType", 0), "reload"),
            tags=_tags(task_json, text),
            custom_properties=_custom_properties(task_json, text),
            manually_triggered=task_json.get("isManuallyTriggered"),
            partial_reload=task_json.get("isPartialReload"),
            max_retries=task_json.get("maxRetries"),
            session_timeout_minutes=task_json.get("taskSessionTimeout"),
            next_execution=qrs_datetime(_get(task_json, "operational", "nextExecution")),
            modified_by=_optional(task_json.get("modifiedByUserName"), text),
            modified_at=qrs_datetime(task_json.get("modifiedDate")),
            qrs=self._qrs_object(gathered.task),
        )
        reasons = list(gathered.reasons)
        if datagram.clock_problem:
            reasons.append(datagram.clock_problem)
        body: dict[str, Any] = {
            "event_id": event_id_for(kind, datagram.execution_id),
            "occurred_at": self._occurred_at(datagram, received_at),
            "received_at": received_at,
            "source": source,
            "sense_host": datagram.host,
            "log_timestamp": datagram.log_timestamp,
            "task": task,
            "app": self._app(datagram, gathered),
            "execution": _execution(datagram, gathered.execution, text),
            "user": datagram.user,
            "log_level": datagram.log_level,
            "log_message": datagram.message,
            "script_log": self._script_log_part(gathered.script_log),
            "links": self._links(datagram),
            "enrichment": Enrichment(status="partial" if reasons else "complete", reasons=reasons),
        }
        if kind == "task_succeeded":
            body["recovers"] = recovers
        # Encoding does not check types: what a subscriber could not decode must fail here.
        return events.decode(events.encode(event_class(kind)(**body)))

    def _text(self, value: Any) -> str:
        return cap(str(value), self._limit)

    def _qrs_object(self, found: dict[str, Any] | None) -> dict[str, Any] | None:
        """A QRS object to carry whole (Butler's qs_*Metadata), its texts capped as the event's
        own fields are; None when even so it is larger than MAX_QRS_OBJECT_BYTES, so that an
        odd QRS answer cannot bloat every event (the payloads then rebuild it from the fields)."""
        if found is None:
            return None
        capped: dict[str, Any] = _capped(found, self._text)
        if len(msgspec.json.encode(capped)) > MAX_QRS_OBJECT_BYTES:
            log.warning(
                "the QRS object of %r is over %d bytes: the event carries its fields, not it whole",
                capped.get("name"),
                MAX_QRS_OBJECT_BYTES,
            )
            return None
        return capped

    def _occurred_at(self, datagram: Datagram, received_at: datetime) -> datetime:
        if datagram.clock_problem:  # the node's clock is wrong; the reason goes with the event
            return received_at
        local = datagram.logged_at
        aware = local.replace(tzinfo=self._zone) if self._zone else local.astimezone()
        return aware.astimezone(UTC)

    def _app(self, datagram: Datagram, gathered: Gathered) -> App | None:
        if not datagram.app_id:
            return None
        app = gathered.app or {}
        stream = app.get("stream")
        owner_json = gathered.owner
        owner = None
        text = self._text
        if owner_json:
            owner = Owner(
                id=text(owner_json.get("id", "")),
                directory=text(owner_json.get("userDirectory", "")),
                user_id=text(owner_json.get("userId", "")),
                name=text(owner_json.get("name", "")),
                emails=[
                    text(attribute.get("attributeValue"))
                    for attribute in owner_json.get("attributes", [])
                    if str(attribute.get("attributeType", "")).lower() == "email"
                    and attribute.get("attributeValue")
                ],
            )
        return App(
            id=datagram.app_id,
            name=text(app.get("name") or datagram.app_name),
            description=text(app.get("description") or ""),
            stream=Stream(id=text(stream.get("id", "")), name=text(stream.get("name", "")))
            if isinstance(stream, dict)
            else None,
            file_size=app.get("fileSize"),
            published=app.get("published"),
            publish_time=qrs_datetime(app.get("publishTime")),
            last_reload=qrs_datetime(app.get("lastReloadTime")),
            modified_by=_optional(app.get("modifiedByUserName"), text),
            modified_at=qrs_datetime(app.get("modifiedDate")),
            tags=_tags(app, text),
            custom_properties=_custom_properties(app, text),
            owner=owner,
            qrs=self._qrs_object(gathered.app or None),
        )

    def _script_log_part(self, text: str | None) -> ScriptLog | None:
        if text is None:
            return None
        settings = self._qlik.script_log
        lines = text.replace("\r\n", "\n").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        encoded = text.encode("utf-8")
        truncated = len(encoded) > settings.max_bytes
        full = encoded[: settings.max_bytes].decode("utf-8", errors="ignore") if truncated else text
        return ScriptLog(
            head=lines[: settings.head_lines],
            tail=lines[-settings.tail_lines :] if settings.tail_lines else [],
            total_lines=len(lines),
            size_bytes=len(encoded),
            full_text=full,
            full_text_truncated=truncated,
        )

    def _links(self, datagram: Datagram) -> Links:
        qlik = self._qlik
        app_url = None
        if qlik.app_base_url and datagram.app_id:
            app_url = qlik.app_base_url.rstrip("/") + "/" + datagram.app_id
        return Links(
            qmc=qlik.qmc_url,
            hub=qlik.hub_url,
            app=app_url,
            generic=[
                GenericLink(id=link.id, text=link.text, url=link.url, comment=link.comment)
                for link in qlik.generic_links
            ],
        )


def kind_of_distribute(gathered: Gathered) -> Kind | None:
    """Distribute tasks: 7 succeeded; 6, 8, 11 failed (as Butler counts them); else not final."""
    status = (gathered.execution or {}).get("status")
    if status == 7:
        return "task_succeeded"
    if status in (6, 8, 11):
        return "task_failed"
    return None


def _execution(
    datagram: Datagram, result: dict[str, Any] | None, text: Callable[[Any], str]
) -> Execution:
    if not result:
        return Execution(id=datagram.execution_id)
    status = result.get("status")
    details = sorted(
        result.get("details") or [], key=lambda detail: str(detail.get("detailCreatedDate", ""))
    )
    return Execution(
        id=datagram.execution_id,
        result_id=_optional(result.get("id"), text),
        status_code=status,
        status=STATUS_TEXT.get(status) if isinstance(status, int) else None,
        node=_optional(result.get("executingNodeName"), text),
        started_at=qrs_datetime(result.get("startTime")),
        stopped_at=qrs_datetime(result.get("stopTime")),
        duration_ms=result.get("duration"),
        details=[
            ExecutionDetail(
                at=qrs_datetime(detail.get("detailCreatedDate")),
                message=text(detail.get("message", "")),
                detail_type=detail.get("detailsType"),
            )
            for detail in details
        ],
    )


def _status_text(execution: dict[str, Any]) -> str:
    status = execution.get("status")
    return STATUS_TEXT.get(status, f"status {status}") if isinstance(status, int) else "unknown"


def _is_final(execution: dict[str, Any] | None) -> bool:
    return execution is not None and execution.get("status") in FINAL_STATUSES


def _capped(value: Any, text: Callable[[Any], str]) -> Any:
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {key: _capped(item, text) for key, item in value.items()}
    if isinstance(value, list):
        return [_capped(item, text) for item in value]
    return value


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _optional(value: Any, text: Callable[[Any], str]) -> str | None:
    return None if value is None else text(value)


def _tags(item: dict[str, Any], text: Callable[[Any], str]) -> list[str]:
    return [
        text(tag["name"])
        for tag in item.get("tags") or []
        if isinstance(tag, dict) and "name" in tag
    ]


def _custom_properties(item: dict[str, Any], text: Callable[[Any], str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for entry in item.get("customProperties") or []:
        name = _get(entry, "definition", "name")
        if name is not None:
            found.setdefault(text(name), []).append(text(entry.get("value", "")))
    return found


def qrs_datetime(value: Any) -> datetime | None:
    """A QRS timestamp; None for its 1753 "never" placeholder or anything unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.year == _NEVER_YEAR:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
