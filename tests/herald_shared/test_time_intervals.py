"""Named time intervals: which moments they contain (pure functions of an interval and a time),
and the configuration errors an administrator sees, with the file and the key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from herald_shared import config, runtime, time_intervals
from herald_shared.config import ConfigError
from herald_shared.runtime import installed_service
from herald_shared.time_intervals import Interval, NamedInterval
from herald_testkit.processes import herald


def interval(**fields: object) -> Interval:
    return Interval.model_validate(fields)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_times_of_day_include_the_start_and_exclude_the_end() -> None:
    night = interval(times=[{"start_time": "02:00", "end_time": "06:00"}])
    assert not night.contains(at("2026-12-06 01:59"))
    assert night.contains(at("2026-12-06 02:00"))
    assert night.contains(at("2026-12-06 05:59"))
    assert not night.contains(at("2026-12-06 06:00"))
    evening = interval(times=[{"start_time": "22:00", "end_time": "24:00"}])
    assert evening.contains(at("2026-12-06 23:59"))


def test_weekdays_count_from_sunday_and_ranges_include_both_ends() -> None:
    workdays = interval(weekdays=["monday:friday"])
    sunday = interval(weekdays=["Sunday"])
    # 2026-12-06 is a Sunday, 2026-12-07 a Monday, 2026-12-11 a Friday.
    assert sunday.contains(at("2026-12-06 12:00"))
    assert not workdays.contains(at("2026-12-06 12:00"))
    assert workdays.contains(at("2026-12-07 00:00"))
    assert workdays.contains(at("2026-12-11 23:59"))
    assert not workdays.contains(at("2026-12-12 00:00"))


def test_days_of_month_count_back_from_the_last_day_of_that_month() -> None:
    month_end = interval(days_of_month=["-3:-1"])
    assert month_end.contains(at("2028-02-27 10:00"))  # a leap year: 27, 28, 29
    assert not month_end.contains(at("2028-02-26 10:00"))
    assert month_end.contains(at("2026-12-29 10:00"))
    assert not month_end.contains(at("2026-12-28 10:00"))
    first = interval(days_of_month=[1, "10:12"])
    assert first.contains(at("2026-12-01 10:00"))
    assert first.contains(at("2026-12-12 10:00"))
    assert not first.contains(at("2026-12-02 10:00"))


def test_months_by_name_or_number_and_years() -> None:
    summer = interval(months=["june:August"], years=["2026:2027"])
    assert summer.contains(at("2026-07-15 10:00"))
    assert not summer.contains(at("2028-07-15 10:00"))
    assert not summer.contains(at("2026-09-01 00:00"))
    assert interval(months=[12]).contains(at("2026-12-06 10:00"))


def test_every_range_given_must_hold_and_any_interval_of_a_name_will_do() -> None:
    sunday_night = interval(
        weekdays=["sunday"], times=[{"start_time": "02:00", "end_time": "06:00"}]
    )
    assert sunday_night.contains(at("2026-12-06 03:00"))
    assert not sunday_night.contains(at("2026-12-07 03:00"))  # Monday
    assert not sunday_night.contains(at("2026-12-06 07:00"))
    named = NamedInterval(name="quiet", time_intervals=[sunday_night, interval(days_of_month=[1])])
    assert named.contains(at("2026-12-01 15:00"))
    assert not named.contains(at("2026-12-02 15:00"))


def test_the_ranges_are_read_in_the_intervals_time_zone() -> None:
    stockholm = interval(
        times=[{"start_time": "02:00", "end_time": "06:00"}], location="Europe/Stockholm"
    )
    assert stockholm.contains(at("2026-12-06 01:00"))  # 02:00 in Stockholm (UTC+1 in winter)
    assert not stockholm.contains(at("2026-12-06 05:30"))  # 06:30 there
    assert stockholm.contains(at("2026-07-05 00:30"))  # 02:30 in summer (UTC+2)
    # A Sunday night in Stockholm is still Saturday in UTC.
    sunday = interval(weekdays=["sunday"], location="Europe/Stockholm")
    assert sunday.contains(at("2026-12-05 23:30"))


def test_mute_during_and_active_during_say_why_a_delivery_is_muted() -> None:
    intervals = {
        "sunday-maintenance": NamedInterval(
            name="sunday-maintenance", time_intervals=[interval(weekdays=["sunday"])]
        ),
        "office-hours": NamedInterval(
            name="office-hours",
            time_intervals=[
                interval(
                    weekdays=["monday:friday"], times=[{"start_time": "08:00", "end_time": "17:00"}]
                )
            ],
        ),
    }
    sunday, monday_9, monday_20 = (
        at("2026-12-06 10:00"),
        at("2026-12-07 09:00"),
        at("2026-12-07 20:00"),
    )
    muted = time_intervals.muted
    assert muted(["sunday-maintenance"], [], intervals, sunday) == (
        "muted: inside the time interval sunday-maintenance (mute_during)"
    )
    assert muted(["sunday-maintenance"], [], intervals, monday_9) is None
    assert muted([], ["office-hours"], intervals, monday_9) is None
    assert muted([], ["office-hours"], intervals, monday_20) == (
        "muted: outside the time intervals office-hours (active_during)"
    )


def write(tmp_path: Path, text: str) -> config.ConfigDocument:
    path = tmp_path / "herald.yaml"
    path.write_text(text)
    return config.load(path, environ={})


def emailer() -> runtime.ServiceSpec[Any]:
    spec = installed_service("emailer")
    assert spec is not None
    return spec


INTERVALS = """\
time_intervals:
  - name: office-hours
    time_intervals:
      - weekdays: [monday:friday]
        times: [{start_time: 08:00, end_time: 17:30}]
        months: [1:12]
        location: Europe/Stockholm
