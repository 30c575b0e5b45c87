"""Distinct events for tests: the sample failure as the n-th execution of its own task, in a
chosen stream, and the success that recovers from it."""

from __future__ import annotations

import msgspec

from herald_shared import events, samples


def failure(n: int, stream: str = "Finance", name: str | None = None) -> events.TaskFailed:
    """The sample failure as execution ``n`` of task ``n``, its app in ``stream``."""
    base = samples.sample_failed()
    execution_id = f"00000000-0000-4000-8000-{n:012d}"
    assert base.app is not None
    assert base.app.stream is not None
    app = msgspec.structs.replace(
        base.app, stream=msgspec.structs.replace(base.app.stream, name=stream)
    )
    task = msgspec.structs.replace(
        base.task,
        id=f"11111111-0000-4000-8000-{n:012d}",
        name=name if name is not None else base.task.name,
    )
    return msgspec.structs.replace(
        base,
        event_id=events.event_id_for("task_failed", execution_id),
        execution=msgspec.structs.replace(base.execution, id=execution_id),
        app=app,
        task=task,
    )


def recovery_of(failed: events.TaskFailed, n: int) -> events.TaskSucceeded:
    """A success of ``failed``'s task that recovers from it (execution ``n``)."""
    base = samples.sample_succeeded(recovers=failed)
    execution_id = f"00000000-0000-4000-9000-{n:012d}"
    return msgspec.structs.replace(
        base,
        event_id=events.event_id_for("task_succeeded", execution_id),
        execution=msgspec.structs.replace(base.execution, id=execution_id),
        task=failed.task,
        app=failed.app,
    )
