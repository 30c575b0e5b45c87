"""The delivery runner: everything between "an event arrived" and "the destination has it".

For each event the runner asks every destination whether it wants it (``when:`` and its
targets), applies the rate limits, and stores the resulting deliveries in the ledger in one
commit (``intake.py``). Only then does the bus acknowledge the message: from that moment the
delivery is the service's responsibility and survives a restart. Each destination has its own
lane, with its own queue and workers (``lanes.py``), so one destination that is down for hours
stalls neither the others nor the broker.

A delivery ends exactly once, as delivered, dead-lettered (a permanent error, retries past the
deadline, or an event the ledger lost), suppressed (rate limit), skipped, silenced (a silence),
muted (a time interval; ``quiet.py``) or grouped (collected for a digest; ``grouping.py``,
whose due groups the runner turns into digest deliveries on a timer); its receipt goes out on
the deliveries topic and a dead letter on the dead-letter topic, through the durable outbox
(``reporting.py``). When to retry and when to give up is ``policy.py``'s decision.
A dead letter can be put back to pending by a replay request (``replaying.py``).

The runner takes ``(topic, payload)``, not a bus message, so anything that can hand it bytes can
drive it (the subscriber service's bus; an in-memory bus in the tests).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence

from herald_shared import topics
from herald_shared.db import Database
from herald_shared.delivery import policy
from herald_shared.delivery.acks import Acknowledgements
from herald_shared.delivery.destination import Destination
from herald_shared.delivery.grouping import Digest, is_digest
from herald_shared.delivery.intake import Intake
from herald_shared.delivery.lanes import Failed, Lane
from herald_shared.delivery.ledger import Job, Ledger, State
from herald_shared.delivery.quiet import Quiet
from herald_shared.delivery.replaying import Replays
from herald_shared.delivery.reporting import Reporter
from herald_shared.events import Event
from herald_shared.metrics import SILENCES_ACTIVE
from herald_shared.outbox import Outbox
from herald_shared.replay import ReplayAnswer
from herald_shared.settings import DeliverySettings
from herald_shared.silences import SilenceBook
from herald_shared.supervision import Supervisor, every, stop_pools
from herald_shared.time_intervals import NamedInterval

__all__ = ["PURGE_INTERVAL", "Runner"]

log = logging.getLogger(__name__)

PURGE_INTERVAL = 3600.0
GROUP_TICK = 0.25  # how often the runner looks for groups whose window ended


class Runner:
    def __init__(
        self,
        *,
        service: str,
        destinations: Sequence[Destination],
        db: Database,
        outbox: Outbox,
        settings: DeliverySettings,
        topic_prefix: str,
        instance: str | None = None,
        clock: Callable[[], float] = time.time,
        supervisor: Supervisor | None = None,
        uniform: policy.Uniform = random.uniform,
        purge_interval: float = PURGE_INTERVAL,
        silences: SilenceBook | None = None,
        time_intervals: Mapping[str, NamedInterval] | None = None,
    ) -> None:
        names = [destination.name for destination in destinations]
        if len(set(names)) != len(names):
            raise ValueError(f"destination names must be unique: {names}")
        self.service = service
        self._settings = settings
        self._clock = clock
        self._uniform = uniform
        self._purge_interval = purge_interval
        self._supervisor = supervisor or Supervisor(service)
        self._reporter = Reporter(service, outbox, topic_prefix)
        # With an instance, every event taken on is acknowledged to ingest (acks.py).
        acks_topic = (
            None if instance is None else topics.acks_topic(topic_prefix, service, instance)
        )
        self._acks = Acknowledgements(db, outbox, acks_topic)
        self._lanes = {
            destination.name: Lane(
                destination,
                self._reporter.lane_metrics(destination.name),
                self._work,
                concurrency=settings.concurrency,
                attempt_timeout=settings.attempt_timeout,
                supervisor=self._supervisor,
            )
            for destination in destinations
        }
        self.silences = silences or SilenceBook(topic_prefix, service)
        self._quiet = Quiet(db, self.silences, time_intervals or {})
        self._quiet.check(destinations)
        SILENCES_ACTIVE.labels(service=service).set_function(
            lambda: len(self.silences.active(self._clock()))
        )
        self._intake = Intake(
            service=service,
            lanes=self._lanes,
            db=db,
            reporter=self._reporter,
            clock=clock,
            quiet=self._quiet,
            acks=self._acks,
        )
        self._replays = Replays(
            service=service,
            instance=instance,
            lanes=self._lanes,
            db=db,
            ledger=self._intake.ledger,
            outbox=outbox,
            answer_topic=None
            if instance is None
            else topics.replayed_topic(topic_prefix, service, instance),
            clock=clock,
        )
        self._purging: asyncio.Task[None] | None = None
        self._grouping: asyncio.Task[None] | None = None
        self._stopping = False
        self._started = False

    @property
    def ledger(self) -> Ledger:
        return self._intake.ledger

    @property
    def queued(self) -> int:
        """Deliveries taken on and not ended yet, in every lane (``herald_delivery_queue``)."""
        return sum(lane.waiting for lane in self._lanes.values())

    @property
    def open_groups(self) -> int:
        """How many groups of alerts are collecting for a digest (grouping.py)."""
        return self._intake.grouping.open

    @property
    def ready(self) -> bool:
        return self._started and all(lane.destination.ready for lane in self._lanes.values())

    def health(self) -> tuple[bool, str]:
        """Whether a vital task ended or the ledger cannot be written, and which."""
        for ok, why in (self._supervisor.health(), self._intake.health()):
            if not ok:
                return False, why
        return True, "running, the ledger is writable"

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        for lane in self._lanes.values():
            await lane.destination.start()
        self._resume()
        self._acks.send_soon()  # what a previous run recorded but did not send
        for lane in self._lanes.values():
            lane.pool.start()
        purge = every(self._purge_interval, self._purge, what="purging the ledger")
        self._purging = self._supervisor.spawn(purge, "ledger purge")
        grouping = any(lane.destination.group is not None for lane in self._lanes.values())
        if grouping or self.open_groups:  # also the groups left from when grouping was on
            flush = every(GROUP_TICK, self._flush_groups, what="sending due digests")
            self._grouping = self._supervisor.spawn(flush, "digests")
        self._started = True

    async def stop(self, grace: float) -> None:
        """Start nothing new; give running deliveries ``grace`` seconds, then cancel them.

        Whatever did not finish stays pending in the ledger and is resumed on the next start.
        """
        self._stopping = True
        for lane in self._lanes.values():
            lane.cancel_timers()
        for task in (self._purging, self._grouping):
            if task is not None:
                task.cancel()
        await stop_pools((lane.pool for lane in self._lanes.values()), grace, what="deliveries")
        self._intake.close()  # what ended last is written before the database closes
        self._acks.close()
        for lane in self._lanes.values():
            try:
                await lane.destination.close()
            except Exception:
                log.exception("closing %s failed", lane.destination.name)

    def _resume(self) -> None:
        now = self._clock()
        resumed = 0
        for job in self.ledger.pending():
            lane = self._lanes.get(job.destination)
            if lane is None:
                log.warning(
                    "a pending delivery to %s, which is no longer configured, stays pending",
                    job.destination,
                )
                continue
            job.received_monotonic -= max(0.0, now - job.received_at)  # its age so far
            lane.schedule(job, policy.resume_delay(job, self._settings, now))
            resumed += 1
        if resumed:
            log.info("resuming %d pending deliveries", resumed)

    # --- taking events -------------------------------------------------------------------

    async def handle(self, topic: str, payload: bytes) -> None:
        """Store the event's deliveries; the caller acknowledges the message on return."""
        await self._intake.take(topic, payload)

    def replay(self, topic: str, payload: bytes) -> ReplayAnswer | None:
        """Put the dead letters a replay request selects back to pending, and answer it."""
        return self._replays.take(topic, payload)

    # --- delivering ----------------------------------------------------------------------

    async def _work(self, lane: Lane, job: Job) -> None:
        """One attempt at a job, and what follows: its end or its retry. Never raises."""
        if self._stopping:
            return  # still pending in the ledger: resumed at the next start
        # A job delivers one event or, when it is a digest's (grouping.py), the events it holds.
        event: Event | None = None
        digest: Digest | None = None
        if is_digest(job.event_id):
            digest = self._intake.grouping.digest(job.event_id, lane.destination.group)
            missing = None if digest is not None else "its alerts are missing from the ledger"
        else:
            event = self._intake.events.get(job.event_id)
            missing = None if event is not None else "its event is missing from the ledger"
        if missing is not None:
            self._finish(lane, job, None, "dead_lettered", f"{missing}; it cannot be delivered")
            return
        job.attempts += 1
        if job.first_attempt_at is None:
            job.first_attempt_at = self._clock()
        if digest is not None:
            result = await lane.attempt_digest(digest, job.target)
        else:
            assert event is not None
            result = await lane.attempt(event, job.target)
        if isinstance(result, Failed):
            self._retry(lane, job, event, result, digest)
        else:
            self._finish(lane, job, event, result.state, result.detail, digest)

    def _retry(
        self,
        lane: Lane,
        job: Job,
        event: Event | None,
        failed: Failed,
        digest: Digest | None = None,
    ) -> None:
        decision = policy.after_failure(
            job, self._settings, job.age(), failed.reason, failed.retry_after, self._uniform
        )
        if isinstance(decision, policy.GiveUp):
            self._finish(lane, job, event, "dead_lettered", decision.reason, digest=digest)
            return
        job.next_attempt_at = self._clock() + decision.delay
        self._intake.reschedule(job, failed.reason, test=event is not None and event.test)
        log.warning(
            "delivery of %s %s to %s failed (attempt %d), retrying in %.1f s: %s",
            event.kind if event is not None else "the digest",
            job.event_id,
            lane.destination.name,
            job.attempts,
            decision.delay,
            failed.reason,
        )
        lane.done(job)
        lane.schedule(job, decision.delay)

    def _finish(
        self,
        lane: Lane,
        job: Job,
        event: Event | None,
        state: State,
        detail: str | None,
        digest: Digest | None = None,
    ) -> None:
        """The end of a job: of ``event``'s delivery, or of a digest's (``digest``; None when
        its alerts are lost)."""
        now = self._clock()
        if is_digest(job.event_id):
            self._intake.finish_digest(job, digest, state, detail, now)
        else:
            self._intake.finish(job, event, state, detail, now)
        lane.done(job)
        if state == "delivered":
            lane.metrics.seconds.observe(job.age())

    def _flush_groups(self) -> None:
        if self._intake.grouping.due(self._clock()):
            self._intake.flush_groups()

    def _purge(self) -> None:
        now = self._clock()
        removed = self.ledger.purge(now - self._settings.ledger_retention, now)
        self._quiet.purge(now - self._settings.ledger_retention)
        if removed:
            log.info("forgot %d deliveries older than the ledger retention", removed)
