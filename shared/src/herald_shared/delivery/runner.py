"""The delivery runner: everything between "an event arrived" and "the destination has it".

For each event the runner asks every destination whether it wants it (``when:`` and its
targets), applies the rate limits, and stores the resulting deliveries in the ledger in one
commit. Only then does the bus acknowledge the message: from that moment the delivery is the
service's responsibility and survives a restart. Each destination has its own queue and
workers, so one destination that is down for hours stalls neither the others nor the broker.

A delivery ends exactly once, as delivered, dead-lettered (a permanent error, or retries past
the deadline), suppressed (rate limit) or skipped; its receipt goes out on the deliveries topic
and a dead letter on the dead-letter topic, through the durable outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from herald_shared import events, metrics, topics
from herald_shared.bus import Message
from herald_shared.db import Database
from herald_shared.delivery.destination import (
    Destination,
    PermanentError,
    Skipped,
    TransientError,
)
from herald_shared.delivery.ledger import FINISHED, Job, Ledger, State
from herald_shared.delivery.receipts import DeadLetter, Receipt, encode, timestamp
from herald_shared.events import Event
from herald_shared.outbox import Outbox
from herald_shared.settings import DeliverySettings

log = logging.getLogger(__name__)

PURGE_INTERVAL = 3600.0
EVENT_CACHE_SIZE = 1024  # decoded events kept in memory; the rest are read back


class _LaneMetrics:
    """The lane's metric children, looked up once (labels() is not free on a hot path)."""

    def __init__(self, service: str, destination: str) -> None:
        names = {"service": service, "destination": destination}
        self.attempts = {
            result: metrics.DELIVERY_ATTEMPTS.labels(**names, result=result)
            for result in ("ok", "transient_error", "permanent_error")
        }
        self.outcomes = {
            state: metrics.DELIVERIES.labels(**names, outcome=state) for state in FINISHED
        }
        self.queue = metrics.DELIVERY_QUEUE.labels(**names)
        self.seconds = metrics.DELIVERY_SECONDS.labels(**names)


