"""What the sim does wrong on purpose, and what it was asked.

``Faults`` is read on every QRS call, so changing a field takes effect at once (tests set
attributes; ``POST /control`` and the ``serve`` flags go through ``update``). ``CallLog`` counts
the calls per endpoint (the aiohttp route names in ``qrs.ENDPOINTS``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any


class FaultError(ValueError):
    """An unknown fault or a value of the wrong kind."""


@dataclass
class Faults:
    latency: float = 0.0
    """Seconds added to every QRS call before it is answered."""
    fail_rate: float = 0.0
    """Share of calls answered with ``fail_status`` (0 to 1; 1 means always)."""
    fail_next: int = 0
    """The next N calls are answered with ``fail_status`` (counts down)."""
    fail_status: int = 500
    hang: bool = False
    """Accept every call and never answer it (until the sim stops or ``release_hung``)."""
    hang_next: int = 0
    """The next N calls hang (counts down)."""
    endpoints: set[str] = field(default_factory=set)
    """Latency, failures and hangs only hit these endpoints (empty: all of them)."""
    deleted_tasks: set[str] = field(default_factory=set)
    """These task ids are gone: ``task``/``task/full`` filters miss them, the rest answers 404."""
    garbled_tasks: set[str] = field(default_factory=set)
    """These task ids are answered (``task/full``, ``reloadtask/{id}``) with fields of the wrong
    JSON type, as a QRS of an unforeseen version or a broken proxy might: ``tags`` a number,
    ``maxRetries`` a string."""
    script_log_not_ready: int = 0
    """The first N script-log downloads of each execution answer 404 ("asked too soon")."""
    zero_file_reference: int = 0
    """The first N ``reloadtask/{id}`` reads of each execution show an all-zero fileReferenceID."""
    seed: int | None = None
    """Seed of the draw behind ``fail_rate`` (None: unpredictable)."""
    _random: random.Random = field(default_factory=random.Random, init=False, repr=False)

    def __post_init__(self) -> None:
        self.deleted_tasks = {task_id.lower() for task_id in self.deleted_tasks}
        self.garbled_tasks = {task_id.lower() for task_id in self.garbled_tasks}
        self._random.seed(self.seed)

    def applies_to(self, endpoint: str) -> bool:
        return not self.endpoints or endpoint in self.endpoints

    def take_hang(self) -> bool:
        if self.hang:
            return True
        if self.hang_next > 0:
            self.hang_next -= 1
            return True
        return False

    def take_failure(self) -> bool:
        if self.fail_next > 0:
            self.fail_next -= 1
            return True
        return self.fail_rate > 0 and self._random.random() < self.fail_rate

    def is_deleted(self, task_id: str) -> bool:
        return task_id.lower() in self.deleted_tasks

    def is_garbled(self, task_id: str) -> bool:
        return task_id.lower() in self.garbled_tasks

    def delete_task(self, task_id: str) -> None:
        self.deleted_tasks.add(task_id.lower())

    def restore_task(self, task_id: str) -> None:
        self.deleted_tasks.discard(task_id.lower())

    def clear(self) -> None:
        """Back to a well-behaved site."""
        for name, value in vars(Faults()).items():
            if name != "_random":
                setattr(self, name, value)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Set faults from JSON-like values; nothing changes when one of them is wrong."""
        converted: dict[str, Any] = {}
        for name, value in changes.items():
            convert = _CONVERTERS.get(name)
            if convert is None:
                raise FaultError(
                    f"unknown fault {name!r} (known: {', '.join(sorted(_CONVERTERS))})"
                )
            try:
                converted[name] = convert(value)
            except (TypeError, ValueError) as error:
                raise FaultError(f"{name}: {error}") from None
        for name, value in converted.items():
            setattr(self, name, value)
        if "seed" in converted:
            self._random.seed(self.seed)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {}
        for item in fields(self):
            if item.name.startswith("_"):
                continue
            value = getattr(self, item.name)
            document[item.name] = sorted(value) if isinstance(value, set) else value
        return document


def _number(low: float, high: float | None = None) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a number, got {value!r}")
        if value < low or (high is not None and value > high):
            raise ValueError(f"{value} is outside {low}..{high if high is not None else ''}")
        return float(value)

    return convert


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a whole number >= 0, got {value!r}")
    return value


def _status(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599:
        raise ValueError(f"expected an HTTP error status (400-599), got {value!r}")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _names(lower: bool) -> Callable[[Any], set[str]]:
    def convert(value: Any) -> set[str]:
        if not isinstance(value, list | tuple | set) or not all(isinstance(v, str) for v in value):
            raise TypeError(f"expected a list of strings, got {value!r}")
        return {v.lower() if lower else v for v in value}

    return convert


def _seed(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a whole number or null, got {value!r}")
    return value


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "latency": _number(0.0),
    "fail_rate": _number(0.0, 1.0),
    "fail_next": _count,
    "fail_status": _status,
    "hang": _flag,
    "hang_next": _count,
    "endpoints": _names(lower=False),
    "deleted_tasks": _names(lower=True),
    "garbled_tasks": _names(lower=True),
    "script_log_not_ready": _count,
    "zero_file_reference": _count,
    "seed": _seed,
}


@dataclass
class Call:
    endpoint: str
    method: str
    path: str  # with the query string, as received
    status: int = 0  # what it was answered with; 0 while unanswered
    headers: dict[str, str] = field(default_factory=dict)  # the request's, as received


@dataclass
class CallLog:
    """Every QRS call, in order; ``calls["task_full"]`` is how many went to that endpoint."""

    records: list[Call] = field(default_factory=list)

    def add(self, call: Call) -> None:
        self.records.append(call)

    def __getitem__(self, endpoint: str) -> int:
        return sum(1 for call in self.records if call.endpoint == endpoint)

    def __len__(self) -> int:
        return len(self.records)

    def counts(self) -> dict[str, int]:
        return dict(Counter(call.endpoint for call in self.records))

    def clear(self) -> None:
        self.records.clear()
