"""The one vocabulary for what happened to a task, as every ``outcomes:`` key and template sees it.

``failed`` and ``aborted`` are the task's own result; ``succeeded`` is a success, and
``recovered`` a success that ends an earlier failure or abort ("running again"). A destination
that does not list ``recovered`` hears about such a success as ``succeeded``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final, Literal, TypeAlias

from herald_shared.events import Event, Recovery, TaskAborted, TaskFailed, TaskType

__all__ = [
    "OUTCOMES",
    "PROBLEMS",
    "Outcome",
    "Problem",
    "outcome_of",
    "problem_outcomes",
    "problems",
    "recovered_from",
    "task_type_text",
]

Outcome: TypeAlias = Literal["failed", "aborted", "succeeded", "recovered"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("failed", "aborted", "succeeded", "recovered")
#: The outcomes that are a problem: what most destinations alert on by default.
Problem: TypeAlias = Literal["failed", "aborted"]
PROBLEMS: Final[tuple[Problem, ...]] = ("failed", "aborted")


def problems() -> list[Problem]:
    """A fresh default ``outcomes:`` list: the problems."""
    return list(PROBLEMS)


def problem_outcomes() -> list[Outcome]:
    """The same, for an ``outcomes:`` key that also takes successes."""
    return list(PROBLEMS)


def recovered_from(recovery: Recovery) -> Problem:
    """The outcome of the failure or abort that a success ends."""
    return "failed" if recovery.kind == "task_failed" else "aborted"


def outcome_of(event: Event, wanted: Collection[Outcome] = OUTCOMES) -> Outcome | None:
    """Which of the ``wanted`` outcomes ``event`` is; None when it is none of them."""
    if isinstance(event, TaskFailed):
        return "failed" if "failed" in wanted else None
    if isinstance(event, TaskAborted):
        return "aborted" if "aborted" in wanted else None
    if event.recovers is not None and "recovered" in wanted:
        return "recovered"
    return "succeeded" if "succeeded" in wanted else None


_TASK_TYPE_TEXT: Final[dict[TaskType, str]] = {
    "reload": "reload",
    "external_program": "external program",
    "user_sync": "user sync",
    "distribute": "distribute",
    "preload": "preload",
}


def task_type_text(event: Event) -> str:
    """The task's type as titles and subjects say it ("reload", "external program", …), so an
    external program that failed is not announced as a failed reload."""
    return _TASK_TYPE_TEXT[event.task.type]
