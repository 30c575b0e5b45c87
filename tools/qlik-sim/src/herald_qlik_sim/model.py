"""The objects of a simulated Qlik Sense site: users, streams, apps, tasks and their executions.

These are plain records; ``shapes`` renders them as QRS JSON and ``data`` fills a site with the
fixed demo content. A ``Site`` also records fresh executions (``record_execution``), which is
what a scheduler datagram from ``emit`` refers to.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Literal, TypeAlias

_NAMESPACE = uuid.UUID("5f0b1c9e-3a57-4d84-9c1e-7a2f6b8d4e10")


def derived_id(*parts: str) -> str:
    """A stable GUID for a secondary object (a detail row, a custom-property value…)."""
    return str(uuid.uuid5(_NAMESPACE, ":".join(parts)))


Outcome: TypeAlias = Literal["failed", "aborted", "succeeded"]
OUTCOMES: tuple[Outcome, ...] = ("failed", "aborted", "succeeded")

ZERO_GUID = "00000000-0000-0000-0000-000000000000"
# The QRS "no date" placeholder (never executed, never scheduled, not published).
NEVER = datetime(1753, 1, 1, tzinfo=UTC)


class TaskType(IntEnum):
    RELOAD = 0
    EXTERNAL_PROGRAM = 1
    USER_SYNC = 2
    DISTRIBUTE = 3
    PRELOAD = 4


class Status(IntEnum):
    """``operational.lastExecutionResult.status`` (docs/butler-compatibility.md §2.4)."""

    NEVER_STARTED = 0
    TRIGGERED = 1
    STARTED = 2
    QUEUED = 3
    ABORT_INITIATED = 4
    ABORTING = 5
    ABORTED = 6
    FINISHED_SUCCESS = 7
    FINISHED_FAIL = 8
    SKIPPED = 9
    RETRY = 10
    ERROR = 11
    RESET = 12
    DISTRIBUTION_QUEUE = 13
    DISTRIBUTION_RUNNING = 14

    @property
    def text(self) -> str:
        """``FinishedFail``, ``AbortInitiated``…: the name QRS and the scheduler log use."""
        return "".join(part.capitalize() for part in self.name.split("_"))


STATUS_OF: dict[Outcome, Status] = {
    "failed": Status.FINISHED_FAIL,
    "aborted": Status.ABORTED,
    "succeeded": Status.FINISHED_SUCCESS,
}

# ExecutionResultDetail.detailsType as the sim writes it (every state-change row is informational).
DETAILS_INFORMATION = 2


@dataclass
class User:
    id: str
    user_directory: str
    user_id: str
    name: str
    emails: list[str] = field(default_factory=list)


@dataclass
class Stream:
    id: str
    name: str


@dataclass
class Tag:
    id: str
    name: str


@dataclass
class CustomPropertyDefinition:
    id: str
    name: str
    choice_values: list[str] = field(default_factory=list)
    object_types: list[str] = field(default_factory=lambda: ["ReloadTask"])


@dataclass
class CustomPropertyValue:
    id: str
    definition: CustomPropertyDefinition
    value: str


@dataclass
class App:
    id: str
    name: str
    owner_id: str
    description: str = ""
    stream: Stream | None = None
    file_size: int = 0
    created: datetime = NEVER
    modified: datetime = NEVER
    modified_by: str = ""
    last_reload: datetime = NEVER
    publish_time: datetime = NEVER
    tags: list[Tag] = field(default_factory=list)
    custom_properties: list[CustomPropertyValue] = field(default_factory=list)

    @property
    def published(self) -> bool:
        return self.stream is not None


@dataclass
class Detail:
    id: str
    created: datetime
    message: str
    details_type: int = DETAILS_INFORMATION


@dataclass
class Execution:
    """One ExecutionResult; ``execution_id`` is the scheduler's id, the one the datagram carries."""

    id: str
    task_id: str
    execution_id: str
    status: Status
    node: str
    start: datetime  # aware; its zone is the node's local time, used in the script log
    stop: datetime
    file_reference_id: str
    details: list[Detail]
    script_log: str  # CRLF line endings
    app_id: str | None = None
    # How often it was read and downloaded: the "not ready yet" faults count per execution.
    reads: int = 0
    downloads: int = 0

    @property
    def duration_ms(self) -> int:
        if self.stop <= self.start:
            return 0
        return int((self.stop - self.start) / timedelta(milliseconds=1))

    @property
    def script_log_size(self) -> int:
        return len(self.script_log.encode())


@dataclass
class Task:
    id: str
    name: str
    task_type: TaskType
    app_id: str | None = None
    enabled: bool = True
    tags: list[Tag] = field(default_factory=list)
    custom_properties: list[CustomPropertyValue] = field(default_factory=list)
    is_manually_triggered: bool = False
    is_partial_reload: bool = False
    max_retries: int = 0
    modified_by: str = ""
    modified: datetime = NEVER
    created: datetime = NEVER
    session_timeout: int = 1440
    next_execution: datetime = NEVER
    # External program tasks only.
    path: str = ""
    parameters: str = ""
    executions: list[Execution] = field(default_factory=list)

    @property
    def operational_id(self) -> str:
        return derived_id(self.id, "operational")

    @property
    def last_execution(self) -> Execution | None:
        return self.executions[-1] if self.executions else None


@dataclass
class Site:
    users: dict[str, User] = field(default_factory=dict)
    streams: dict[str, Stream] = field(default_factory=dict)
    apps: dict[str, App] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    # Every custom property the QMC defines, by name (``/qrs/custompropertydefinition``).
    custom_property_definitions: dict[str, CustomPropertyDefinition] = field(default_factory=dict)
    node: str = "sense-node-1"
    # Every run by result id, by the scheduler's execution id and by file reference, so that a
    # sim holding a benchmark's tens of thousands of runs answers one in constant time.
    by_result_id: dict[str, Execution] = field(default_factory=dict, repr=False)
    by_execution_id: dict[str, Execution] = field(default_factory=dict, repr=False)
    by_file_reference: dict[str, Execution] = field(default_factory=dict, repr=False)

    def add(self, *items: User | Stream | App | Task) -> None:
        for item in items:
            if isinstance(item, User):
                self.users[item.id] = item
            elif isinstance(item, Stream):
                self.streams[item.id] = item
            elif isinstance(item, App):
                self.apps[item.id] = item
            else:
                self.tasks[item.id] = item

    def task(self, key: str) -> Task | None:
        """A task by GUID (any case) or by exact name."""
        found = self.tasks.get(key.lower())
        if found is not None:
            return found
        return next((task for task in self.tasks.values() if task.name == key), None)

    def app_of(self, task: Task) -> App | None:
        return self.apps.get(task.app_id) if task.app_id else None

    def record(self, execution: Execution) -> None:
        """Make ``execution`` its task's last execution result."""
        self.tasks[execution.task_id].executions.append(execution)
        self.by_result_id[execution.id.lower()] = execution
        self.by_execution_id[execution.execution_id.lower()] = execution
        if execution.file_reference_id != ZERO_GUID:
            self.by_file_reference[execution.file_reference_id.lower()] = execution

    def execution(self, execution_result_id: str) -> Execution | None:
        return self.by_result_id.get(execution_result_id.lower())
