"""The Qlik Sense scheduler's UDP datagram, parsed: pure functions, no networking.

:func:`parse` turns the raw bytes of one datagram into either a :class:`Datagram` or a
:class:`Rejection`. It never raises for any input bytes (only for a nonsensical limit argument),
so the receive loop can call it without a ``try``.

Wire format (docs/butler-compatibility.md §1.2): UTF-8 text, 11 fields separated by ``;`` with no quoting::

    type;host;taskName;appName;user;taskId;appId;timestamp;level;executionId;message

Steps, in order:

1. **Size.** More than ``max_datagram_bytes`` bytes: ``too_large`` (checked before decoding).
2. **Decode** as strict UTF-8; invalid UTF-8 is ``not_utf8`` (nothing is silently replaced).
3. **Framing.** A leading byte-order mark and surrounding spaces, tabs, CR and LF of the whole
   datagram are dropped; this does not count as sanitizing (a consequence: trailing spaces of
   the message, the last field, are lost).
4. **Control characters** (C0 ``U+0000-U+001F`` including TAB/CR/LF, ``U+007F`` and C1
   ``U+0080-U+009F``) are deleted everywhere. Deleting them before splitting is the same as
   deleting them per field, because ``;`` is not one of them.
5. **Type** (field 0, trimmed, case-insensitive): one of :data:`MESSAGE_TYPES`, with one or more
   trailing slashes (the shipped XML sends ``/scheduler-task-success//``); otherwise
   ``unknown_type``. :attr:`Datagram.message_type` is the lower-cased identifier with a single
   trailing slash. ``/engine-reload-failed/`` is validated as Butler does (exactly 9 fields;
   field 2, the app id, a GUID when non-empty: ``field_count`` / ``bad_app_id``) and then
   rejected as ``engine_ignored``: Herald makes no event of it.
6. **Fields.** Fewer than 11 ``;``-separated segments: ``field_count``. Unlike Butler's plain
   ``split(';')``, ``;`` inside the task name, the app name and the message is tolerated (see
   below), so there is no "too many fields" for scheduler types.
7. **Validation**: task id a GUID (``bad_task_id``), app id a GUID or empty (``bad_app_id``),
   timestamp in log4net's ``YYYY-MM-DD HH:MM:SS,fff`` form and a real date (``bad_timestamp``),
   execution id a GUID (``bad_execution_id``). GUIDs are compared case-insensitively and
   returned lower-cased.
8. **Truncation** of each free-text field (host, task name, app name, user, level, message) to
   ``max_field_length`` characters. Python counts code points; Butler counts UTF-16 code units,
   so a text with characters outside the BMP keeps slightly more of it here.
9. **Clock.** A real timestamp outside :data:`EARLIEST_TIMESTAMP` .. :data:`LATEST_TIMESTAMP`
   (a Sense node whose clock was reset, e.g. ``0001-01-01 00:00:00,000``) is not a reason to
   lose the alert: the datagram is accepted, :attr:`Datagram.log_timestamp` keeps what was sent
   (so the alert shows the node's wrong clock), and :attr:`Datagram.clock_problem` says why the
   time ingest received the datagram must stand in for it (enrichment does that, and publishes
   the reason with the event). Such a time would also be beyond what converting the node's
   local time to UTC can represent.

``sanitized`` is true when step 4 deleted anything or step 8 truncated anything; a clock problem
is not sanitizing, since nothing of the datagram was changed.

Splitting rule (how ``;`` inside names and message is resolved)
---------------------------------------------------------------

The fields from the task id on have a fixed shape, which anchors the split: the task id segment
``t`` must be a GUID, ``t+1`` a GUID or empty (app id), ``t+2`` a timestamp, ``t+3`` anything
(level), ``t+4`` a GUID (execution id); everything after the execution id's ``;`` is the message,
``;`` included. ``t`` is at least 5 (type, host, task name, app name and user come first).

* **Choosing the anchor.** Every ``t`` that fits is a candidate. The first candidate (from the
  left) whose user segment ``t-1`` contains a backslash (``DIRECTORY\\userid``) wins; when none
  does, the first candidate wins. Scanning from the left means a message that happens to contain
  a GUID;GUID;timestamp;level;GUID run cannot move the anchor; the backslash preference means a
  task name that contains such a run cannot either (the real user is ``LAB\\goran``, the fake
  one is a piece of the task name).
* **User** is segment ``t-1``; **host** is segment 1.
* **Task name / app name** are what lies between: segments ``2 .. t-2``. With two segments there
  is nothing to resolve. With more, the extra ``;`` belongs to the task name or the app name:

  1. if the app id is empty, the task has no app: the app name is the last segment (normally
     empty) and the task name is the rest;
  2. otherwise, if some split makes the task name end with a non-empty app name (Qlik's default
     names ``Reload task of <app>`` and ``Manually triggered reload of <app>``), the split with
     the longest such app name wins;
  3. otherwise the app name is the last segment and the extra segments go to the task name.

  The rule is exact whenever the app name has no ``;``, or the task name is a ``;``-free prefix
  followed by the app name. It can still guess wrong for an app name containing ``;`` that is
  not the end of its task's name (nothing in the datagram tells those apart); the joined text
  ``task_name + ";" + app_name`` is always what was sent.

When no anchor fits, the rejection reason comes from the first timestamp-shaped segment at a
plausible position (its neighbours are then checked as task id, app id and execution id), or,
without one, from Butler's fixed positions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, TypeAlias, get_args

from herald_shared.events import Kind, event_id_for

__all__ = [
    "EARLIEST_TIMESTAMP",
    "ENGINE_MESSAGE_TYPE",
    "LATEST_TIMESTAMP",
    "MAX_DATAGRAM_BYTES",
    "MAX_FIELD_LENGTH",
    "MESSAGE_TYPES",
    "OUTCOMES",
    "REJECTION_REASONS",
    "Datagram",
    "Outcome",
    "Rejection",
    "RejectionReason",
    "cap",
    "parse",
]

Outcome: TypeAlias = Literal["failed", "aborted", "succeeded", "distribute"]
RejectionReason: TypeAlias = Literal[
    "too_large",
    "not_utf8",
    "unknown_type",
    "field_count",
    "bad_task_id",
    "bad_app_id",
    "bad_timestamp",
    "bad_execution_id",
    "engine_ignored",
]

OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)
# Every reason a datagram can be rejected for: the complete label set of the rejection counter.
REJECTION_REASONS: Final[tuple[RejectionReason, ...]] = get_args(RejectionReason)

MAX_FIELD_LENGTH: Final = 500
MAX_DATAGRAM_BYTES: Final = 65507
# The scheduler's timestamps that are taken as the time of the event (step 9): Qlik Sense did not
# exist before 2000, and every time in the range converts to UTC in any zone.
EARLIEST_TIMESTAMP: Final = datetime(2000, 1, 1)
LATEST_TIMESTAMP: Final = datetime(2099, 12, 31, 23, 59, 59, 999000)

# Normalized identifier (lower case, one trailing slash) -> outcome (docs/butler-compatibility.md §1.3).
MESSAGE_TYPES: Final[dict[str, Outcome]] = {
    "/scheduler-task-failed/": "failed",
    "/scheduler-reload-failed/": "failed",
    "/scheduler-reloadtask-failed/": "failed",
    "/scheduler-task-aborted/": "aborted",
    "/scheduler-reload-aborted/": "aborted",
    "/scheduler-task-success/": "succeeded",
    "/scheduler-reloadtask-success/": "succeeded",
    "/scheduler-distribute/": "distribute",
}
ENGINE_MESSAGE_TYPE: Final = "/engine-reload-failed/"

_KINDS: Final[dict[Outcome, Kind | None]] = {
    "failed": "task_failed",
    "aborted": "task_aborted",
    "succeeded": "task_succeeded",
    "distribute": None,
}

_SCHEDULER_FIELDS: Final = 11
_ENGINE_FIELDS: Final = 9
_FIRST_TASK_ID: Final = 5  # type, host, task name, app name, user come first

_GUID: Final = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I | re.A
)
_TIMESTAMP_SHAPE: Final = (
    r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2}),([0-9]{3})"
)
_TIMESTAMP: Final = re.compile(_TIMESTAMP_SHAPE, re.A)
# A whole segment of that shape, found in the datagram's text: ';' on both sides.
_TIMESTAMP_SEGMENT: Final = re.compile(f"(?<=;){_TIMESTAMP_SHAPE}(?=;)", re.A)
_TIMESTAMP_FORMAT: Final = "%Y-%m-%d %H:%M:%S,%f"
_GUID_LENGTH: Final = 36
_TIMESTAMP_LENGTH: Final = 23
_TYPE: Final = re.compile(r"(/[a-z-]+)/+", re.A)
_FRAMING: Final = " \t\r\n"
_CONTROL: Final[dict[int, None]] = dict.fromkeys([*range(0x20), 0x7F, *range(0x80, 0xA0)])

# A rejection's detail quotes at most this much of the datagram, plus at most one short value.
_EXCERPT: Final = 160
_VALUE: Final = 40


@dataclass(frozen=True, slots=True, kw_only=True)
class Datagram:
    """One accepted scheduler datagram, sanitized and validated."""

    message_type: str  # normalized identifier, e.g. "/scheduler-task-success/"
    outcome: Outcome
    host: str
    task_name: str
    app_name: str  # "" for a task without an app
    user: str  # DIRECTORY\userid
    task_id: str  # lower-case GUID
    app_id: str  # lower-case GUID, or ""
    log_timestamp: str  # as sent, the Sense node's local time: "2021-02-16 09:24:59,099"
    log_level: str
    execution_id: str  # lower-case GUID
    message: str
    sanitized: bool = False  # control characters were deleted or a field was truncated
    # Why log_timestamp cannot be the time of the event (step 9); "" when it can.
    clock_problem: str = ""

    @property
    def kind(self) -> Kind | None:
        """The event kind, or None for ``distribute``: its outcome comes from the QRS later."""
        return _KINDS[self.outcome]

    @property
    def event_id(self) -> str | None:
        """The deterministic event id (None for ``distribute``, whose kind is not known yet)."""
        kind = self.kind
        return None if kind is None else event_id_for(kind, self.execution_id)

    @property
    def logged_at(self) -> datetime:
        """:attr:`log_timestamp` as a naive datetime (the Sense node's local time)."""
        return datetime.strptime(self.log_timestamp, _TIMESTAMP_FORMAT)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    """Why a datagram made no event.

    ``reason`` is a short stable code (a metric label, one of :data:`REJECTION_REASONS`);
    ``detail`` is a one-line explanation for a rate-limited log line that quotes at most about
    200 characters of the datagram.
    """

    reason: RejectionReason
    detail: str
    message_type: str | None = None  # the normalized identifier, once it is known


def parse(
    data: bytes,
    *,
    max_field_length: int = MAX_FIELD_LENGTH,
    max_datagram_bytes: int = MAX_DATAGRAM_BYTES,
) -> Datagram | Rejection:
    """Parse one datagram; see the module docstring for the rules.

    Raises :class:`ValueError` only when ``max_field_length`` < 1 or ``max_datagram_bytes`` < 0.
    """
    if max_field_length < 1:
        raise ValueError(f"max_field_length must be at least 1, not {max_field_length}")
    if max_datagram_bytes < 0:
        raise ValueError(f"max_datagram_bytes must not be negative, not {max_datagram_bytes}")

    size = len(data)
    if size > max_datagram_bytes:
        return Rejection(
            reason="too_large",
            detail=f"datagram of {size} bytes exceeds the limit of {max_datagram_bytes} bytes",
        )
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(
            reason="not_utf8",
            detail=f"not valid UTF-8 ({exc.reason} at byte {exc.start}): {data[:_EXCERPT]!r}",
        )

    framed = decoded.removeprefix("\ufeff").strip(_FRAMING)
    text = framed.translate(_CONTROL)
    sanitized = len(text) != len(framed)

    segments = text.split(";")
    raw_type = segments[0].strip()
    type_match = _TYPE.fullmatch(raw_type.lower())
    message_type = f"{type_match.group(1)}/" if type_match else None
    if message_type == ENGINE_MESSAGE_TYPE:
        return _check_engine(segments, text)
    if message_type is None or message_type not in MESSAGE_TYPES:
        return Rejection(
            reason="unknown_type",
            detail=f"unknown message type {raw_type[:_VALUE]!r}: {text[:_EXCERPT]!r}",
        )

    def reject(reason: RejectionReason, what: str) -> Rejection:
        return Rejection(
            reason=reason, detail=f"{what}: {text[:_EXCERPT]!r}", message_type=message_type
        )

    if len(segments) < _SCHEDULER_FIELDS:
        return reject(
            "field_count", f"{len(segments)} fields, {message_type} needs {_SCHEDULER_FIELDS}"
        )

    t = _find_anchor(segments, text)
    if t is None:
        reason, what = _diagnose(segments, text)
        return reject(reason, what)

    app_id = segments[t + 1].lower()
    task_name, app_name = _split_task_and_app(segments[2 : t - 1], app_id)

    def cut(value: str) -> str:
        nonlocal sanitized
        capped = cap(value, max_field_length)
        sanitized = sanitized or len(capped) != len(value)
        return capped

    host = cut(segments[1])
    task_name = cut(task_name)
    app_name = cut(app_name)
    user = cut(segments[t - 1])
    log_level = cut(segments[t + 3])
    message = cut(";".join(segments[t + 5 :]))
    return Datagram(
        message_type=message_type,
        outcome=MESSAGE_TYPES[message_type],
        host=host,
        task_name=task_name,
        app_name=app_name,
        user=user,
        task_id=segments[t].lower(),
        app_id=app_id,
        log_timestamp=segments[t + 2],
        clock_problem=_clock_problem(segments[t + 2]),
        log_level=log_level,
        execution_id=segments[t + 4].lower(),
        message=message,
        sanitized=sanitized,
    )


def cap(value: str, limit: int = MAX_FIELD_LENGTH) -> str:
    """``value`` cut to ``limit`` characters (step 8): the one cap on every name and free text
    ingest passes on, from the datagram and from the QRS alike."""
    return value[:limit]


def _is_guid(value: str) -> bool:
    return _GUID.fullmatch(value) is not None


def _is_timestamp(value: str) -> bool:
    return _timestamp_value(value) is not None


def _timestamp_value(value: str) -> datetime | None:
    """A log4net timestamp as a naive datetime, or None: neither its shape nor a real time."""
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, millisecond = map(int, match.groups())
    try:
        return datetime(year, month, day, hour, minute, second, millisecond * 1000)
    except ValueError:
        return None


def _clock_problem(timestamp: str) -> str:
    """Step 9 for a valid timestamp: "" when in range, else the reason, for the alert's reader."""
    value = _timestamp_value(timestamp)
    if value is not None and EARLIEST_TIMESTAMP <= value <= LATEST_TIMESTAMP:
        return ""
    return (
        f"the scheduler's timestamp {timestamp} is outside {EARLIEST_TIMESTAMP:%Y}-"
        f"{LATEST_TIMESTAMP:%Y} (is the Sense node's clock wrong?); the time Herald received "
        "the datagram stands in for it"
    )


def _fits_anchor(segments: list[str], t: int) -> bool:
    app_id = segments[t + 1]
    return (
        # Lengths first: cheap, and most segments of a hostile datagram fail here.
        len(segments[t]) == _GUID_LENGTH
        and len(segments[t + 2]) == _TIMESTAMP_LENGTH
        and _is_guid(segments[t])
        and (app_id == "" or _is_guid(app_id))
        and _is_timestamp(segments[t + 2])
        and _is_guid(segments[t + 4])
    )


def _timestamp_positions(text: str, first: int, stop: int) -> Iterator[int]:
    """Indices ``first <= p < stop`` of the timestamp-shaped segments of ``text``, from the left.

    A regular expression finds them, so the datagram's other segments cost no Python step each.
    """
    index, scanned = 0, 0
    for match in _TIMESTAMP_SEGMENT.finditer(text):
        index += text.count(";", scanned, match.start())
        scanned = match.start()
        if index >= stop:
            return
        if index >= first:
            yield index


def _find_anchor(segments: list[str], text: str) -> int | None:
    """Index of the task id segment (see "Choosing the anchor"), or None."""
    first: int | None = None
    # The timestamp is segment t + 2; t + 5 (the message) must exist.
    for p in _timestamp_positions(text, _FIRST_TASK_ID + 2, len(segments) - 3):
        t = p - 2
        if _fits_anchor(segments, t):
            if "\\" in segments[t - 1]:
                return t
            if first is None:
                first = t
    return first


def _split_task_and_app(middle: list[str], app_id: str) -> tuple[str, str]:
    """Task name and app name from the segments between host and user (at least two)."""
    if len(middle) > 2 and app_id:
        k = _longest_repeated_tail(middle)
        if k:
            return ";".join(middle[:-k]), ";".join(middle[-k:])
    return ";".join(middle[:-1]), middle[-1]


def _longest_repeated_tail(middle: list[str]) -> int:
    """The most segments ``k`` whose joined text ``X`` is non-empty and ends the rest: rule 2.

    The rest ends with ``X`` exactly when the ``k - 1`` segments before the last ``k`` equal
    the last ``k - 1``, and the segment before those ends with the first of the last ``k``.
    With each distinct segment written as one character and the segments read from the end,
    the first condition says that the string's ``k - 1`` characters from position ``k`` on
    repeat its first ``k - 1``: its Z-function (see :func:`_common_prefixes`) answers that for
    every ``k`` in linear time, where trying every split and comparing the joined texts (the
    rule read literally) is quadratic in the number of ``;``.
    """
    letters = {segment: chr(number) for number, segment in enumerate(dict.fromkeys(middle))}
    backwards = "".join(map(letters.__getitem__, reversed(middle)))
    for k in reversed(_square_prefixes(backwards, len(middle) // 2 + 1)):
        if middle[-2 * k].endswith(middle[-k]) and (k > 1 or middle[-1]):
            return k
    return 0


def _square_prefixes(text: str, stop: int) -> list[int]:
    """Every ``0 < k < stop`` whose ``k - 1`` characters from ``k`` on repeat ``text``'s first.

    The Z-algorithm finds, for each ``k``, how far ``text[k:]`` agrees with ``text`` (``z``):
    ``[left, right)`` is the rightmost agreement found so far; inside it ``z[k]`` is copied
    from ``z[k - left]`` unless that reaches ``right``, and every agreement extended past
    ``right`` moves it on, so the comparisons are linear in ``len(text)``. Only positions
    holding ``text[0]`` can agree at all (``k = 1`` always qualifies); :meth:`str.find` skips
    to them, and :func:`_match_length` extends an agreement, both in C.
    """
    size, first = len(text), text[:1]
    z = [0] * stop
    found = [1] if stop > 1 else []
    left = right = 0
    k = text.find(first, 1, stop)
    while k != -1:
        length = z[k - left] if k < right else 0
        if k >= right or length >= right - k:
            length = max(right - k, 0)
            if k + length < size and text[length] == text[k + length]:
                length += _match_length(text, length, k + length)
            left, right = k, k + length
        z[k] = length
        if length >= k - 1 and k > 1:
            found.append(k)
        k = text.find(first, k + 1, stop)
    return found


def _match_length(text: str, a: int, b: int) -> int:
    """How many characters of ``text`` from ``a`` equal those from ``b`` (``a < b``), in C.

    Galloping: compare chunks that double while they match, then halve, so a match of length
    ``n`` costs ``O(n)`` character comparisons and ``O(log n)`` steps here.
    """
    matched, step = 0, 1
    limit = len(text) - b
    while step:
        step = min(step, limit - matched)
        if step and text.startswith(text[a + matched : a + matched + step], b + matched):
            matched += step
            step *= 2
        else:
            step //= 2
    return matched


def _quote(value: str) -> str:
    return repr(value[:_VALUE])


def _diagnose(segments: list[str], text: str) -> tuple[RejectionReason, str]:
    """Why no anchor fits: the first failing check around the likeliest timestamp position."""
    pivot = next(
        _timestamp_positions(text, _FIRST_TASK_ID + 2, len(segments) - 3),
        _FIRST_TASK_ID + 2,  # Butler's fixed position
    )
    task_id, app_id, timestamp = segments[pivot - 2], segments[pivot - 1], segments[pivot]
    execution_id = segments[pivot + 2]
    if not _is_guid(task_id):
        return "bad_task_id", f"task id {_quote(task_id)} is not a GUID"
    if app_id and not _is_guid(app_id):
        return "bad_app_id", f"app id {_quote(app_id)} is neither a GUID nor empty"
    if not _is_timestamp(timestamp):
        return "bad_timestamp", f"timestamp {_quote(timestamp)} is not YYYY-MM-DD HH:MM:SS,fff"
    if not _is_guid(execution_id):
        return "bad_execution_id", f"execution id {_quote(execution_id)} is not a GUID"
    # Unreachable: a pivot passing every check is an anchor. Kept so the result is total.
    return "bad_timestamp", "no field layout matched"


def _check_engine(segments: list[str], text: str) -> Rejection:
    """Validate ``/engine-reload-failed/`` as Butler does, then ignore it."""
    if len(segments) != _ENGINE_FIELDS:
        reason: RejectionReason = "field_count"
        what = f"{len(segments)} fields, {ENGINE_MESSAGE_TYPE} needs exactly {_ENGINE_FIELDS}"
    elif segments[2] and not _is_guid(segments[2]):
        reason = "bad_app_id"
        what = f"app id {_quote(segments[2])} is neither a GUID nor empty"
    else:
        reason = "engine_ignored"
        what = "engine reload failures make no event"
    return Rejection(
        reason=reason, detail=f"{what}: {text[:_EXCERPT]!r}", message_type=ENGINE_MESSAGE_TYPE
    )
