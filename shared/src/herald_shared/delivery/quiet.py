"""Whether a delivery is held back when its event is taken: a silence, or a destination's
maintenance window.

Decided once per event and destination at intake, with the intake's clock, before the rate
limits (a held-back delivery takes no rate slot):

- **silenced**: an active silence (:mod:`herald_shared.silences`) whose matchers hold for the
  event and which covers the destination. A success that recovers from a failure or abort that
  this service silenced is silenced by the same silence while it is still active, whatever its
  matchers say, so nobody hears "running again" about a failure they were not told of; once
  that silence has ended, the recovery goes out. Which silence held back which event is kept in
  the service's database (table ``silenced_events``), so a restart in between changes nothing.
- **muted**: the destination's ``mute_during`` or ``active_during``
  (:mod:`herald_shared.time_intervals`) says it is quiet now.

Either way the delivery ends at once with a receipt whose detail says why (the silence's id,
author and comment; the interval's name), and a metric: nothing is dropped without a word.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from herald_shared.db import Database
from herald_shared.delivery.destination import Destination
from herald_shared.events import Event, TaskSucceeded
from herald_shared.silences import Silence, SilenceBook
from herald_shared.time_intervals import NamedInterval, muted

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS silenced_events (
    event_id TEXT NOT NULL,
    silence_id TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (event_id, silence_id)
);
CREATE INDEX IF NOT EXISTS silenced_events_at ON silenced_events (at);
"""


@dataclass(frozen=True)
class Held:
    """A delivery held back, and why (the receipt's detail)."""

    state: Literal["silenced", "muted"]
    reason: str


def silenced_because(silence: Silence, recovery: bool = False) -> str:
    follows = " (the recovery of a failure it silenced)" if recovery else ""
    return (
        f"silenced by {silence.id}{follows} until {silence.ends:%Y-%m-%d %H:%M %Z}: "
        f"{silence.comment} ({silence.author})"
    )


class EventQuiet:
    """The silences that cover one event, worked out once for all its destinations."""

    def __init__(
        self,
        quiet: Quiet,
        event: Event,
        matching: Sequence[Silence],
        following: Sequence[Silence],
        now: float,
    ) -> None:
        self._quiet = quiet
        self._event = event
        self._matching = matching
        self._following = following  # silences of the failure this success recovers from
        self._now = now
        self._remembered: set[str] = set()

    def held(self, destination: Destination) -> Held | None:
        """Why ``destination`` delivers nothing of this event now, or None."""
        for silences, recovery in ((self._matching, False), (self._following, True)):
            for silence in silences:
                if SilenceBook.covers(silence, destination.name):
                    if silence.id not in self._remembered:
                        self._remembered.add(silence.id)
                        self._quiet.remember(self._event.event_id, silence.id, self._now)
                    return Held("silenced", silenced_because(silence, recovery))
        if destination.mute_during or destination.active_during:
            reason = self._quiet.muted(destination, self._now)
            if reason is not None:
                return Held("muted", reason)
        return None


class Quiet:
    """A service's silences and time intervals, as intake applies them."""

    def __init__(
        self, db: Database, silences: SilenceBook, intervals: Mapping[str, NamedInterval]
    ) -> None:
        self._db = db
        self.silences = silences
        self.intervals = intervals
        self._minute = -1
        self._muted: dict[str, str | None] = {}
        db.execute_script(_SCHEMA)

    def muted(self, destination: Destination, now: float) -> str | None:
        """Why a destination's time intervals hold it back now, or None.

        Intervals are written to the minute, so the answer holds for the whole minute: it is
        worked out once per destination and minute, not per event.
        """
        minute = int(now // 60)
        if minute != self._minute:
            self._minute, self._muted = minute, {}
        if destination.name not in self._muted:
            self._muted[destination.name] = muted(
                destination.mute_during,
                destination.active_during,
                self.intervals,
                datetime.fromtimestamp(minute * 60, UTC),
            )
        return self._muted[destination.name]

    def check(self, destinations: Sequence[Destination]) -> None:
        """Every interval a destination names exists (the configuration check said so)."""
        for destination in destinations:
            for name in (*destination.mute_during, *destination.active_during):
                if name not in self.intervals:
                    raise ValueError(f"{destination.name}: no time interval is named {name!r}")

    def for_event(self, event: Event, now: float) -> EventQuiet:
        """What holds back ``event``'s deliveries (inside the intake's transaction)."""
        matching = self.silences.matching(event, now)
        following: list[Silence] = []
        if isinstance(event, TaskSucceeded) and event.recovers is not None:
            ids = self._silenced(event.recovers.event_id)
            if ids:
                following = self.silences.still_active(ids, now)
        return EventQuiet(self, event, matching, following, now)

    def remember(self, event_id: str, silence_id: str, now: float) -> None:
        self._db.connection.execute(
            "INSERT OR IGNORE INTO silenced_events (event_id, silence_id, at) VALUES (?, ?, ?)",
            (event_id, silence_id, now),
        )

    def _silenced(self, event_id: str) -> list[str]:
        rows = self._db.connection.execute(
            "SELECT silence_id FROM silenced_events WHERE event_id = ?", (event_id,)
        ).fetchall()
        return [str(row[0]) for row in rows]

    def purge(self, before: float) -> None:
        """Forget what was silenced before ``before`` (with the ledger's retention)."""
        with self._db.transaction() as sql:
            sql.execute("DELETE FROM silenced_events WHERE at < ?", (before,))
