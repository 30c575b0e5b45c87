"""A subscriber service: the bus, the runner and the outbox around a list of destinations.

Every destination service (emailer, chat-notifier, …, log-archiver) is one of these; the service
package only builds its destinations from its settings. Besides the events it follows the
silences (retained, so one added while the service was down is known when it is back; they are
subscribed first, so they arrive before the events a new session brings) and the replay requests
for this service (never shared: each instance answers for its own ledger). The runner
acknowledges the events it stores to ingest (``herald/v1/acks/<service>/<instance>``,
``delivery/acks.py``), which resends what a broker lost (``herald_ingest.redelivery``). The bus
connection, the outbox loop and
the runner's workers are vital tasks of one :class:`Supervisor`: if one ends, ``/readyz`` and
``/livez`` say which and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from herald_shared import topics
from herald_shared.bus import Bus, Message
from herald_shared.db import database_for
from herald_shared.delivery.destination import Destination
from herald_shared.delivery.runner import Runner
from herald_shared.outbox import Outbox
from herald_shared.self_report import SelfReport, SelfReporter, herald_version
from herald_shared.settings import BrokerSettings, DeliverySettings
from herald_shared.silences import SilenceBook
from herald_shared.supervision import Supervisor
from herald_shared.time_intervals import NamedInterval

__all__ = ["OUTBOX_FLUSH_SECONDS", "SubscriberService"]

log = logging.getLogger(__name__)

#: On stop, how long receipts still in the outbox get to reach the broker.
OUTBOX_FLUSH_SECONDS = 3.0


class SubscriberService:
    def __init__(
        self,
        *,
        name: str,
        destinations: Sequence[Destination],
        broker: BrokerSettings,
        delivery: DeliverySettings,
        state_dir: Path,
        time_intervals: Mapping[str, NamedInterval] | None = None,
    ) -> None:
        self.name = name
        self._delivery = delivery
        self.db = database_for(state_dir, name)
        subscription = topics.events_subscription(
            broker.topic_prefix, name, shared=broker.effective_shared_subscriptions
        )
        self.silences = SilenceBook(broker.topic_prefix, name)
        self._replay_topic = topics.replay_topic(broker.topic_prefix, name)
        # What `herald send-test` waits for: the names of the destinations this instance runs.
        announcement = (
            topics.destinations_topic(broker.topic_prefix, name, broker.instance),
            json.dumps([destination.name for destination in destinations]).encode(),
        )
        self.bus = Bus(
            broker,
            name,
            subscriptions=[self.silences.subscription, self._replay_topic, subscription],
            handler=self._handle,
            retained=[announcement],
        )
        self.outbox = Outbox(self.db, self.bus)
        self._supervisor = Supervisor(name)
        self.runner = Runner(
            service=name,
            destinations=destinations,
            db=self.db,
            outbox=self.outbox,
            settings=delivery,
            topic_prefix=broker.topic_prefix,
            instance=broker.instance,
            supervisor=self._supervisor,
            silences=self.silences,
            time_intervals=time_intervals,
        )
        self._publishing: asyncio.Task[None] | None = None
        self._reporting: asyncio.Task[None] | None = None
        self._started_at = datetime.now(UTC)
        self._last_event_at: datetime | None = None
        self._self_reporter = SelfReporter(self.bus, self._self_report)

    def _self_report(self) -> SelfReport:
        ready, why = self.readiness()
        return SelfReport(
            version=herald_version(),
            ready=ready,
            why=why,
            queued=self.runner.queued,
            last_event_at=self._last_event_at,
            started_at=self._started_at,
        )

    async def _handle(self, message: Message) -> None:
        if self.silences.takes(message.topic):
            self.silences.update(message.topic, message.payload)
            return
        if message.topic == self._replay_topic:
            self.runner.replay(message.topic, message.payload)
            return
        self._last_event_at = datetime.now(UTC)
        await self.runner.handle(message.topic, message.payload)

    async def start(self) -> None:
        await self.runner.start()  # resume what a previous run left pending first
        self._publishing = self._supervisor.spawn(self.outbox.run(), "the outbox loop")
        self._supervisor.watch(self.bus.start(), "the broker connection loop")
        self._reporting = self._supervisor.spawn(self._self_reporter.run(), "the self-report loop")

    async def stop(self) -> None:
        self.bus.stop_consuming()
        if self._reporting is not None:
            self._reporting.cancel()  # before it is cleared below, so nothing says it again
        await self.bus.drain()
        await self.runner.stop(self._delivery.shutdown_grace)
        if self.bus.connected:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.outbox.wait_empty(), OUTBOX_FLUSH_SECONDS)
            await self._self_reporter.clear()
        if self._publishing is not None:
            self._publishing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publishing
        await self.bus.close()
        await self._supervisor.stop()
        self.db.close()

    def readiness(self) -> tuple[bool, str]:
        healthy, why = self.runner.health()  # a dead task or a full disk is said first
        if not healthy:
            return False, why
        if not self.bus.connected:
            return False, "not connected to the broker"
        if not self.runner.ready:
            return False, "destinations not ready"
        return True, "connected, destinations ready"

    def liveness(self) -> tuple[bool, str]:
        """Alive while every vital task runs: Kubernetes restarts the pod when one ended."""
        return self._supervisor.health()
