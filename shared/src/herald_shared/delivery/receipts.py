"""What a subscriber service publishes about its deliveries: receipts and dead letters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import msgspec

from herald_shared.events import Event

__all__ = ["DeadLetter", "DeliveryState", "Pending", "Receipt", "encode", "timestamp"]

#: How one delivery ended (the ledger's states but ``pending``). Not an alert outcome
#: (:mod:`herald_shared.outcomes`): the wire field is ``outcome`` for compatibility.
#: ``silenced``: a silence held it back (the detail names it); ``muted``: a time interval did;
#: ``grouped``: it went into a digest (the detail names the digest, whose receipt follows).
DeliveryState = Literal[
    "delivered", "dead_lettered", "suppressed", "skipped", "silenced", "muted", "grouped"
]


class Receipt(msgspec.Struct, kw_only=True):
    """On ``herald/v1/deliveries/<service>``: what happened to one delivery, once, at its end."""

    event_id: str
    kind: str
    task_id: str
    task_name: str
    service: str
    destination: str
    target: str
    outcome: DeliveryState
    attempts: int
    at: datetime
    detail: str | None = None
    #: A digest's receipt (``event_id`` is the digest's id): the events it carried.
    event_ids: list[str] | None = None


class Pending(msgspec.Struct, kw_only=True):
    """On ``herald/v1/pending/<service>``, for test alerts only: a delivery that is not over yet.

    Published when the delivery is taken on (``attempts`` 0) and after every failed attempt
    that will be retried (``reason`` says why it failed, ``next_attempt_at`` when it is tried
    again), so ``herald send-test`` can say what it is still waiting for and why.
    """

    event_id: str
    service: str
    destination: str
    target: str
    attempts: int
    reason: str
    at: datetime
    next_attempt_at: datetime | None = None


class DeadLetter(msgspec.Struct, kw_only=True):
    """On ``herald/v1/dead-letter/<service>``: an event that could not be delivered, and why.

    ``event`` is absent when the message could not even be read as an event; ``payload`` then
    holds what arrived.
    """

    service: str
    destination: str | None
    target: str
    reason: str
    attempts: int
    at: datetime
    event: Event | None = None
    topic: str | None = None
    payload: str | None = None


def attempts_done(count: int) -> str:
    """``1 attempt``, ``3 attempts``: how receipts, dead letters and pending lines say it."""
    return "1 attempt" if count == 1 else f"{count} attempts"


def timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


encode = msgspec.json.Encoder().encode
