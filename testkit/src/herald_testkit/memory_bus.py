"""An in-memory bus that drives the delivery runner without a broker.

For the runner's routing, rate-limit, retry and payload behaviour only: it has no sessions, no
redelivery and no faults, so the bus itself, faults and redelivery are tested against a real
Mosquitto. Without a broker process the test owns every input, including the runner's clock.

:func:`memory_runner` runs a :class:`~herald_shared.delivery.runner.Runner` with its real
ledger and outbox in ``state_dir``; what the outbox publishes (receipts, dead letters) is in
``seen``, with the same ``wait_for`` as :class:`herald_testkit.mqtt.Observer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

from herald_shared import events, topics
from herald_shared.db import Database, database_for
from herald_shared.delivery.destination import Destination
from herald_shared.delivery.runner import PURGE_INTERVAL, Runner
from herald_shared.events import Event
from herald_shared.outbox import Outbox
from herald_shared.settings import DeliverySettings
from herald_shared.silences import SilenceBook
from herald_shared.time_intervals import NamedInterval
from herald_testkit.mqtt import Seen, wait_for_seen


class MemoryBus:
    """Publishes into :attr:`seen`; always connected."""

    def __init__(self, service: str) -> None:
        self._service = service
        self.seen: list[Seen] = []
        self._changed = asyncio.Event()

    @property
    def service(self) -> str:
        return self._service

    async def wait_connected(self) -> None:
        return None

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.seen.append(Seen(topic, payload, retain))
        self._changed.set()

    async def wait_for(
        self, predicate: Callable[[list[Seen]], bool], within: float = 20.0
    ) -> list[Seen]:
        """Wait until ``predicate(self.seen)`` holds; raises TimeoutError with what was seen."""
        return await wait_for_seen(self.seen, self._changed, predicate, within)


class MemoryRunner:
    """A runner fed by the test: :meth:`publish` hands it events as the bus would."""

    def __init__(
        self, runner: Runner, bus: MemoryBus, topic_prefix: str, db: Database | None = None
    ) -> None:
        self.runner = runner
        self.bus = bus
        self.db = db  # the runner's own connection (a full disk is set on it)
        self._prefix = topic_prefix

    async def publish(self, *items: Event) -> None:
        """Each event in turn, returning once the runner has stored its deliveries."""
        for event in items:
            await self.runner.handle(topics.topic_of(self._prefix, event), events.encode(event))

    async def send(self, topic: str, payload: bytes) -> None:
        await self.runner.handle(topic, payload)


@contextlib.asynccontextmanager
async def memory_runner(
    state_dir: Path,
    destinations: Sequence[Destination],
    *,
    delivery: DeliverySettings,
    service: str = "runner-test",
    topic_prefix: str = "herald",
    clock: Callable[[], float] = time.time,
    purge_interval: float = PURGE_INTERVAL,
    silences: SilenceBook | None = None,
    time_intervals: Mapping[str, NamedInterval] | None = None,
) -> AsyncIterator[MemoryRunner]:
    db = database_for(state_dir, service)
    bus = MemoryBus(service)
    outbox = Outbox(db, bus)
    runner = Runner(
        service=service,
        destinations=destinations,
        db=db,
        outbox=outbox,
        settings=delivery,
        topic_prefix=topic_prefix,
        clock=clock,
        purge_interval=purge_interval,
        silences=silences,
        time_intervals=time_intervals,
    )
    await runner.start()
    publishing = asyncio.create_task(outbox.run(), name=f"{service}-memory-outbox")
    try:
        yield MemoryRunner(runner, bus, topic_prefix, db)
    finally:
        await runner.stop(delivery.shutdown_grace)
        try:
            if publishing.done():  # the outbox loop must run until it is cancelled
                publishing.result()
                raise RuntimeError("the outbox loop returned")
            await asyncio.wait_for(outbox.wait_empty(), 10)
        finally:
            publishing.cancel()
            await asyncio.gather(publishing, return_exceptions=True)
            db.close()
