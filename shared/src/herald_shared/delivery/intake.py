"""Taking events on, and the group commit of everything the runner writes to the ledger.

An event is routed (each destination's ``when:`` and targets, then the silences and maintenance
windows of ``quiet.py``, then the rate limits, then the groups of ``grouping.py``, which collect
alerts for a digest) and its deliveries are stored in one commit, with
the event's id for ingest's acknowledgement (``acks.py``); only then does the bus acknowledge the
message. What arrives, ends or is rescheduled within one turn of the event loop is written in one
transaction: under a burst that turns many commits into one; alone, an event waits for nothing
but its own commit.

A write that fails (the disk is full) loses nothing and ends nothing: the events were not
acknowledged, so the broker delivers them again; ends and reschedules are kept and written with
a later batch, tried every second. Meanwhile :meth:`Intake.health` says why the service is not
ready. Metrics and log lines follow the commit, so each thing that happened is counted once.

A test alert (``herald send-test``) is never rate limited, and every destination answers for
it: one whose ``when:`` does not choose it, that ``skips_tests``, that has no target for it or
that raises :class:`Skipped` from ``targets()`` ends with a ``skipped`` receipt saying why; each
of its pending deliveries is announced on the pending topic, so the sender knows what to wait
for.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from herald_shared import events, metrics
from herald_shared.db import Database
from herald_shared.delivery.acks import Acknowledgements
from herald_shared.delivery.destination import Destination, Skipped
from herald_shared.delivery.grouping import Digest, Grouping, dead_members
from herald_shared.delivery.lanes import Lane
from herald_shared.delivery.ledger import Job, Ledger, State
from herald_shared.delivery.quiet import EventQuiet, Quiet
from herald_shared.delivery.reporting import Reporter
from herald_shared.events import Event

log = logging.getLogger("herald_shared.delivery.runner")

EVENT_CACHE_SIZE = 1024  # decoded events kept in memory; the rest are read back
RETRY_WRITE_AFTER = 1.0


class EventCache:
    """Pending events live in the ledger; this keeps the recent ones decoded, so memory stays
    bounded however long a destination is down."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._events: OrderedDict[str, Event] = OrderedDict()

    def remember(self, event: Event) -> None:
        self._events[event.event_id] = event
        self._events.move_to_end(event.event_id)
        while len(self._events) > EVENT_CACHE_SIZE:
            self._events.popitem(last=False)

    def forget(self, event_id: str) -> None:
        self._events.pop(event_id, None)

    def get(self, event_id: str) -> Event | None:
        """The event, or None if the ledger no longer has it."""
        event = self._events.get(event_id)
        if event is None:
            payload = self._ledger.event_payload(event_id)
            if payload is None:
                return None
            event = events.decode(payload)
            self.remember(event)
        return event


_Report = tuple[Event | None, Job, State, str | None, float]


@dataclass
class _Batch:
    """What one transaction did, acted on once it has committed."""

    accepted: list[tuple[Lane, Job]] = field(default_factory=list)
    received: list[str] = field(default_factory=list)  # one outcome per event taken
    finished: list[str] = field(default_factory=list)  # events with nothing left pending
    reports: list[_Report] = field(default_factory=list)


_Write = Callable[[_Batch], None]


