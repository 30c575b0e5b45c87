"""Execution results: what the QRS reports about one run of a task.

``new_execution`` builds a finished run (status, state-change details, script log, file
reference) the way the scheduler leaves it; ``record_outcome`` also makes it the task's last
execution result, which is what a scheduler datagram about that run refers to.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from herald_qlik_sim import scriptlogs
from herald_qlik_sim.model import (
    STATUS_OF,
    ZERO_GUID,
    Detail,
    Execution,
    Outcome,
    Site,
    Status,
    Task,
    TaskType,
    derived_id,
)

SCHEDULER_USER = "INTERNAL\\sa_scheduler"
# Tasks without a script (external program, distribute…) run this long in the sim.
_NON_RELOAD_ELAPSED = timedelta(seconds=42, milliseconds=318)


def elapsed(task: Task, outcome: Outcome) -> timedelta:
    if task.task_type == TaskType.RELOAD:
        return scriptlogs.elapsed(outcome)
    return _NON_RELOAD_ELAPSED


def new_execution(
    site: Site,
    task: Task,
    outcome: Outcome,
    *,
    result_id: str | None = None,
    execution_id: str | None = None,
    file_reference_id: str | None = None,
    start: datetime | None = None,
    node: str | None = None,
    user: str = SCHEDULER_USER,
) -> Execution:
    """A finished run of ``task``; by default it started just long enough ago to end now."""
    if start is None:
        start = datetime.now().astimezone() - elapsed(task, outcome)
    stop = start + elapsed(task, outcome)
    node = node or site.node
    result_id = result_id or str(uuid.uuid4())
    is_reload = task.task_type == TaskType.RELOAD
    if file_reference_id is None:
        file_reference_id = str(uuid.uuid4()) if is_reload else ZERO_GUID
    previous = task.last_execution.status if task.last_execution else Status.NEVER_STARTED
    rows: list[tuple[datetime, str]] = [
        (start - timedelta(seconds=1.2), f"Changing task state from {previous.text} to Triggered"),
        (
            start - timedelta(seconds=1.0),
            f"Trying to start task. Sending task to slave scheduler {node}",
        ),
        (start, "Changing task state from Triggered to Started"),
    ]
    if is_reload:
        rows.append((start + timedelta(milliseconds=300), "Reference to scriptlog added"))
    if outcome == "aborted":
        rows += [
            (stop - timedelta(seconds=0.4), "Changing task state from Started to AbortInitiated"),
            (stop - timedelta(seconds=0.2), "Changing task state from AbortInitiated to Aborting"),
            (stop, "Changing task state from Aborting to Aborted"),
        ]
    else:
        rows.append((stop, f"Changing task state from Started to {STATUS_OF[outcome].text}"))
    app_id = task.app_id or ""
    return Execution(
        id=result_id,
        task_id=task.id,
        execution_id=execution_id or str(uuid.uuid4()),
        status=STATUS_OF[outcome],
        node=node,
        start=start,
        stop=stop,
        file_reference_id=file_reference_id,
        details=[
            Detail(id=derived_id(result_id, "detail", str(index)), created=moment, message=text)
            for index, (moment, text) in enumerate(rows)
        ],
        script_log=(
            scriptlogs.script_log(outcome, start=start, user=user, app_id=app_id)
            if is_reload
            else ""
        ),
        app_id=task.app_id,
    )


def record_outcome(
    site: Site,
    task: Task,
    outcome: Outcome,
    *,
    execution_id: str | None = None,
    node: str | None = None,
    user: str = SCHEDULER_USER,
    start: datetime | None = None,
) -> Execution:
    """A fresh execution of ``task`` with this outcome, now its last execution result.

    ``start`` (aware) backdates it, for a repository that holds old failures; by default it
    ended just now.
    """
    execution = new_execution(
        site, task, outcome, execution_id=execution_id, node=node, user=user, start=start
    )
    site.record(execution)
    app = site.app_of(task)
    if app is not None and outcome == "succeeded":
        app.last_reload = execution.stop
    return execution
