"""Realistic sample events: what ingest publishes for a real Qlik Sense site.

Tests use them, and services render every template against them at start-up so that a broken
template is found before the first real alert needs it. The values follow the reference
datagrams and QRS shapes (docs/butler-compatibility.md §1.4, §2).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from herald_shared.events import (
    App,
    Enrichment,
    Event,
    Execution,
    ExecutionDetail,
    GenericLink,
    Links,
    Owner,
    ScriptLog,
    Stream,
    Task,
    TaskAborted,
    TaskFailed,
    TaskSucceeded,
    event_id_for,
    recovery_of,
)

__all__ = ["sample_aborted", "sample_events", "sample_failed", "sample_partial", "sample_succeeded"]

_SCRIPT_LOG_LINES = [
    "20210216T092440.000+0100 Execution started.",
    "20210216T092440.000+0100 Qlik Sense Server Version 14.20.5",
    "20210216T092440.000+0100 CPU Target                    x64",
    "20210216T092440.000+0100 Operating System              Windows Server 2019 Standard",
    "20210216T092440.000+0100 Reload Executed By            UserDirectory=INTERNAL; UserId=sa_scheduler",
    "20210216T092440.000+0100 Process ID                    6868",
    "20210216T092441.000+0100 0002  SET ThousandSep=',';",
    "20210216T092441.000+0100 0003  SET DecimalSep='.';",
    "20210216T092441.000+0100 0012  Sales:",
    "20210216T092441.000+0100 0013  LOAD * FROM [lib://Data/sales_2021.qvd] (qvd)",
    "20210216T092459.000+0100      Error: Cannot open file: 'lib://Data/sales_2021.qvd'",
    "20210216T092459.000+0100      Path not found: \\\\fileserver\\qlik\\data\\sales_2021.qvd",
    "20210216T092459.000+0100 Execution Failed",
    "20210216T092459.000+0100 Execution finished.",
]

_APP_OWNER = Owner(
    id="5c1f8a3e-1f6a-4b2d-9f0e-6a7b8c9d0e1f",
    directory="LAB",
    user_id="goran",
    name="Göran Sander",
    emails=["goran@example.com"],
)

_LINKS = Links(
    qmc="https://sense.example.com/qmc",
    hub="https://sense.example.com/hub",
    app="https://sense.example.com/sense/app/e7af59a0-c243-480d-9571-08727551a66f",
    generic=[
        GenericLink(
            id="runbook",
            text="Reload runbook",
            url="https://wiki.example.com/qlik/reload-runbook",
            comment="What to check first when a reload fails",
        )
    ],
)


def _script_log() -> ScriptLog:
    text = "\r\n".join(_SCRIPT_LOG_LINES)
    return ScriptLog(
        head=_SCRIPT_LOG_LINES[:10],
        tail=_SCRIPT_LOG_LINES[-10:],
        total_lines=len(_SCRIPT_LOG_LINES),
        size_bytes=len(text.encode()),
        full_text=text,
    )


def _task(task_id: str, name: str) -> Task:
    return Task(
        id=task_id,
        name=name,
        type="reload",
        tags=["Finance", "Daily"],
        custom_properties={
            "Butler_FailedAlertSendToEmail": ["finance-bi@example.com"],
            "Herald_Team": ["finance"],
        },
        manually_triggered=True,
        partial_reload=False,
        max_retries=0,
        session_timeout_minutes=1440,
        next_execution=None,
        modified_by="LAB\\goran",
        modified_at=datetime(2021, 2, 10, 8, 12, 45, tzinfo=UTC),
    )


def _app() -> App:
    return App(
        id="e7af59a0-c243-480d-9571-08727551a66f",
        name="Test failing reloads 2",
        description="Sales figures per region, reloaded every morning",
        stream=Stream(id="aaec8d41-5201-43ab-809f-3063750dfafd", name="Finance"),
        file_size=2_408_112,
        published=True,
        publish_time=datetime(2021, 1, 4, 10, 0, 0, tzinfo=UTC),
        last_reload=datetime(2021, 2, 15, 6, 0, 12, tzinfo=UTC),
        modified_by="LAB\\goran",
        modified_at=datetime(2021, 2, 15, 6, 0, 12, tzinfo=UTC),
        tags=["Sales"],
        custom_properties={"Department": ["Finance"]},
        owner=_APP_OWNER,
    )


def _execution(execution_id: str, status_code: int, status: str, start: datetime) -> Execution:
    stop = start + timedelta(seconds=19, milliseconds=99)
    return Execution(
        id=execution_id,
        result_id="9f2c8d4b-0b1a-4c3d-8e5f-6a7b8c9d0e1f",
        status_code=status_code,
        status=status,
        node="pro2-win1",
        started_at=start,
        stopped_at=stop,
        duration_ms=19_099,
        details=[
            ExecutionDetail(at=start, message="Changing task state from Triggered to Started"),
            ExecutionDetail(at=start, message="Reference to scriptlog added"),
            ExecutionDetail(at=stop, message=f"Changing task state from Started to {status}"),
        ],
    )


def sample_failed() -> TaskFailed:
    """A failed manual reload, fully enriched (the reference's webhook example)."""
    execution_id = "14a81bf5-f81c-4047-b1a1-193b0920de28"
    started = datetime(2021, 2, 16, 8, 24, 40, tzinfo=UTC)
    return TaskFailed(
        event_id=event_id_for("task_failed", execution_id),
        occurred_at=datetime(2021, 2, 16, 8, 24, 59, 99_000, tzinfo=UTC),
        received_at=datetime(2021, 2, 16, 8, 24, 59, 112_000, tzinfo=UTC),
        source="udp",
        sense_host="pro2-win1",
        log_timestamp="2021-02-16 09:24:59,099",
        task=_task(
            "dec2a02a-1680-44ef-8dc2-e2bfb180af87",
            "Manually triggered reload of Test failing reloads 2",
        ),
        app=_app(),
        execution=_execution(execution_id, 8, "FinishedFail", started),
        user="LAB\\goran",
        log_level="INFO",
        log_message="Max retries reached",
        script_log=_script_log(),
        links=_LINKS,
        enrichment=Enrichment(status="complete"),
    )


def sample_aborted() -> TaskAborted:
    execution_id = "5d0e7c11-2b6a-4f3e-9d1c-0a1b2c3d4e5f"
    started = datetime(2024, 10, 10, 13, 30, 2, tzinfo=UTC)
    failed = sample_failed()
    return TaskAborted(
        event_id=event_id_for("task_aborted", execution_id),
        occurred_at=datetime(2024, 10, 10, 13, 35, 25, 412_000, tzinfo=UTC),
        received_at=datetime(2024, 10, 10, 13, 35, 25, 430_000, tzinfo=UTC),
        sense_host="sense-node-2",
        log_timestamp="2024-10-10 15:35:25,412",
        task=failed.task,
        app=failed.app,
        execution=_execution(execution_id, 6, "Aborted", started),
        user="CORP\\anna",
        log_level="INFO",
        log_message="Execution State Change to Aborting",
        script_log=_script_log(),
        links=_LINKS,
    )


def sample_succeeded(*, recovers: TaskFailed | TaskAborted | None = None) -> TaskSucceeded:
    """A successful reload; with ``recovers`` it ends that earlier failure or abort."""
    execution_id = "0b9e3f2a-6c5d-4e7f-8a9b-1c2d3e4f5a6b"
    started = datetime(2024, 10, 10, 13, 59, 44, tzinfo=UTC)
    failed = sample_failed()
    return TaskSucceeded(
        event_id=event_id_for("task_succeeded", execution_id),
        occurred_at=datetime(2024, 10, 10, 14, 0, 3, 7_000, tzinfo=UTC),
        received_at=datetime(2024, 10, 10, 14, 0, 3, 20_000, tzinfo=UTC),
        sense_host="sense-node-1",
        log_timestamp="2024-10-10 16:00:03,007",
        task=failed.task,
        app=failed.app,
        execution=_execution(execution_id, 7, "FinishedSuccess", started),
        user="INTERNAL\\sa_scheduler",
        log_level="INFO",
        log_message="Execution State Change to FinishedSuccess",
        script_log=_script_log(),
        links=_LINKS,
        recovers=None if recovers is None else recovery_of(recovers),
    )


def sample_partial() -> TaskFailed:
    """A failure published while the QRS was down: only what the datagram says."""
    execution_id = "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f"
    return TaskFailed(
        event_id=event_id_for("task_failed", execution_id),
        occurred_at=datetime(2024, 10, 11, 4, 5, 6, 789_000, tzinfo=UTC),
        received_at=datetime(2024, 10, 11, 4, 5, 6, 800_000, tzinfo=UTC),
        sense_host="sense-node-1",
        log_timestamp="2024-10-11 06:05:06,789",
        task=Task(id="3f1c9a52-7d0e-4d2b-9a8e-0b7c1e2d4f60", name="Reload Sales dashboard"),
        app=App(id="8a2b6c1d-4e3f-4a5b-9c7d-1e2f3a4b5c6d", name="Sales dashboard"),
        execution=Execution(id=execution_id),
        user="INTERNAL\\sa_scheduler",
        log_level="INFO",
        log_message="Max retries reached",
        links=_LINKS,
        enrichment=Enrichment(
            status="partial",
            reasons=["QRS task lookup failed: connection refused after 3 attempts"],
        ),
    )


def sample_events() -> list[Event]:
    """One of each kind, a recovery and a partial event: what templates are rendered against."""
    failed = sample_failed()
    return [
        failed,
        sample_aborted(),
        sample_succeeded(),
        sample_succeeded(recovers=failed),
        sample_partial(),
    ]
