"""Replay: "deliver these dead letters again", asked of the service that owns them.

A request (:class:`ReplayRequest`, JSON) goes to ``herald/v1/replay/<service>``; every instance
of that service takes it, puts the matching ``dead_lettered`` deliveries of its own ledger back to
pending (the event is still in the ledger unless purged) and answers on
``herald/v1/replayed/<service>/<instance>`` (:class:`ReplayAnswer`) with what it replayed and
which asked-for event ids it does not hold. The deliveries then run as any other: their receipts
follow on ``herald/v1/deliveries/<service>``. ``herald replay`` and the console both ask this way.

A request selects dead letters by event ids (none: every one), a destination and a time since
which they were dead-lettered; all given criteria must hold.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

__all__ = [
    "ReplayAnswer",
    "ReplayRequest",
    "ReplayedDelivery",
    "decode_answer",
    "decode_request",
    "described",
    "encode",
    "new_request_id",
]


class ReplayRequest(msgspec.Struct, kw_only=True, frozen=True):
    """On ``herald/v1/replay/<service>``: which dead letters to deliver again, asked by whom."""

    id: str
    event_ids: list[str] = []  # empty: every dead letter the other criteria select
    destination: str | None = None  # None: every destination
    since: datetime | None = None  # dead-lettered at or after; None: any time
    requested_by: str
    requested_at: datetime


class ReplayedDelivery(msgspec.Struct, frozen=True):
    """One delivery put back to pending."""

    event_id: str
    destination: str
    target: str = ""


class ReplayAnswer(msgspec.Struct, kw_only=True, frozen=True):
    """On ``herald/v1/replayed/<service>/<instance>``: what one instance did with a request."""

    id: str  # the request's
    service: str
    instance: str
    replayed: list[ReplayedDelivery]
    not_found: list[str]  # asked-for event ids with no dead letter here (never held, or purged)
    # Destinations this instance no longer delivers to: the one asked for, or those of the dead
    # letters chosen (which stay dead-lettered). Added later: older answers have none.
    unknown_destinations: list[str] = []


encode = msgspec.json.Encoder().encode
_request_decoder = msgspec.json.Decoder(ReplayRequest)
_answer_decoder = msgspec.json.Decoder(ReplayAnswer)


def new_request_id() -> str:
    return uuid.uuid4().hex


def decode_request(payload: bytes) -> ReplayRequest:
    """A request from its JSON; raises ValueError with a readable reason."""
    try:
        request = _request_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise ValueError(f"not a Herald replay request: {error}") from None
    if request.since is not None and request.since.tzinfo is None:
        raise ValueError("not a Herald replay request: since needs a time zone")
    return request


def decode_answer(payload: bytes) -> ReplayAnswer:
    """An answer from its JSON; raises ValueError with a readable reason."""
    try:
        return _answer_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise ValueError(f"not a Herald replay answer: {error}") from None


def described(request: ReplayRequest) -> str:
    """``the dead letters of e1, e2 to email-failed since 2026-12-03 06:00:00 CET``."""
    words = ["the dead letters"]
    if request.event_ids:
        words.append(f"of {', '.join(request.event_ids)}")
    if request.destination is not None:
        words.append(f"to {request.destination}")
    if request.since is not None:
        words.append(f"since {request.since.astimezone():%Y-%m-%d %H:%M:%S %Z}")
    return " ".join(words)
