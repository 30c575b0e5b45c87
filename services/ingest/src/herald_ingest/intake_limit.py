"""``ingest.max_datagrams_per_minute``: Butler's ``udpServerConfig.rateLimit``, without the loss.

Butler counts the datagrams of a fixed 60 s window that begins with the first datagram after the
previous window ended, and drops what goes over ``maxMessagesPerMinute``
(docs/butler-compatibility.md §10). Herald counts the same window, but only datagrams that
would become events (duplicates and rejected ones do not use the budget), and an excess datagram
is not thrown away: ingest dead-letters it with its text, counts it in
``herald_datagrams_total{outcome="over_limit"}`` and logs one WARNING per task and window, so a
flood reaches no destination and can still be looked at, or replayed, afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["WINDOW", "IntakeLimit"]

WINDOW = 60.0  # seconds, fixed as in Butler


class IntakeLimit:
    """At most ``per_window`` datagrams in each fixed window; ``None`` lets every one through."""

    def __init__(self, per_window: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_window = per_window
        self._clock = clock
        self._started = -WINDOW
        self._taken = 0
        self._warned: set[str] = set()

    @property
    def per_window(self) -> int | None:
        return self._per_window

    def take(self) -> bool:
        """Whether one more datagram fits into the current window (and count it if so)."""
        if self._per_window is None:
            return True
        now = self._clock()
        if now - self._started >= WINDOW:
            self._started, self._taken = now, 0
            self._warned.clear()
        if self._taken < self._per_window:
            self._taken += 1
            return True
        return False

    def first_in_window(self, task_id: str) -> bool:
        """True once per task and window: when its excess datagrams are worth a log line."""
        if task_id in self._warned:
            return False
        self._warned.add(task_id)
        return True
