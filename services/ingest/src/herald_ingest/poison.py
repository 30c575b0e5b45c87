"""A datagram whose handling fails unexpectedly is tried a bounded number of times, never in the
way of the others, and then still becomes an alert (or, failing that, a dead letter).

A bug in enrichment or event building, or a QRS answer of a shape nobody foresaw, can make the
handling of one datagram raise every time. Each failure is counted in the inbox
(``IngestState.failed``), so a restart does not reset the count, and the datagram is queued again
after a wait that doubles from ``ingest.handling_retry_delay`` up to
``ingest.handling_retry_max_delay``. The wait is a timer, not a worker sleeping: the other
datagrams are enriched meanwhile. After ``ingest.handling_attempts`` failures the alert goes out
built from what the datagram says alone, marked partial with the reason. A datagram that cannot
be an event even so is dead-lettered on ``<prefix>/v1/dead-letter/ingest`` with its text and the
reason, and counted in ``herald_datagrams_dead_lettered_total``.

A storage error (the state disk full, an I/O error) is not the datagram's fault: it is retried at
the first pace, without being counted, for as long as it lasts.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from herald_ingest.datagram import Datagram
from herald_ingest.enrich import Gathered
from herald_ingest.settings import IngestSettings
from herald_ingest.state import IngestState, Stored
from herald_shared import metrics, topics
from herald_shared.db import Database
from herald_shared.delivery.receipts import DeadLetter, encode, timestamp
from herald_shared.outbox import Outbox

log = logging.getLogger(__name__)

Item = tuple[Stored, Datagram]
# Publishes the datagram's event; with a Gathered, from that instead of asking the QRS.
Publish = Callable[[Stored, Datagram, Gathered | None], Awaitable[None]]


def retry_delay(attempts: int, first: float, most: float) -> float:
    """The wait after the ``attempts``-th failure: ``first``, doubling, never more than ``most``."""
    return min(first * 2.0 ** max(0, attempts - 1), most)


class Retries:
    def __init__(
        self,
        service: str,
        db: Database,
        state: IngestState,
        outbox: Outbox,
        prefix: str,
        settings: IngestSettings,
        requeue: Callable[[Item], None],
    ) -> None:
        self._db = db
        self._state = state
        self._outbox = outbox
        self._topic = topics.dead_letter_topic(prefix, service)
        self._service = service
        self._settings = settings
        self._requeue = requeue
        self._failures = metrics.DATAGRAM_HANDLING_FAILURES.labels(service=service)
        self._dead_letters = metrics.DATAGRAMS_DEAD_LETTERED.labels(service=service)

    def delay(self, attempts: int) -> float:
        settings = self._settings
        return retry_delay(
            attempts, settings.handling_retry_delay, settings.handling_retry_max_delay
        )

    async def failed(self, item: Item, error: Exception, publish: Publish) -> bool:
        """After a failed handling: queue it again later (False), or end it (True): its alert
        published from what the datagram says, or the datagram dead-lettered."""
        stored, parsed = item
        if isinstance(error, sqlite3.Error):
            log.warning(
                "cannot store the event for task %r (%s); trying again in %g s",
                parsed.task_name,
                error,
                self._settings.handling_retry_delay,
            )
            self._later(item, self._settings.handling_retry_delay)
            return False
        self._failures.inc()
        try:
            attempts = self._state.failed(stored.seq)
        except sqlite3.Error as storage:
            log.warning("cannot count the failure in the inbox (%s); trying again", storage)
            self._later(item, self._settings.handling_retry_delay)
            return False
        allowed = self._settings.handling_attempts
        if attempts < allowed:
            wait = self.delay(attempts)
            log.error(
                "handling the datagram for task %r failed unexpectedly (attempt %d of %d); "
                "trying again in %g s",
                parsed.task_name,
                attempts,
                allowed,
                wait,
                exc_info=error if attempts == 1 else None,  # the traceback once is enough
            )
            self._later((replace(stored, attempts=attempts), parsed), wait)
            return False
        reason = (
            f"handling the datagram failed {attempts} times, the last with {error!r}; "
            "published with what the datagram says"
        )
        stored = replace(stored, attempts=attempts)
        try:
            await publish(stored, parsed, Gathered(reasons=[reason]))
        except sqlite3.Error:
            self._later((stored, parsed), self._settings.handling_retry_delay)
            return False
        except Exception as again:
            log.exception("even the datagram alone makes no event for task %r", parsed.task_name)
            try:
                self.dead_letter(stored, f"{reason}; that failed too, with {again!r}")
            except sqlite3.Error:
                self._later((stored, parsed), self._settings.handling_retry_delay)
                return False
        return True

    def dead_letter(self, stored: Stored, reason: str) -> None:
        """Publish the datagram as a dead letter and take it out of the inbox, in one commit."""
        with self._db.transaction():
            self.add_dead_letter(stored.datagram, reason, stored.attempts)
            self._state.done(stored.seq)
        self.dead_lettered()
        log.error("dead-lettered a datagram that cannot be an event: %s", reason)

    def add_dead_letter(self, datagram: bytes, reason: str, attempts: int = 0) -> None:
        """Within the caller's transaction: the datagram's text and ``reason`` into the outbox,
        for ``<prefix>/v1/dead-letter/ingest``; count it with :meth:`dead_lettered` once that
        transaction is committed."""
        letter = DeadLetter(
            service=self._service,
            destination=None,
            target="",
            reason=reason,
            attempts=attempts,
            at=timestamp(time.time()),
            payload=datagram.decode("utf-8", errors="replace"),
        )
        self._outbox.add(self._topic, encode(letter))

    def dead_lettered(self, count: int = 1) -> None:
        self._dead_letters.inc(count)

    def _later(self, item: Item, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self._requeue, item)
