"""Herald's events: one struct per fact, a tagged union on ``kind``, JSON on the wire.

Ingest publishes exactly one event per accepted scheduler datagram; every subscriber reads it and
nothing else (subscribers never call the QRS). Fields are only ever added, with defaults, so an
old subscriber keeps decoding a newer event; a breaking change gets a new topic version.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Final, Literal, TypeAlias

import msgspec

__all__ = [
    "KINDS",
    "TASK_TYPES",
    "TEST_LABEL",
    "App",
    "Enrichment",
    "Event",
    "Execution",
    "ExecutionDetail",
    "GenericLink",
    "Kind",
    "Links",
    "Owner",
    "Recovery",
    "ScriptLog",
    "Stream",
    "Task",
    "TaskAborted",
    "TaskFailed",
    "TaskSucceeded",
    "TaskType",
    "decode",
    "encode",
    "event_class",
    "event_id_for",
    "labelled",
    "recovery_of",
    "to_builtins",
]

Kind: TypeAlias = Literal["task_failed", "task_aborted", "task_succeeded"]
TaskType: TypeAlias = Literal["reload", "external_program", "user_sync", "distribute", "preload"]

KINDS: Final[tuple[Kind, ...]] = ("task_failed", "task_aborted", "task_succeeded")
TASK_TYPES: Final[tuple[TaskType, ...]] = (
    "reload",
    "external_program",
    "user_sync",
    "distribute",
    "preload",
)


class _Part(msgspec.Struct, kw_only=True):
    """Base of every part of an event: keyword-only, and unknown fields from newer senders ignored."""


class Owner(_Part, kw_only=True):
    """The app owner, as the QRS user record has it."""

    id: str
    directory: str = ""
    user_id: str = ""
    name: str = ""
    emails: list[str] = msgspec.field(default_factory=list)


class Stream(_Part, kw_only=True):
    id: str
    name: str


class Task(_Part, kw_only=True):
    id: str
    name: str
    type: TaskType = "reload"
    tags: list[str] = msgspec.field(default_factory=list)
    # Custom property name -> every value set on the task (a Qlik custom property is multi-valued).
    custom_properties: dict[str, list[str]] = msgspec.field(default_factory=dict)
    manually_triggered: bool | None = None
    partial_reload: bool | None = None
    max_retries: int | None = None
    session_timeout_minutes: int | None = None
    next_execution: datetime | None = None  # None: never scheduled again
    modified_by: str | None = None
    modified_at: datetime | None = None
    # The QRS task/full object as the QRS sent it (None: not enriched), for Butler's
    # qs_taskMetadata, which consumers read whole.
    qrs: dict[str, Any] | None = None


class App(_Part, kw_only=True):
    id: str
    name: str
    description: str = ""
    stream: Stream | None = None  # None: not published
    file_size: int | None = None
    published: bool | None = None
    publish_time: datetime | None = None
    last_reload: datetime | None = None
    modified_by: str | None = None
    modified_at: datetime | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    custom_properties: dict[str, list[str]] = msgspec.field(default_factory=dict)
    owner: Owner | None = None
    # The QRS app/full object as the QRS sent it (None: not enriched), for Butler's qs_appMetadata.
    qrs: dict[str, Any] | None = None


class ExecutionDetail(_Part, kw_only=True):
    """One row of the scheduler's state history for this execution."""

    at: datetime | None
    message: str
    detail_type: int | None = None


class Execution(_Part, kw_only=True):
    id: str  # the scheduler's ExecutionId from the datagram
    result_id: str | None = None  # the QRS execution result behind it
    status_code: int | None = None
    status: str | None = None  # QRS status text, e.g. FinishedFail
    node: str | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    duration_ms: int | None = None
    details: list[ExecutionDetail] = msgspec.field(default_factory=list)


class ScriptLog(_Part, kw_only=True):
    head: list[str] = msgspec.field(default_factory=list)
    tail: list[str] = msgspec.field(default_factory=list)
    total_lines: int = 0
    size_bytes: int = 0
    # The whole log up to the configured cap (default 5 MiB), for the log archiver and the
    # New Relic log API; None when ingest was configured not to carry it.
    full_text: str | None = None
    full_text_truncated: bool = False


