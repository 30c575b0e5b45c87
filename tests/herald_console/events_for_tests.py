"""Events and receipts as the pipeline publishes them, stamped now (the console forgets what is
older than its retention)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from herald_shared import events
from herald_shared.delivery import receipts
from herald_testkit import made_events


def failure_now(n: int, *, name: str | None = None, stream: str = "Finance") -> events.TaskFailed:
    now = datetime.now(UTC)
    event = made_events.failure(n, stream=stream, name=name)
    return msgspec.structs.replace(event, occurred_at=now, received_at=now)


def receipt(
    event: events.Event, service: str, destination: str, outcome: str, **more: object
) -> bytes:
    values: dict[str, object] = {
        "event_id": event.event_id,
        "kind": event.kind,
        "task_id": event.task.id,
        "task_name": event.task.name,
        "service": service,
        "destination": destination,
        "target": "",
        "outcome": outcome,
        "attempts": 1,
        "at": datetime.now(UTC),
    }
    values.update(more)
    return receipts.encode(values)


def dead_letter(event: events.Event, service: str, destination: str, reason: str) -> bytes:
    return receipts.encode(
        receipts.DeadLetter(
            service=service,
            destination=destination,
            target="",
            reason=reason,
            attempts=5,
            at=datetime.now(UTC),
            event=event,
        )
    )
