"""Command-line argument types the ``herald`` commands share: durations and moments in time.

Each raises :class:`argparse.ArgumentTypeError` with an example of what it takes, which argparse
prints as the command's usage error (exit status 2).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from pydantic import TypeAdapter, ValidationError

from herald_shared.config import Duration

__all__ = ["duration", "moment", "moment_or_ago"]

_DURATION: TypeAdapter[float] = TypeAdapter(Duration)


def duration(text: str) -> timedelta:
    """A positive duration as the configuration writes it: ``90s``, ``30m``, ``2h``, ``1d``."""
    try:
        seconds = _DURATION.validate_python(text)
    except ValidationError:
        seconds = 0.0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration such as 30m, 2h or 1d")
    return timedelta(seconds=seconds)


def moment(text: str) -> datetime:
    """An ISO time; without a zone it is local time."""
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a time such as 2026-12-03T06:00 or 2026-12-03T06:00+01:00"
        ) from None
    return found if found.tzinfo is not None else found.astimezone()  # local time


def moment_or_ago(text: str) -> datetime:
    """An ISO time (:func:`moment`), or a :func:`duration` meaning that long ago."""
    try:
        return datetime.now(UTC) - duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        return moment(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a time such as 2026-12-03T06:00 or a duration such as 2h"
        ) from None
