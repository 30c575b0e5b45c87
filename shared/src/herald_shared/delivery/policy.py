"""The delivery policy: when a failed delivery is tried again, when it is given up, and whether a
rate limit lets a message through.

Pure functions of a job, the :class:`DeliverySettings` and the time they are given: no I/O, no
sleeping and no clock of their own, and the jitter's random draw is an argument, so every
decision is tested on its own. The runner carries them out.

Clock steps: in-process waits and ages are monotonic time (the event loop's timer, a job's
age); only what must survive a restart is wall-clock time, and these functions cap it so that a
wall clock stepped back never makes a wait or a rate window longer than the settings allow.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from herald_shared.delivery.receipts import attempts_done
from herald_shared.settings import DeliverySettings

if TYPE_CHECKING:
    from herald_shared.delivery.ledger import Job

Uniform = Callable[[float, float], float]

_MAX_DOUBLINGS = 64  # past this the backoff is max_backoff anyway; 2**n must stay a float


@dataclass(frozen=True)
class Retry:
    delay: float  # seconds from now


@dataclass(frozen=True)
class GiveUp:
    reason: str  # the dead letter's reason


def backoff(attempts: int, settings: DeliverySettings, uniform: Uniform = random.uniform) -> float:
    """Exponential backoff after ``attempts`` attempts, with jitter that spreads a herd."""
    doublings = min(attempts - 1, _MAX_DOUBLINGS)
    ceiling = min(settings.max_backoff, settings.initial_backoff * 2**doublings)
    return uniform(ceiling / 2, ceiling)


def after_failure(
    job: Job,
    settings: DeliverySettings,
    age: float,
    reason: str,
    retry_after: float | None,
    uniform: Uniform = random.uniform,
) -> Retry | GiveUp:
    """Retry after the destination's Retry-After or the backoff, unless that passes the deadline.

    ``age``: seconds since the job was received (monotonic time, immune to clock steps).
    """
    delay = retry_after if retry_after is not None else backoff(job.attempts, settings, uniform)
    if age + delay > settings.deadline:
        return GiveUp(f"gave up after {attempts_done(job.attempts)} in {age:.0f} s: {reason}")
    return Retry(delay)


def resume_delay(job: Job, settings: DeliverySettings, now: float) -> float:
    """How long a pending delivery found at start waits: what is left of its backoff.

    Never more than the longest backoff, so a wall clock stepped back does not postpone it.
    """
    return min(max(0.0, job.next_attempt_at - now), settings.max_backoff)


def rate_window(expires_at: float | None, window: float, now: float) -> tuple[bool, float]:
    """Whether a message may go now, and the end of the key's window to store.

    A window that would end more than ``window`` seconds from now began in the wall clock's
    future (the clock was stepped back): it is capped at now + window.
    """
    if expires_at is not None and expires_at > now:
        return False, min(expires_at, now + window)
    return True, now + window