@dataclass(eq=False)
class _Lane:
    """One destination's queue and workers."""

    destination: Destination
    metrics: _LaneMetrics
    queue: asyncio.Queue[Job] = field(default_factory=asyncio.Queue)
    workers: list[asyncio.Task[None]] = field(default_factory=list)
    busy: set[asyncio.Task[None]] = field(default_factory=set)
    timers: set[asyncio.TimerHandle] = field(default_factory=set)
    waiting: int = 0  # queued or scheduled for a retry


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        names = [destination.name for destination in destinations]
        if len(set(names)) != len(names):
            raise ValueError(f"destination names must be unique: {names}")
        self.service = service
        self._lanes = {
            destination.name: _Lane(destination, _LaneMetrics(service, destination.name))
            for destination in destinations
        }
        self._ledger = Ledger(db)
        self._db = db
        self._outbox = outbox
        self._settings = settings
        self._clock = clock
        self._deliveries_topic = topics.deliveries_topic(topic_prefix, service)
        self._dead_letter_topic = topics.dead_letter_topic(topic_prefix, service)
        # Pending events live in the ledger; this keeps the recent ones decoded, so memory stays
        # bounded however long a destination is down.
        self._events: OrderedDict[str, Event] = OrderedDict()
        self._received = {
            outcome: metrics.EVENTS_RECEIVED.labels(service=service, outcome=outcome)
            for outcome in ("stored", "duplicate", "rejected")
        }
        self._intake: list[tuple[Event, bytes, asyncio.Future[None]]] = []
        self._endings: list[tuple[Job, Event, State, str | None, float]] = []
        self._flush_scheduled = False
        self._stopping = False
        self._started = False
        self._housekeeping: asyncio.Task[None] | None = None

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    @property
    def ready(self) -> bool:
        return self._started and all(lane.destination.ready for lane in self._lanes.values())

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        for lane in self._lanes.values():
            await lane.destination.start()
        self._resume()
        for lane in self._lanes.values():
            lane.workers = [
                asyncio.create_task(
                    self._work(lane), name=f"{self.service}-{lane.destination.name}-{n}"
                )
                for n in range(self._settings.concurrency)
            ]
        self._housekeeping = asyncio.create_task(self._purge_periodically())
        self._started = True

    async def stop(self, grace: float) -> None:
        """Start nothing new; give running deliveries ``grace`` seconds, then cancel them.

        Whatever did not finish stays pending in the ledger and is resumed on the next start.
        """
        self._stopping = True
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        busy: set[asyncio.Task[None]] = set()
        for lane in self._lanes.values():
            for timer in lane.timers:
                timer.cancel()
            for worker in lane.workers:
                if worker not in lane.busy:
                    worker.cancel()
            busy |= lane.busy
        if busy:
            log.info("waiting up to %.0f s for %d deliveries in flight", grace, len(busy))
            _, unfinished = await asyncio.wait(busy, timeout=grace)
            for task in unfinished:
                task.cancel()
            if unfinished:
                log.warning(
                    "%d deliveries did not finish within the grace period; they resume at the next start",
                    len(unfinished),
                )
        all_workers = [worker for lane in self._lanes.values() for worker in lane.workers]
        await asyncio.gather(*all_workers, return_exceptions=True)
        self._flush()  # what ended last is written before the database closes
        for lane in self._lanes.values():
            with contextlib.suppress(Exception):
                await lane.destination.close()

    def _resume(self) -> None:
        now = self._clock()
        resumed = 0
        for job in self._ledger.pending():
            lane = self._lanes.get(job.destination)
            if lane is None:
                log.warning(
                    "a pending delivery to %s, which is no longer configured, stays pending",
                    job.destination,
                )
                continue
            self._schedule(lane, job, max(0.0, job.next_attempt_at - now))
            resumed += 1
        if resumed:
            log.info("resuming %d pending deliveries", resumed)

    # --- taking events -------------------------------------------------------------------

    async def handle(self, message: Message) -> None:
        """The bus handler: store the event's deliveries; the bus acknowledges on return."""
        try:
            event = events.decode(message.payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            self._reject(message, str(error))
            return
        stored = asyncio.get_running_loop().create_future()
        self._intake.append((event, message.payload, stored))
        self._flush_soon()
        await stored

    # Group commit: what arrives or ends within one turn of the event loop is written in one
    # transaction. Under a burst that turns many commits into one; alone, an event waits for
    # nothing but its own commit.

    def _flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not (self._intake or self._endings):
            return
        intake, self._intake = self._intake, []
        endings, self._endings = self._endings, []
        now = self._clock()
        accepted: list[tuple[_Lane, Job]] = []
        finished_events: list[str] = []
        try:
            with self._db.transaction():
                for event, payload, _ in intake:
                    accepted += self._take(event, payload, now)
                for job, event, state, detail, ended_at in endings:
                    if self._ledger.finish(job, state, ended_at, detail):
                        finished_events.append(job.event_id)
                    self._report(event, job, state, detail, ended_at)
        except Exception as error:
            # The disk is full or failing: nothing of this batch was stored. The events were
            # not acknowledged, so the broker delivers them again; the endings are kept and
            # written with a later batch.
            log.exception("cannot write to the ledger; retrying")
            for _, _, stored in intake:
                stored.set_exception(error)
            self._endings[:0] = endings
            asyncio.get_running_loop().call_later(1.0, self._flush_soon)
            return
        for _, _, stored in intake:
            stored.set_result(None)
        for event_id in finished_events:
            self._events.pop(event_id, None)
        for lane, job in accepted:
            self._schedule(lane, job, 0.0)

    def _take(self, event: Event, payload: bytes, now: float) -> list[tuple[_Lane, Job]]:
        """Record ``event``'s deliveries (inside the batch transaction); the ones to start."""
        if self._ledger.knows(event.event_id):
            self._received["duplicate"].inc()
            log.info(
                "%s %s was already taken on; not delivering it again", event.kind, event.event_id
            )
            return []
        accepted: list[tuple[_Lane, Job]] = []
        for lane in self._lanes.values():
            destination = lane.destination
            if not destination.when.matches(event):
                continue
            try:
                targets = destination.targets(event)
            except Exception as error:
                # A bug in choosing targets must not block the other destinations.
                log.exception(
                    "%s could not choose targets for %s", destination.name, event.event_id
                )
                job = Job(
                    event.event_id, destination.name, "", received_at=now, next_attempt_at=now
                )
                reason = f"could not choose targets: {error!r}"
                self._ledger.add(job, "dead_lettered", now=now, reason=reason)
                self._report(event, job, "dead_lettered", reason, now)
                continue
            for target in targets:
                job = Job(
                    event.event_id,
                    destination.name,
                    target.id,
                    received_at=now,
                    next_attempt_at=now,
                )
                if (
                    destination.rate_limit
                    and target.rate_key is not None
                    and not self._ledger.take_rate_slot(
                        f"{destination.name}|{target.rate_key}", destination.rate_limit, now
                    )
                ):
                    reason = (
                        f"rate limit: one per {destination.rate_limit:g} s for {target.rate_key}"
                    )
                    self._ledger.add(job, "suppressed", now=now, reason=reason)
                    self._report(event, job, "suppressed", reason, now)
                else:
                    self._ledger.add(job, "pending", now=now)
                    accepted.append((lane, job))
        if accepted:
            self._ledger.store_event(event.event_id, payload)
            self._remember(event)
        self._received["stored"].inc()
        return accepted

    def _reject(self, message: Message, reason: str) -> None:
        self._received["rejected"].inc()
        log.warning(
            "a message on %s is not a Herald event (%s); dead-lettered", message.topic, reason
        )
        letter = DeadLetter(
            service=self.service,
            destination=None,
            target="",
            reason=f"not a Herald event: {reason}",
            attempts=0,
            at=timestamp(self._clock()),
            topic=message.topic,
            payload=message.payload.decode("utf-8", errors="replace"),
        )
        self._outbox.add(self._dead_letter_topic, encode(letter))

    # --- delivering ----------------------------------------------------------------------

    def _schedule(self, lane: _Lane, job: Job, delay: float) -> None:
        lane.waiting += 1
        self._queue_gauge(lane)
        if delay <= 0:
            lane.queue.put_nowait(job)
            return
        loop = asyncio.get_running_loop()

        def due() -> None:
            lane.timers.discard(timer)
            lane.queue.put_nowait(job)

        timer = loop.call_later(delay, due)
        lane.timers.add(timer)

    async def _work(self, lane: _Lane) -> None:
        me = asyncio.current_task()
        assert me is not None
        while not self._stopping:
            job = await lane.queue.get()
            lane.busy.add(me)
            try:
                await self._attempt(lane, job)
            finally:
                lane.busy.discard(me)

    async def _attempt(self, lane: _Lane, job: Job) -> None:
        destination = lane.destination
        event = self._event(job.event_id)
        started = self._clock()
        job.attempts += 1
        if job.first_attempt_at is None:
            job.first_attempt_at = started
        try:
            async with asyncio.timeout(self._settings.attempt_timeout):
                detail = await destination.deliver(event, job.target)
        except TransientError as error:
            self._count_attempt(destination, "transient_error")
            self._retry(lane, job, event, error.reason, error.retry_after)
        except TimeoutError:
            self._count_attempt(destination, "transient_error")
            self._retry(
                lane, job, event, f"no answer within {self._settings.attempt_timeout:g} s", None
            )
        except PermanentError as error:
            self._count_attempt(destination, "permanent_error")
            self._finish(lane, job, event, "dead_lettered", error.reason)
        except Skipped as error:
            self._count_attempt(destination, "ok")
            self._finish(lane, job, event, "skipped", error.reason)
        except Exception as error:
            # A bug in the destination must not lose the alert: retry, and dead-letter at the end.
            log.exception("delivery to %s failed unexpectedly", destination.name)
            self._count_attempt(destination, "transient_error")
            self._retry(lane, job, event, f"unexpected error: {error!r}", None)
        else:
            self._count_attempt(destination, "ok")
            self._finish(lane, job, event, "delivered", detail)

    def _retry(
        self, lane: _Lane, job: Job, event: Event, reason: str, retry_after: float | None
    ) -> None:
        settings = self._settings
        now = self._clock()
        if retry_after is not None:
            delay = retry_after
        else:
            ceiling = min(settings.max_backoff, settings.initial_backoff * 2 ** (job.attempts - 1))
            delay = random.uniform(ceiling / 2, ceiling)  # jitter spreads a herd of retries
        if now + delay > job.received_at + settings.deadline:
            self._finish(
                lane,
                job,
                event,
                "dead_lettered",
                f"gave up after {job.attempts} attempts in {now - job.received_at:.0f} s: {reason}",
            )
            return
        job.next_attempt_at = now + delay
        with self._db.transaction():
            self._ledger.reschedule(job, reason)
        log.warning(
            "delivery of %s %s to %s failed (attempt %d), retrying in %.1f s: %s",
            event.kind,
            event.event_id,
            lane.destination.name,
            job.attempts,
            delay,
            reason,
        )
        lane.waiting -= 1
        self._schedule(lane, job, delay)

    def _finish(
        self, lane: _Lane, job: Job, event: Event, state: State, detail: str | None
    ) -> None:
        now = self._clock()
        self._endings.append((job, event, state, detail, now))
        self._flush_soon()
        lane.waiting -= 1
        self._queue_gauge(lane)
        if state == "delivered":
            lane.metrics.seconds.observe(now - job.received_at)

    def _report(self, event: Event, job: Job, state: State, detail: str | None, now: float) -> None:
        """Receipt (and dead letter), metric and log line for a delivery that ended."""
        assert state != "pending"
        self._lanes[job.destination].metrics.outcomes[state].inc()
        receipt = Receipt(
            event_id=event.event_id,
            kind=event.kind,
            task_id=event.task.id,
            task_name=event.task.name,
            service=self.service,
            destination=job.destination,
            target=job.target,
            outcome=state,
            attempts=job.attempts,
            at=timestamp(now),
            detail=detail,
        )
        self._outbox.add(self._deliveries_topic, encode(receipt))
        where = job.destination + (f" ({job.target})" if job.target else "")
        if state == "dead_lettered":
            letter = DeadLetter(
                service=self.service,
                destination=job.destination,
                target=job.target,
                reason=detail or "",
                attempts=job.attempts,
                at=timestamp(now),
                event=event,
            )
            self._outbox.add(self._dead_letter_topic, encode(letter))
            log.error(
                "dead-lettered %s of task %r to %s after %d attempts: %s",
                event.kind,
                event.task.name,
                where,
                job.attempts,
                detail,
            )
        elif state == "delivered":
            log.info(
                "delivered %s of task %r to %s%s",
                event.kind,
                event.task.name,
                where,
                f": {detail}" if detail else "",
            )
        else:
            log.info(
                "%s %s of task %r for %s: %s", state, event.kind, event.task.name, where, detail
            )

    def _remember(self, event: Event) -> None:
        self._events[event.event_id] = event
        self._events.move_to_end(event.event_id)
        while len(self._events) > EVENT_CACHE_SIZE:
            self._events.popitem(last=False)

    def _event(self, event_id: str) -> Event:
        event = self._events.get(event_id)
        if event is None:
            payload = self._ledger.event_payload(event_id)
            if payload is None:
                raise LookupError(f"pending delivery of {event_id} lost its event")
            event = events.decode(payload)
            self._remember(event)
        return event

    def _count_attempt(self, destination: Destination, result: str) -> None:
        self._lanes[destination.name].metrics.attempts[result].inc()

    def _queue_gauge(self, lane: _Lane) -> None:
        lane.metrics.queue.set(lane.waiting)

    async def _purge_periodically(self) -> None:
        while True:
            now = self._clock()
            removed = self._ledger.purge(now - self._settings.ledger_retention, now)
            if removed:
                log.info("forgot %d deliveries older than the ledger retention", removed)
            await asyncio.sleep(PURGE_INTERVAL)