class GenericLink(_Part, kw_only=True):
    id: str
    text: str
    url: str
    comment: str = ""


class Links(_Part, kw_only=True):
    qmc: str | None = None
    hub: str | None = None
    app: str | None = None
    generic: list[GenericLink] = msgspec.field(default_factory=list)


class Enrichment(_Part, kw_only=True):
    """Whether the QRS answered every call; an alert is never held back waiting for it."""

    status: Literal["complete", "partial"] = "complete"
    reasons: list[str] = msgspec.field(default_factory=list)


class Recovery(_Part, kw_only=True):
    """The failure or abort that a success ends."""

    event_id: str
    kind: Literal["task_failed", "task_aborted"]
    occurred_at: datetime


class _EventBody(_Part, kw_only=True, tag_field="kind"):
    event_id: str
    occurred_at: datetime  # UTC, from the scheduler's timestamp
    received_at: datetime  # UTC, when ingest received the datagram
    source: str = "udp"
    # A test alert (``herald send-test``): every destination labels it as a test, none rate
    # limits it or counts it in the reload dashboards, and it goes to configured recipients only.
    test: bool = False
    sense_host: str = ""
    # The scheduler's timestamp exactly as sent (the Sense node's local time), e.g.
    # "2021-02-16 09:24:59,099": Butler's file names and payloads are built from it.
    log_timestamp: str = ""
    task: Task
    app: App | None = None  # absent for tasks that have no app
    execution: Execution
    user: str = ""  # directory\user id from the datagram
    log_level: str = ""
    log_message: str = ""
    script_log: ScriptLog | None = None
    links: Links = msgspec.field(default_factory=Links)
    enrichment: Enrichment = msgspec.field(default_factory=Enrichment)

    @property
    def kind(self) -> Kind:
        # msgspec stores the tag on the class; this makes it readable from an instance.
        return self.__struct_config__.tag  # type: ignore[return-value]


class TaskFailed(_EventBody, kw_only=True, tag="task_failed"):
    pass


class TaskAborted(_EventBody, kw_only=True, tag="task_aborted"):
    pass


class TaskSucceeded(_EventBody, kw_only=True, tag="task_succeeded"):
    recovers: Recovery | None = None  # set when this success follows a failure or an abort


Event: TypeAlias = TaskFailed | TaskAborted | TaskSucceeded

_EVENT_CLASSES: Final[dict[str, type[Event]]] = {
    "task_failed": TaskFailed,
    "task_aborted": TaskAborted,
    "task_succeeded": TaskSucceeded,
}

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)


def encode(event: Event) -> bytes:
    """The event as JSON bytes, as published on the bus."""
    return _encoder.encode(event)


def decode(payload: bytes | str) -> Event:
    """An event from JSON; raises :class:`msgspec.ValidationError` or :class:`msgspec.DecodeError`."""
    return _decoder.decode(payload)


def to_builtins(event: Event) -> dict[str, Any]:
    """The event as plain JSON-compatible Python values (for payloads that embed it)."""
    result: dict[str, Any] = msgspec.to_builtins(event)
    return result


def event_class(kind: Kind) -> type[Event]:
    return _EVENT_CLASSES[kind]


def recovery_of(event: TaskFailed | TaskAborted) -> Recovery:
    """What a later success carries to say it ends ``event``."""
    kind: Literal["task_failed", "task_aborted"] = (
        "task_failed" if isinstance(event, TaskFailed) else "task_aborted"
    )
    return Recovery(event_id=event.event_id, kind=kind, occurred_at=event.occurred_at)


TEST_LABEL: Final = "[TEST]"


def labelled(event: Event, title: str) -> str:
    """A title a person reads, marked ``[TEST]`` for a test alert so nobody acts on it."""
    return f"{TEST_LABEL} {title}" if event.test else title


def event_id_for(kind: Kind, execution_id: str) -> str:
    """Deterministic id: the same execution reported twice (two nodes, a resend) has one id.

    The kind is part of it because one execution can legitimately be aborted and then fail.
    """
    digest = hashlib.sha256(f"{kind}:{execution_id.lower()}".encode()).hexdigest()
    return f"{kind}-{digest[:32]}"
