"""The argument types the commands share: what `--since`, `--for` and `--until` take."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

from herald_shared.arguments import duration, moment, moment_or_ago


def test_a_duration_ago_is_that_long_before_now() -> None:
    before = datetime.now(UTC)
    ago = moment_or_ago("2h")
    assert before - timedelta(hours=2) <= ago <= datetime.now(UTC) - timedelta(hours=2)


def test_a_time_is_taken_as_written_and_without_a_zone_as_local_time() -> None:
    assert moment_or_ago("2026-12-03T06:00+01:00") == datetime(2026, 12, 3, 5, 0, tzinfo=UTC)
    local = moment_or_ago("2026-12-03T06:00")
    assert local == datetime(2026, 12, 3, 6, 0).astimezone()
    assert local.tzinfo is not None


@pytest.mark.parametrize("text", ["yesterday", "2h ago", "-2h", "0s", ""])
def test_what_is_neither_is_refused_with_examples(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="or a duration such as 2h"):
        moment_or_ago(text)


def test_duration_and_moment_refuse_each_others_input() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected a duration such as 30m"):
        duration("2026-12-03T06:00")
    with pytest.raises(argparse.ArgumentTypeError, match="expected a time such as"):
        moment("2h")
