"""A destination's lane: its queue, its workers, its retry timers, and one attempt's result.

Each destination has its own lane, so one that is down for hours stalls neither the others nor
the broker. A lane's workers are vital tasks (see ``herald_shared.supervision``). An attempt
turns whatever the destination did (returned, raised one of the delivery errors, raised
something else, hung) into a :class:`Done` or a :class:`Failed`; what follows is the runner's
and the policy's business.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from herald_shared.delivery.destination import (
    Destination,
    PermanentError,
    Skipped,
    TransientError,
)
from herald_shared.delivery.ledger import Job, State
from herald_shared.delivery.reporting import LaneMetrics
from herald_shared.events import Event
from herald_shared.supervision import Supervisor, WorkerPool

if TYPE_CHECKING:
    from herald_shared.delivery.grouping import Digest

log = logging.getLogger("herald_shared.delivery.runner")


@dataclass(frozen=True)
class Done:
    state: State  # delivered, dead_lettered or skipped
    detail: str | None


@dataclass(frozen=True)
class Failed:
    reason: str
    retry_after: float | None = None


class Lane:
    """One destination's queue, workers and retry timers."""

    def __init__(
        self,
        destination: Destination,
        metrics: LaneMetrics,
        work: Callable[[Lane, Job], Awaitable[None]],
        *,
        concurrency: int,
        attempt_timeout: float,
        supervisor: Supervisor,
    ) -> None:
        self.destination = destination
        self._attempt_timeout = attempt_timeout
        self.metrics = metrics
        self.pool: WorkerPool[Job] = WorkerPool(
            f"{destination.name} delivery",
            lambda job: work(self, job),
            size=concurrency,
            supervisor=supervisor,
        )
        self._timers: set[asyncio.TimerHandle] = set()
        self._waiting = 0  # queued or scheduled for a retry

    def schedule(self, job: Job, delay: float) -> None:
        """Queue ``job`` now or, for a retry, after ``delay`` seconds of monotonic time."""
        self._waiting += 1
        self.metrics.queue.set(self._waiting)
        if delay <= 0:
            self.pool.put(job)
            return

        def due() -> None:
            self._timers.discard(timer)
            self.pool.put(job)

        timer = asyncio.get_running_loop().call_later(delay, due)
        self._timers.add(timer)

    @property
    def waiting(self) -> int:
        """Jobs in the lane: queued, in an attempt, or waiting for a retry."""
        return self._waiting

    def done(self, job: Job) -> None:
        """``job`` left the lane (ended, or is about to be scheduled again)."""
        self._waiting -= 1
        self.metrics.queue.set(self._waiting)

    def cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()

    async def attempt(self, event: Event, target: str) -> Done | Failed:
        """One attempt at delivering ``event`` to ``target``, counted by its result."""
        send = functools.partial(self.destination.deliver, event, target)
        return self._counted(await _attempt(self.destination, send, self._attempt_timeout))

    async def attempt_digest(self, digest: Digest, target: str) -> Done | Failed:
        """One attempt at delivering ``digest`` to ``target``, counted by its result."""
        send = functools.partial(self.destination.deliver_digest, digest, target)
        return self._counted(await _attempt(self.destination, send, self._attempt_timeout))

    def _counted(self, result: Done | Failed) -> Done | Failed:
        if isinstance(result, Done):
            counted = "permanent_error" if result.state == "dead_lettered" else "ok"
        else:
            counted = "transient_error"
        self.metrics.attempts[counted].inc()
        return result


async def _attempt(
    destination: Destination, send: Callable[[], Awaitable[str | None]], seconds: float
) -> Done | Failed:
    try:
        async with asyncio.timeout(seconds):
            detail = await send()
    except TransientError as error:
        return Failed(error.reason, error.retry_after)
    except TimeoutError:
        return Failed(f"no answer within {seconds:g} s")
    except PermanentError as error:
        return Done("dead_lettered", error.reason)
    except Skipped as error:
        return Done("skipped", error.reason)
    except Exception as error:
        # A bug in the destination must not lose the alert: retry, and dead-letter at the end.
        log.exception("delivery to %s failed unexpectedly", destination.name)
        return Failed(f"unexpected error: {error!r}")
    return Done("delivered", detail)