class Intake:
    def __init__(
        self,
        *,
        service: str,
        lanes: dict[str, Lane],
        db: Database,
        reporter: Reporter,
        acks: Acknowledgements,
        clock: Callable[[], float],
        quiet: Quiet,
    ) -> None:
        self._lanes = lanes
        self._quiet = quiet
        self._db = db
        self._ledger = Ledger(db)
        self.grouping = Grouping(db)
        self._reporter = reporter
        self._acks = acks
        self._clock = clock
        self.events = EventCache(self._ledger)
        self._received = {
            outcome: metrics.EVENTS_RECEIVED.labels(service=service, outcome=outcome)
            for outcome in ("stored", "duplicate", "rejected")
        }
        self._arrived: list[tuple[Event, bytes, asyncio.Future[None]]] = []
        self._writes: list[_Write] = []
        self._flush_scheduled = False
        self._failing: str | None = None
        self._retrying: asyncio.TimerHandle | None = None

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    def health(self) -> tuple[bool, str]:
        if self._failing is not None:
            return False, self._failing
        return True, "the ledger is writable"

    async def take(self, topic: str, payload: bytes) -> None:
        """Store the deliveries of the event in ``payload``; returns once they are committed."""
        try:
            event = events.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            self._reporter.rejected(topic, payload, str(error), self._clock())
            self._received["rejected"].inc()
            return
        stored = asyncio.get_running_loop().create_future()
        self._arrived.append((event, payload, stored))
        self._flush_soon()
        await stored

    def finish(
        self, job: Job, event: Event | None, state: State, detail: str | None, ended_at: float
    ) -> None:
        """Record the end of a delivery with the next batch, and report it once written."""

        def write(batch: _Batch) -> None:
            if self._ledger.finish(job, state, ended_at, detail):
                batch.finished.append(job.event_id)
            self._report(batch, (event, job, state, detail, ended_at))

        self._writes.append(write)
        self._flush_soon()

    def finish_digest(
        self, job: Job, digest: Digest | None, state: State, detail: str | None, ended_at: float
    ) -> None:
        """Record the end of a digest's delivery with the next batch: its receipt carries the
        event ids; its events are forgotten, unless it was dead-lettered: then each alert it
        carried becomes a dead letter of its own, which a replay delivers alone."""

        def write(batch: _Batch) -> None:
            self._ledger.finish(job, state, ended_at, detail)
            self._reporter.digest_ended(digest, job, state, detail, ended_at)
            if state == "dead_lettered" and digest is not None:
                for event, member, reason in dead_members(digest, job, detail):
                    self._ledger.store_event(event.event_id, events.encode(event))
                    self._ledger.finish(member, "dead_lettered", ended_at, reason)
                    self._reporter.dead_letter(event, member, reason, ended_at)
            self.grouping.forget(job.event_id)
            batch.reports.append((None, job, state, detail, ended_at))

        self._writes.append(write)
        self._flush_soon()

    def flush_groups(self) -> None:
        """With the next batch, turn every group whose window ended into its digest's delivery."""

        def write(batch: _Batch) -> None:
            now = self._clock()
            settings = {
                name: lane.destination.group
                for name, lane in self._lanes.items()
                if lane.destination.group is not None
            }
            for due in self.grouping.flush(now, settings, set(self._lanes)):
                job = Job(due.id, due.destination, due.target, received_at=now, next_attempt_at=now)
                self._ledger.add(job, "pending", now=now)
                batch.accepted.append((self._lanes[due.destination], job))

        self._writes.append(write)
        self._flush_soon()

    def reschedule(self, job: Job, reason: str, *, test: bool = False) -> None:
        """Record a retry's time and reason with the next batch (and, for a test alert, say so)."""

        def write(_: _Batch) -> None:
            self._ledger.reschedule(job, reason)
            if test:
                self._reporter.pending(job, reason, self._clock(), job.next_attempt_at)

        self._writes.append(write)
        self._flush_soon()

    def flush(self) -> None:
        """Write what is waiting now (the runner's last act before the database closes)."""
        self._flush_scheduled = False
        if not (self._arrived or self._writes):
            return
        arrived, self._arrived = self._arrived, []
        writes, self._writes = self._writes, []
        batch = _Batch()
        try:
            with self._db.transaction():
                now = self._clock()
                for event, payload, _ in arrived:
                    self._take(event, payload, now, batch)
                # Duplicates too: ingest resends what it has no acknowledgement for.
                self._acks.record([event.event_id for event, _, _ in arrived])
                for write in writes:
                    write(batch)
        except Exception as error:
            self._write_failed(error, arrived, writes)
            return
        self._written(arrived, batch)

    def close(self) -> None:
        """Write what is waiting one last time (the database closes next) and stop retrying."""
        self.flush()
        if self._retrying is not None:
            self._retrying.cancel()
        if self._writes:
            log.warning(
                "%d delivery records could not be written to the ledger; those deliveries are"
                " pending there and resume at the next start",
                len(self._writes),
            )

    def _flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def _write_failed(
        self,
        error: Exception,
        arrived: list[tuple[Event, bytes, asyncio.Future[None]]],
        writes: list[_Write],
    ) -> None:
        # Nothing of this batch was stored: the events go back to the broker unacknowledged,
        # the rest is written with a later batch.
        log.error("cannot write to the ledger; retrying", exc_info=error)
        self.grouping.reload()  # the open groups as the database still has them
        self._failing = (
            f"cannot write to the ledger {self._db.path}: {error}; retrying every "
            f"{RETRY_WRITE_AFTER:g} s (is the disk full?)"
        )
        for _, _, stored in arrived:
            stored.set_exception(error)
        self._writes[:0] = writes
        loop = asyncio.get_running_loop()
        self._retrying = loop.call_later(RETRY_WRITE_AFTER, self._flush_soon)

    def _written(
        self, arrived: list[tuple[Event, bytes, asyncio.Future[None]]], batch: _Batch
    ) -> None:
        if self._failing is not None:
            log.info("the ledger can be written again")
            self._failing = None
        for _, _, stored in arrived:
            stored.set_result(None)
        if arrived:
            self._acks.send_soon()
        for outcome in batch.received:
            self._received[outcome].inc()
        for report in batch.reports:
            self._reporter.announce(*report)
        for event_id in batch.finished:
            self.events.forget(event_id)
        for lane, job in batch.accepted:
            lane.schedule(job, 0.0)

    def _report(self, batch: _Batch, report: _Report) -> None:
        self._reporter.publish(*report)
        batch.reports.append(report)

    def _take(self, event: Event, payload: bytes, now: float, batch: _Batch) -> None:
        """Record ``event``'s deliveries (inside the batch transaction)."""
        if self._ledger.knows(event.event_id):
            batch.received.append("duplicate")
            log.info(
                "%s %s was already taken on; not delivering it again", event.kind, event.event_id
            )
            return
        accepted = len(batch.accepted)
        quiet = self._quiet.for_event(event, now)
        for lane in self._lanes.values():
            if lane.destination.when.matches(event):
                self._route(lane, event, now, batch, quiet)
            elif event.test:
                # A test alert hears from every destination, even one that does not want it.
                reason = "its when: does not choose this test alert"
                self._skip(batch, event, lane.destination, reason, now)
        if len(batch.accepted) > accepted:
            self._ledger.store_event(event.event_id, payload)
            self.events.remember(event)
        batch.received.append("stored")

    def _route(
        self, lane: Lane, event: Event, now: float, batch: _Batch, quiet: EventQuiet
    ) -> None:
        destination = lane.destination
        if event.test and destination.skips_tests is not None:
            self._skip(batch, event, destination, destination.skips_tests, now)
            return
        try:
            targets = destination.targets(event)
        except Skipped as skipped:
            self._skip(batch, event, destination, skipped.reason, now)
            return
        except Exception as error:
            # A bug in choosing targets must not block the other destinations.
            log.exception("%s could not choose targets for %s", destination.name, event.event_id)
            job = Job(event.event_id, destination.name, "", received_at=now, next_attempt_at=now)
            self._end_at_once(batch, event, job, f"could not choose targets: {error!r}", now)
            return
        if not targets and event.test:
            self._skip(batch, event, destination, "no targets for this test alert", now)
        held = quiet.held(destination) if targets else None  # silenced or muted
        for target in targets:
            job = Job(
                event.event_id, destination.name, target.id, received_at=now, next_attempt_at=now
            )
            if held is not None:
                self._end_at_once(batch, event, job, held.reason, now, state=held.state)
                continue
            window = destination.rate_limit
            key = f"{destination.name}|{target.rate_key}"
            if (
                window
                and target.rate_key is not None
                # A test alert is never suppressed, and takes no slot from a real alert.
                and not event.test
                and not self._ledger.take_rate_slot(key, window, now)
            ):
                reason = f"rate limit: one per {window:g} s for {target.rate_key}"
                self._end_at_once(batch, event, job, reason, now, state="suppressed")
                continue
            grouped = self.grouping.place(destination, event, target.id, now)
            if grouped is not None:
                self._end_at_once(batch, event, job, grouped.reason, now, state="grouped")
            else:
                self._ledger.add(job, "pending", now=now)
                batch.accepted.append((lane, job))
                if event.test:
                    self._reporter.pending(job, "taken on", now, now)

    def _skip(
        self, batch: _Batch, event: Event, destination: Destination, reason: str, now: float
    ) -> None:
        job = Job(event.event_id, destination.name, "", received_at=now, next_attempt_at=now)
        self._end_at_once(batch, event, job, reason, now, state="skipped")

    def _end_at_once(
        self,
        batch: _Batch,
        event: Event,
        job: Job,
        reason: str,
        now: float,
        state: State = "dead_lettered",
    ) -> None:
        self._ledger.add(job, state, now=now, reason=reason)
        self._report(batch, (event, job, state, reason, now))
