"""Replaying dead letters: a request of ``herald replay`` or the console, answered for this
instance's own ledger (the contract is ``herald_shared.replay``).

The dead letters a request selects are put back to pending in one commit with the answer (which
goes out through the outbox), so a process killed right after still holds them pending, resumes
them at its start, and still answers. Each goes back to its lane with no attempts counted: the
retry policy and its deadline apply afresh, and it ends as any delivery does, with a receipt on
the deliveries topic. Asked again, the same request finds nothing more: what it replayed is no
longer dead-lettered.

A dead letter whose destination is no longer configured stays as it is, and the answer names
that destination. A request that cannot be read is logged, counted and dropped (acknowledged:
the broker would only bring it again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from herald_shared import metrics, replay
from herald_shared.db import Database
from herald_shared.delivery.lanes import Lane
from herald_shared.delivery.ledger import Job, Ledger
from herald_shared.outbox import Outbox
from herald_shared.replay import ReplayAnswer, ReplayedDelivery, ReplayRequest

log = logging.getLogger("herald_shared.delivery.runner")


class Replays:
    def __init__(
        self,
        *,
        service: str,
        instance: str | None,
        lanes: Mapping[str, Lane],
        db: Database,
        ledger: Ledger,
        outbox: Outbox,
        answer_topic: str | None,
        clock: Callable[[], float],
    ) -> None:
        self._service = service
        self._instance = instance or ""
        self._lanes = lanes
        self._db = db
        self._ledger = ledger
        self._outbox = outbox
        self._answer_topic = answer_topic  # None: answers are only returned (in-memory tests)
        self._clock = clock
        self._requests = {
            outcome: metrics.REPLAY_REQUESTS.labels(service=service, outcome=outcome)
            for outcome in ("answered", "rejected")
        }

    def take(self, topic: str, payload: bytes) -> ReplayAnswer | None:
        """Replay what the request on ``topic`` selects; its answer, or None if unreadable."""
        try:
            request = replay.decode_request(payload)
        except ValueError as error:
            log.warning("ignoring a message on %s: %s", topic, error)
            self._requests["rejected"].inc()
            return None
        with self._db.transaction():
            replayed, answer = self._replay(request, self._clock())
            if self._answer_topic is not None:
                self._outbox.add(self._answer_topic, replay.encode(answer))
        self._requests["answered"].inc()
        for job in replayed:  # committed: now they may run
            metrics.REPLAYED.labels(service=self._service, destination=job.destination).inc()
            self._lanes[job.destination].schedule(job, 0.0)
        self._log(request, answer)
        return answer

    def _replay(self, request: ReplayRequest, now: float) -> tuple[list[Job], ReplayAnswer]:
        since = None if request.since is None else request.since.timestamp()
        chosen = self._ledger.dead_letters(request.event_ids, request.destination, since)
        unknown = {job.destination for job in chosen if job.destination not in self._lanes}
        if request.destination is not None and request.destination not in self._lanes:
            unknown.add(request.destination)
        replayed = [
            job
            for job in chosen
            if job.destination in self._lanes and self._ledger.replay(job, now)
        ]
        held = {job.event_id for job in chosen}
        answer = ReplayAnswer(
            id=request.id,
            service=self._service,
            instance=self._instance,
            replayed=[ReplayedDelivery(j.event_id, j.destination, j.target) for j in replayed],
            not_found=[
                event_id for event_id in dict.fromkeys(request.event_ids) if event_id not in held
            ],
            unknown_destinations=sorted(unknown),
        )
        return replayed, answer

    def _log(self, request: ReplayRequest, answer: ReplayAnswer) -> None:
        log.info(
            "replay request %s by %r: %d dead letters back to pending, %d asked-for events without one",
            request.id,
            request.requested_by,
            len(answer.replayed),
            len(answer.not_found),
        )
        if answer.unknown_destinations:
            log.warning(
                "replay request %s: %s no longer configured here; their dead letters stay",
                request.id,
                ", ".join(answer.unknown_destinations),
            )