"""


def test_unquoted_times_and_ranges_are_read_as_written(tmp_path: Path) -> None:
    document = write(tmp_path, INTERVALS)
    [office] = time_intervals.load(document)["office-hours"].time_intervals
    assert office.times is not None
    assert (office.times[0].start_time, office.times[0].end_time) == (8 * 60, 17 * 60 + 30)
    assert office.weekdays == [(1, 5)]
    assert office.months == [(1, 12)]


def test_a_destination_naming_an_unknown_interval_is_refused_with_file_and_key(
    tmp_path: Path,
) -> None:
    document = write(
        tmp_path,
        INTERVALS + "emailer:\n  failed:\n    mute_during: [sunday-maintenance]\n"
        "  recovered:\n    active_during: [office-hours]\n",
    )
    with pytest.raises(ConfigError) as raised:
        runtime.configure(document, [emailer()])
    assert raised.value.problems == [
        f"{document.path}: emailer.failed.mute_during[0]: no time interval is named"
        " 'sunday-maintenance' (time_intervals defines: office-hours)"
    ]


def test_a_name_known_to_time_intervals_is_handed_to_the_services(tmp_path: Path) -> None:
    document = write(
        tmp_path, INTERVALS + "emailer:\n  failed:\n    active_during: [office-hours]\n"
    )
    process = runtime.configure(document, [emailer()])
    assert list(process.time_intervals) == ["office-hours"]


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (
            "weekdays: [funday]",
            "time_intervals[0].time_intervals[0].weekdays[0]: Value error, 'funday' is not a weekday",
        ),
        (
            "times: [{start_time: 18:00, end_time: 08:00}]",
            "time_intervals[0].time_intervals[0].times[0]: Value error, start_time must be before"
            " end_time; write a range across midnight as two",
        ),
        (
            "times: [{start_time: 8, end_time: 09:00}]",
            "time_intervals[0].time_intervals[0].times[0].start_time: Value error, expected a time"
            ' of day as HH:MM, e.g. "02:00" (up to "24:00")',
        ),
        (
            "days_of_month: [0]",
            "time_intervals[0].time_intervals[0].days_of_month[0]: Value error, days of the month"
            " count from 1, or back from -1 (the last day)",
        ),
        (
            "months: [august:may]",
            "time_intervals[0].time_intervals[0].months[0]: Value error, august:may: the range"
            " must not end before it starts",
        ),
        (
            "location: Mars/Olympus",
            "time_intervals[0].time_intervals[0].location: Value error, 'Mars/Olympus' is not a"
            " time zone (an IANA name such as Europe/Stockholm or UTC)",
        ),
        (
            "wekdays: [monday]",
            "time_intervals[0].time_intervals[0].wekdays: Extra inputs are not permitted",
        ),
    ],
)
def test_a_wrong_interval_is_refused_with_file_and_key(
    tmp_path: Path, entry: str, problem: str
) -> None:
    document = write(
        tmp_path, f"time_intervals:\n  - name: x\n    time_intervals:\n      - {entry}\n"
    )
    with pytest.raises(ConfigError) as raised:
        runtime.configure(document, [emailer()])
    assert raised.value.problems == [f"{document.path}: {problem}"]


def test_an_interval_name_given_twice_is_refused(tmp_path: Path) -> None:
    twice = "  - name: x\n    time_intervals: [{weekdays: [sunday]}]\n"
    document = write(tmp_path, "time_intervals:\n" + twice + twice)
    with pytest.raises(ConfigError) as raised:
        runtime.configure(document, [emailer()])
    assert raised.value.problems == [
        f"{document.path}: time_intervals: Value error, each name once; given more than once: x"
    ]


async def test_check_config_names_the_file_and_key_of_an_unknown_interval(tmp_path: Path) -> None:
    path = tmp_path / "herald.yaml"
    path.write_text(INTERVALS + "log_archiver:\n  mute_during: [sunday-maintenance]\n")
    status, out, err = await herald("check-config", "--config", str(path))
    assert (status, out) == (2, "")
    assert err == (
        f"herald: {path}: log_archiver.mute_during[0]: no time interval is named"
        " 'sunday-maintenance' (time_intervals defines: office-hours)\n"
    )
