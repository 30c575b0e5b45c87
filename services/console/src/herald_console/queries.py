"""What a request asks, read from its query or form: the events filter, whole numbers, durations
and times; a bad value is a 400 (or an :class:`ActionError`) that names it."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from herald_console.actions import ActionError
from herald_console.store import EventFilter
from herald_shared import arguments

__all__ = ["event_filter", "iso", "seconds", "whole_number"]


def iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat()


def _moment(text: str, name: str) -> float | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise web.HTTPBadRequest(
            text=f"400: {name}={text!r}: expected a time such as 2026-12-03T06:00\n"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def event_filter(query: Any) -> EventFilter:
    """The events page's filters (``since`` and ``until`` without a zone are UTC)."""
    return EventFilter(
        kind=query.get("kind", ""),
        task=query.get("task", "").strip(),
        app=query.get("app", "").strip(),
        stream=query.get("stream", "").strip(),
        outcome=query.get("outcome", ""),
        since=_moment(query.get("since", ""), "since"),
        until=_moment(query.get("until", ""), "until"),
    )


def whole_number(text: str, name: str, default: int, at_most: int) -> int:
    if not text:
        return default
    if not text.isdigit():
        raise web.HTTPBadRequest(text=f"400: {name}={text!r}: expected a whole number\n")
    return min(int(text), at_most)


def seconds(text: str) -> float:
    """A silence's length (``2h``), as ``herald silence add --for`` reads it."""
    try:
        return arguments.duration(text).total_seconds()
    except argparse.ArgumentTypeError as error:
        raise ActionError(str(error)) from None
