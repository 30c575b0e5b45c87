"""What a subscriber service says about each delivery that ended: its receipt, its dead letter,
its log line and its metrics.

A delivery ends once, and is reported once: the receipt and the dead letter go into the durable
outbox inside the ledger transaction that records the end, so they are published even if the
process dies right after; the metric and the log line follow once that transaction committed, so
a write that failed and was tried again is not counted twice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from herald_shared import metrics, topics
from herald_shared.delivery.ledger import FINISHED, Job, State
from herald_shared.delivery.receipts import DeadLetter, Pending, Receipt, encode, timestamp
from herald_shared.events import Event
from herald_shared.outbox import Outbox

if TYPE_CHECKING:
    from herald_shared.delivery.grouping import Digest

log = logging.getLogger("herald_shared.delivery.runner")  # operators filter on this name


class LaneMetrics:
    """A destination's metric children, looked up once (labels() is not free on a hot path)."""

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


class Reporter:
    def __init__(self, service: str, outbox: Outbox, topic_prefix: str) -> None:
        self.service = service
        self._outbox = outbox
        self._deliveries_topic = topics.deliveries_topic(topic_prefix, service)
        self._dead_letter_topic = topics.dead_letter_topic(topic_prefix, service)
        self._pending_topic = topics.pending_topic(topic_prefix, service)
        self.metrics: dict[str, LaneMetrics] = {}

    def lane_metrics(self, destination: str) -> LaneMetrics:
        found = self.metrics.get(destination)
        if found is None:  # not setdefault: that would look up every label child each time
            found = self.metrics[destination] = LaneMetrics(self.service, destination)
        return found

    def publish(
        self, event: Event | None, job: Job, state: State, detail: str | None, now: float
    ) -> None:
        """The receipt (and dead letter) of a delivery that ended, into the caller's transaction.

        ``event`` is None when the ledger lost it: the receipt then names only the event id.
        """
        self._receipt(job, state, detail, now, event)
        if state == "dead_lettered":
            self.dead_letter(event, job, detail or "", now)

    def digest_ended(
        self, digest: Digest | None, job: Job, state: State, detail: str | None, now: float
    ) -> None:
        """A digest's receipt, with the event ids it carried, into the caller's transaction (a
        dead digest's alerts are dead-lettered each on its own: :meth:`dead_letter`).

        ``digest`` is None when the ledger lost its events: the receipt names only its id.
        """
        carried = digest.events if digest is not None else []
        self._receipt(job, state, detail, now, event_ids=[event.event_id for event in carried])

    def _receipt(
        self,
        job: Job,
        state: State,
        detail: str | None,
        now: float,
        event: Event | None = None,
        event_ids: list[str] | None = None,
    ) -> None:
        if event_ids is not None:
            kind, task_id, task_name = "digest", "", f"digest of {len(event_ids)} alerts"
        elif event is not None:
            kind, task_id, task_name = event.kind, event.task.id, event.task.name
        else:
            kind = task_id = task_name = ""
        receipt = Receipt(
            event_id=job.event_id,
            kind=kind,
            task_id=task_id,
            task_name=task_name,
            service=self.service,
            destination=job.destination,
            target=job.target,
            outcome=state,  # type: ignore[arg-type]  # never "pending": this is its end
            attempts=job.attempts,
            at=timestamp(now),
            detail=detail,
            event_ids=event_ids,
        )
        self._outbox.add(self._deliveries_topic, encode(receipt))

    def pending(self, job: Job, reason: str, now: float, next_attempt_at: float | None) -> None:
        """A test alert's delivery that is not over yet, into the caller's transaction."""
        progress = Pending(
            event_id=job.event_id,
            service=self.service,
            destination=job.destination,
            target=job.target,
            attempts=job.attempts,
            reason=reason,
            at=timestamp(now),
            next_attempt_at=None if next_attempt_at is None else timestamp(next_attempt_at),
        )
        self._outbox.add(self._pending_topic, encode(progress))

    def announce(
        self, event: Event | None, job: Job, state: State, detail: str | None, now: float
    ) -> None:
        """The metric and log line of a delivery whose end is committed."""
        self.lane_metrics(job.destination).outcomes[state].inc()
        self._log(event, job, state, detail)

    def rejected(self, topic: str, payload: bytes, reason: str, now: float) -> None:
        """A message that is not a Herald event: dead-lettered with what arrived."""
        log.warning("a message on %s is not a Herald event (%s); dead-lettered", topic, reason)
        letter = DeadLetter(
            service=self.service,
            destination=None,
            target="",
            reason=f"not a Herald event: {reason}",
            attempts=0,
            at=timestamp(now),
            topic=topic,
            payload=payload.decode("utf-8", errors="replace"),
        )
        self._outbox.add(self._dead_letter_topic, encode(letter))

    def dead_letter(self, event: Event | None, job: Job, reason: str, now: float) -> None:
        """A dead letter, with its event, into the caller's transaction."""
        letter = DeadLetter(
            service=self.service,
            destination=job.destination,
            target=job.target,
            reason=reason,
            attempts=job.attempts,
            at=timestamp(now),
            event=event,
        )
        self._outbox.add(self._dead_letter_topic, encode(letter))

    def _log(self, event: Event | None, job: Job, state: State, detail: str | None) -> None:
        where = job.destination + (f" ({job.target})" if job.target else "")
        what = f"{event.kind} of task {event.task.name!r}" if event else f"event {job.event_id}"
        if state == "dead_lettered":
            log.error(
                "dead-lettered %s to %s after %d attempts: %s", what, where, job.attempts, detail
            )
        elif state == "delivered":
            log.info("delivered %s to %s%s", what, where, f": {detail}" if detail else "")
        else:
            log.info("%s %s for %s: %s", state, what, where, detail)
