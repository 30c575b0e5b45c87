"""Supervised background work: no task a service needs ends without anyone noticing.

Three pieces, each used wherever Herald starts work in the background:

- :func:`every` runs periodic work (the ledger purge, ingest's forgetting of old datagrams, the
  health heartbeat). A failure is logged with its traceback and the work runs again at the next
  interval: one bad hour must not end the purge for good.
- :class:`WorkerPool` is a queue and N workers that take one item at a time (a destination's
  deliveries, ingest's enrichments), and the stop sequence both need: idle workers are cancelled,
  busy ones take no new item and get a grace period to finish the one in hand, then whatever is
  still running is cancelled.
- :class:`Supervisor` watches a service's vital tasks (the bus connection, the outbox loop, the
  workers of a pool). A vital task runs for as long as the service does, so if one returns or
  raises, that is a bug or a state nobody foresaw: it is logged at ERROR with the reason, the
  service's ``/readyz`` check fails naming the task and the reason, and so does ``/livez``.

Why ``/livez`` and not a restart inside the process: a task that ended unexpectedly may have
left its objects half-way (a lane's queue without workers, a bus without its loop), and
restarting it in place would repeat the failure in a loop that only the log shows. A new
process starts from what is durable (the ledger, the inbox and the outbox in SQLite), which is
exactly what a restart is designed to resume; Kubernetes restarts the pod with a back-off and
counts the restarts where an operator sees them. Cancellation is never a failure: only the code
that started a task cancels it, when the service stops.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Generic, TypeVar

__all__ = ["Supervisor", "WorkerPool", "every", "stop_pools"]

log = logging.getLogger(__name__)

T = TypeVar("T")


async def every(interval: float, work: Callable[[], Awaitable[None] | None], *, what: str) -> None:
    """Run ``work`` now and then every ``interval`` seconds; log a failure and carry on."""
    while True:
        try:
            done = work()
            if inspect.isawaitable(done):
                await done
        except Exception:
            log.exception("%s failed; trying again in %g s", what, interval)
        await asyncio.sleep(interval)


class Supervisor:
    """The vital tasks of one service, and the first one that ended unexpectedly."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failure: str | None = None

    @property
    def failure(self) -> str | None:
        """Which vital task ended and why; None while all of them run."""
        return self._failure

    def spawn(self, work: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        """Run ``work`` as a vital task named ``what``."""
        return self.watch(asyncio.create_task(work, name=f"{self.service}: {what}"), what)

    def watch(self, task: asyncio.Task[Any], what: str) -> asyncio.Task[Any]:
        """Watch a vital task started elsewhere (the bus starts its own loop)."""
        self._tasks.add(task)
        task.add_done_callback(lambda ended: self._ended(ended, what))
        return task

    def health(self) -> tuple[bool, str]:
        if self._failure is not None:
            return False, self._failure
        return True, "every vital task is running"

    async def stop(self) -> None:
        """Cancel the vital tasks still running and wait for them to end."""
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _ended(self, task: asyncio.Task[Any], what: str) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return  # stopped by whoever started it
        error = task.exception()
        reason = "it returned" if error is None else f"{type(error).__name__}: {error}"
        failure = f"{what} ended unexpectedly ({reason}); restart the process"
        log.error("%s: %s", self.service, failure, exc_info=error)
        if self._failure is None:
            self._failure = failure


class WorkerPool(Generic[T]):
    """A queue and ``size`` workers, each handling one item at a time with ``handle``.

    ``handle`` must not raise: it owns what happens to its item (retry, dead letter). If it
    does raise, that worker ends and its supervisor reports it.
    """

    def __init__(
        self,
        name: str,
        handle: Callable[[T], Awaitable[None]],
        *,
        size: int,
        supervisor: Supervisor,
    ) -> None:
        self.name = name
        self.queue: asyncio.Queue[T] = asyncio.Queue()
        self._handle = handle
        self._size = size
        self._supervisor = supervisor
        self.workers: list[asyncio.Task[None]] = []
        # Per busy worker, a future that is done when its item is: stopping waits for the
        # items, not for the workers, which would take the next item and never end.
        self._in_hand: dict[int, asyncio.Future[None]] = {}
        self._stopping = False

    def put(self, item: T) -> None:
        self.queue.put_nowait(item)

    def start(self) -> None:
        self.workers = [
            self._supervisor.spawn(self._work(n), f"{self.name} worker {n}")
            for n in range(self._size)
        ]

    def stop_taking(self) -> dict[asyncio.Future[None], asyncio.Task[None]]:
        """Take no new item; the items being handled now, each with its worker."""
        self._stopping = True
        return {finished: self.workers[n] for n, finished in self._in_hand.items()}

    async def stop(self, grace: float, *, what: str) -> None:
        await stop_pools([self], grace, what=what)

    async def _work(self, n: int) -> None:
        while not self._stopping:
            item = await self.queue.get()
            finished = asyncio.get_running_loop().create_future()
            self._in_hand[n] = finished
            try:
                await self._handle(item)
            finally:
                del self._in_hand[n]
                finished.set_result(None)
        # Stopping: a worker ends only by its pool's cancellation, never by returning, which
        # its supervisor would rightly call a failure.
        await asyncio.Event().wait()


async def stop_pools(pools: Iterable[WorkerPool[Any]], grace: float, *, what: str) -> None:
    """Start nothing new; give the items being handled ``grace`` seconds, then cancel them.

    ``what`` names the items in the log ("deliveries", "datagrams"); whatever was cancelled is
    still in the ledger or the inbox and is resumed at the next start.
    """
    pools = list(pools)
    in_hand: dict[asyncio.Future[None], asyncio.Task[None]] = {}
    for pool in pools:
        in_hand |= pool.stop_taking()
    busy = set(in_hand.values())
    workers = [worker for pool in pools for worker in pool.workers]
    for worker in workers:
        if worker not in busy:
            worker.cancel()
    if in_hand:
        log.info("waiting up to %.0f s for %d %s in flight", grace, len(in_hand), what)
        _, unfinished = await asyncio.wait(in_hand, timeout=grace)
        if unfinished:
            log.warning(
                "%d %s did not finish within the grace period; they resume at the next start",
                len(unfinished),
                what,
            )
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
