"""Maintenance windows and office hours: named time intervals that destinations refer to.

``time_intervals:`` at the top of herald.yaml has Alertmanager's shape
(https://prometheus.io/docs/alerting/latest/configuration/#time_interval): a list of names, each
with a list of intervals, each interval a set of ranges that must all hold (a range left out
holds always)::

    time_intervals:
      - name: sunday-maintenance
        time_intervals:
          - weekdays: [sunday]
            times: [{start_time: "02:00", end_time: "06:00"}]
            location: Europe/Stockholm

- ``times``: ``HH:MM`` from ``start_time`` (included) to ``end_time`` (excluded, up to
  ``24:00``); a range across midnight is written as two.
- ``weekdays``: ``monday`` or ``monday:friday``, Sunday first as in Alertmanager.
- ``days_of_month``: ``1``, ``1:5``, ``-1`` (the last day), ``-3:-1``.
- ``months``: ``january`` or ``1``, ``may:august``; ``years``: ``2026``, ``2026:2027``.
- ``location``: an IANA time zone in which the ranges are read (default ``UTC``).

Any destination lists names under ``mute_during:`` (no delivery while one of them holds) or
``active_during:`` (deliveries only while one holds); what is held back ends with a ``muted``
receipt (:mod:`herald_shared.delivery.quiet`). Names are checked when the configuration is
loaded (:func:`check_references`). Matching is a pure function of the interval and a time.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel, model_validator

from herald_shared.config import ConfigDocument, ConfigError, Section

__all__ = [
    "SECTION",
    "Interval",
    "NamedInterval",
    "TimeIntervals",
    "check_references",
    "covering",
    "load",
    "muted",
    "problems_of",
]

SECTION: Final = "time_intervals"

_WEEKDAYS: Final = {
    name: number
    for number, name in enumerate(
        ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
    )
}
_MONTHS: Final = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
_TIME: Final = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")

Span = tuple[int, int]  # inclusive bounds


def _bound(text: str, names: Mapping[str, int], low: int, high: int, what: str) -> int:
    text = text.strip().lower()
    if text in names:
        return names[text]
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a {what}") from None
    if not low <= number <= high:
        raise ValueError(f"{number} is not a {what} ({low} to {high})")
    return number


def _span(value: object, names: Mapping[str, int], low: int, high: int, what: str) -> Span:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a {what} or a range like a:b")
    first, _, last = str(value).partition(":")
    start = _bound(first, names, low, high, what)
    end = _bound(last, names, low, high, what) if last else start
    if (start < 0) == (end < 0) and start > end:
        raise ValueError(f"{value}: the range must not end before it starts")
    return start, end


def _day_span(value: object) -> Span:
    span = _span(value, {}, -31, 31, "day of the month")
    if 0 in span:
        raise ValueError("days of the month count from 1, or back from -1 (the last day)")
    return span


Weekdays = Annotated[Span, BeforeValidator(lambda v: _span(v, _WEEKDAYS, 0, 6, "weekday"))]
Months = Annotated[Span, BeforeValidator(lambda v: _span(v, _MONTHS, 1, 12, "month"))]
Years = Annotated[Span, BeforeValidator(lambda v: _span(v, {}, 1970, 9999, "year"))]
DaysOfMonth = Annotated[Span, BeforeValidator(_day_span)]


def _minutes(value: object) -> int:
    match = _TIME.match(str(value).strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError('expected a time of day as HH:MM, e.g. "02:00" (up to "24:00")')
    minutes = int(match.group(1)) * 60 + int(match.group(2))
    if minutes > 24 * 60:
        raise ValueError("a time of day goes up to 24:00")
    return minutes


Minutes = Annotated[int, BeforeValidator(_minutes)]


def _zone(value: object) -> ZoneInfo:
    if isinstance(value, ZoneInfo):
        return value
    try:
        return ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not a time zone (an IANA name such as Europe/Stockholm or UTC)"
        ) from None


class TimeRange(Section):
    start_time: Minutes
    end_time: Minutes

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.start_time >= self.end_time:
            raise ValueError(
                "start_time must be before end_time; write a range across midnight as two"
            )
        return self


class Interval(Section):
    """One interval: every range given must hold (a range left out holds always)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    times: list[TimeRange] | None = None
    weekdays: list[Weekdays] | None = None
    days_of_month: list[DaysOfMonth] | None = None
    months: list[Months] | None = None
    years: list[Years] | None = None
    location: Annotated[ZoneInfo, BeforeValidator(_zone)] = ZoneInfo("UTC")

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` (timezone-aware) falls in this interval, read in its location."""
        local = moment.astimezone(self.location)
        minute = local.hour * 60 + local.minute
        weekday = (local.weekday() + 1) % 7  # Sunday first
        return (
            _within(self.years, local.year)
            and _within(self.months, local.month)
            and _within(self.weekdays, weekday)
            and _days_within(self.days_of_month, local)
            and (
                self.times is None
                or any(span.start_time <= minute < span.end_time for span in self.times)
            )
        )


def _within(spans: Sequence[Span] | None, value: int) -> bool:
    return spans is None or any(start <= value <= end for start, end in spans)


def _days_within(spans: Sequence[Span] | None, local: datetime) -> bool:
    if spans is None:
        return True
    length = calendar.monthrange(local.year, local.month)[1]

    def day(bound: int) -> int:  # -1 is the last day of this month
        return length + 1 + bound if bound < 0 else bound

    return any(day(start) <= local.day <= day(end) for start, end in spans)


class NamedInterval(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    time_intervals: list[Interval] = Field(min_length=1)

    def contains(self, moment: datetime) -> bool:
        return any(interval.contains(moment) for interval in self.time_intervals)


class TimeIntervals(RootModel[list[NamedInterval]]):
    model_config = ConfigDict(frozen=True)

    root: list[NamedInterval] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> TimeIntervals:
        names = [named.name for named in self.root]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"each name once; given more than once: {', '.join(twice)}")
        return self


def load(document: ConfigDocument) -> dict[str, NamedInterval]:
    """The named intervals of ``time_intervals:``, by name; raises :class:`ConfigError`."""
    if not document.has_section(SECTION):
        return {}
    validated = document.section(SECTION, TimeIntervals)
    return {named.name: named for named in validated.root}


def covering(
    names: Sequence[str], intervals: Mapping[str, NamedInterval], moment: datetime
) -> str | None:
    """The first of ``names`` whose interval contains ``moment``, if any."""
    return next((name for name in names if intervals[name].contains(moment)), None)


def muted(
    mute_during: Sequence[str],
    active_during: Sequence[str],
    intervals: Mapping[str, NamedInterval],
    moment: datetime,
) -> str | None:
    """Why a destination delivers nothing at ``moment`` (the receipt's detail), or None."""
    inside = covering(mute_during, intervals, moment)
    if inside is not None:
        return f"muted: inside the time interval {inside} (mute_during)"
    if active_during and covering(active_during, intervals, moment) is None:
        return f"muted: outside the time intervals {', '.join(active_during)} (active_during)"
    return None


def check_references(
    document: ConfigDocument,
    section: str,
    settings: BaseModel,
    intervals: Mapping[str, NamedInterval],
) -> list[str]:
    """One sentence per ``mute_during``/``active_during`` name that ``time_intervals`` lacks."""
    defined = ", ".join(sorted(intervals)) or "none"
    problems = []
    for dotted, name in _references(settings, section):
        if name not in intervals:
            problems.append(
                f"{document._origin(dotted)}: {dotted}: no time interval is named {name!r}"
                f" (time_intervals defines: {defined})"
            )
    return problems


def _references(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every (dotted key, name) of a time-interval reference inside ``value``."""
    if isinstance(value, BaseModel):
        for key in type(value).model_fields:
            child = getattr(value, key)
            if key in ("mute_during", "active_during") and isinstance(child, list):
                for index, name in enumerate(child):
                    yield f"{path}.{key}[{index}]", name
            else:
                yield from _references(child, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _references(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _references(item, f"{path}.{key}")


def problems_of(document: ConfigDocument) -> tuple[dict[str, NamedInterval], list[str]]:
    """The intervals, and the problems with them (for :func:`herald_shared.runtime.configure`)."""
    try:
        return load(document), []
    except ConfigError as error:
        return {}, error.problems
