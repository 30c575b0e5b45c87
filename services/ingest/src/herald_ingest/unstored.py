"""Accepted datagrams that the state disk would not take: held in memory, bounded, stored the
moment it takes them again.

A datagram is normally in SQLite before the socket callback returns. When that commit fails (the
disk is full, an I/O error), the checked datagrams are kept here in arrival order, up to
``ingest.unstored_buffer_bytes``, each counted once as ``herald_datagrams_total{outcome="unstored"}``;
the service tries to store them again twice a second, and ``/readyz`` fails with the reason
while any wait. A datagram that arrives when the memory is full is lost: counted as
``outcome="lost"``, and an ERROR line says how many, at most once a minute.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Final

from herald_ingest.datagram import Datagram
from herald_shared import metrics

log = logging.getLogger(__name__)

LOST_LOG_INTERVAL: Final = 60.0


@dataclass(frozen=True, slots=True)
class Checked:
    """A datagram that passed every check, with the time it arrived."""

    data: bytes
    parsed: Datagram
    received_at: float


class Unstored:
    def __init__(self, service: str, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._held: list[Checked] = []
        self._bytes = 0
        self.problem: str | None = None  # the storage error while datagrams are held
        self.lost = 0
        self._lost_unreported = 0
        self._lost_logged = -LOST_LOG_INTERVAL
        self._unstored = metrics.DATAGRAMS.labels(service=service, outcome="unstored")
        self._lost = metrics.DATAGRAMS.labels(service=service, outcome="lost")

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, items: list[Checked], problem: str | None = None) -> None:
        """Keep datagrams that could not be stored, after those already held."""
        if problem is not None:
            if self.problem is None:
                log.error(
                    "cannot store accepted datagrams (%s); holding them in memory (up to %d "
                    "bytes) and trying again until the state disk has room",
                    problem,
                    self._max_bytes,
                )
            self.problem = problem
        for item in items:
            if self._bytes + len(item.data) > self._max_bytes:
                self._count_lost()
                continue
            self._held.append(item)
            self._bytes += len(item.data)
            self._unstored.inc()

    def take(self) -> list[Checked]:
        """Everything held, oldest first; what cannot be stored again goes back with ``hold``."""
        held, self._held, self._bytes = self._held, [], 0
        return held

    def restore(self, items: list[Checked], problem: str) -> None:
        """Put back what was taken and still could not be stored (counted once already)."""
        self.problem = problem
        self._held = items + self._held
        self._bytes += sum(len(item.data) for item in items)

    def stored(self, count: int) -> None:
        """Storing works again: say so once."""
        if self.problem is not None and not self._held:
            log.warning(
                "storing datagrams works again; %d held in memory were stored, %d lost in all",
                count,
                self.lost,
            )
            self.problem = None

    def _count_lost(self) -> None:
        self.lost += 1
        self._lost_unreported += 1
        self._lost.inc()
        now = time.monotonic()
        if now - self._lost_logged >= LOST_LOG_INTERVAL:
            log.error(
                "lost %d datagram(s): the state disk cannot be written (%s) and the memory for "
                "datagrams waiting to be stored (ingest.unstored_buffer_bytes, %d bytes) is full",
                self._lost_unreported,
                self.problem,
                self._max_bytes,
            )
            self._lost_logged = now
            self._lost_unreported = 0
