"""The delivery ledger: every (event, destination, target) a service has taken on, and its state.

It is the durable retry queue (``pending`` rows survive a restart and are resumed), the
idempotency ledger (a redelivered event finds its rows and is not delivered again), and the
rate-limit memory, all in the service's SQLite database so that one commit covers them.

An event's payload is kept while one of its deliveries is pending or dead-lettered: a dead
letter can be replayed (put back to pending, ``replaying.py``) until the purge forgets it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from herald_shared.db import Database
from herald_shared.delivery import policy

State = Literal[
    "pending",
    "delivered",
    "dead_lettered",
    "suppressed",
    "skipped",
    "silenced",
    "muted",
    "grouped",  # went into a digest (grouping.py), whose own delivery says how it ended
]
FINISHED: Final[tuple[State, ...]] = tuple(s for s in get_args(State) if s != "pending")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    event_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    received_at REAL NOT NULL,
    first_attempt_at REAL,
    next_attempt_at REAL NOT NULL,
    finished_at REAL,
    last_error TEXT,
    PRIMARY KEY (event_id, destination, target)
);
CREATE INDEX IF NOT EXISTS deliveries_finished ON deliveries (finished_at);
CREATE TABLE IF NOT EXISTS rate_limits (
    key TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
"""


_IDS_PER_QUERY: Final = 500


@dataclass
class Job:
    """One pending delivery as the runner works on it."""

    event_id: str
    destination: str
    target: str
    received_at: float
    attempts: int = 0
    first_attempt_at: float | None = None
    next_attempt_at: float = 0.0
    # When it was received on the monotonic clock, so that its age in this process does not
    # follow the wall clock's steps. Not stored: a resumed job's is derived from received_at.
    received_monotonic: float = field(default_factory=time.monotonic)

    def age(self) -> float:
        """Seconds since the job was received."""
        return time.monotonic() - self.received_monotonic


class Ledger:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.execute_script(_SCHEMA)

    @property
    def _sql(self) -> sqlite3.Connection:
        return self._db.connection

    def knows(self, event_id: str) -> bool:
        row = self._sql.execute(
            "SELECT 1 FROM deliveries WHERE event_id = ? LIMIT 1", (event_id,)
        ).fetchone()
        return row is not None

    def take_rate_slot(self, key: str, window: float, now: float) -> bool:
        """True if ``key`` may send now (and starts its window); False inside a window."""
        row = self._sql.execute(
            "SELECT expires_at FROM rate_limits WHERE key = ?", (key,)
        ).fetchone()
        stored = None if row is None else float(row[0])
        allowed, expires_at = policy.rate_window(stored, window, now)
        if expires_at != stored:
            self._sql.execute(
                "INSERT INTO rate_limits (key, expires_at) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at",
                (key, expires_at),
            )
        return allowed

    def store_event(self, event_id: str, payload: bytes) -> None:
        self._sql.execute(
            "INSERT OR IGNORE INTO events (event_id, payload) VALUES (?, ?)", (event_id, payload)
        )

    def add(self, job: Job, state: State, *, now: float, reason: str | None = None) -> None:
        self._sql.execute(
            "INSERT INTO deliveries (event_id, destination, target, state, received_at,"
            " next_attempt_at, finished_at, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job.event_id,
                job.destination,
                job.target,
                state,
                job.received_at,
                job.next_attempt_at,
                None if state == "pending" else now,
                reason,
            ),
        )

    def reschedule(self, job: Job, error: str) -> None:
        self._sql.execute(
            "UPDATE deliveries SET attempts = ?, first_attempt_at = ?, next_attempt_at = ?,"
            " last_error = ? WHERE event_id = ? AND destination = ? AND target = ?",
            (
                job.attempts,
                job.first_attempt_at,
                job.next_attempt_at,
                error,
                job.event_id,
                job.destination,
                job.target,
            ),
        )

    def finish(self, job: Job, state: State, now: float, reason: str | None) -> bool:
        """Record the end of a delivery; True when no delivery of its event is left pending."""
        self._sql.execute(
            "UPDATE deliveries SET state = ?, attempts = ?, first_attempt_at = ?,"
            " finished_at = ?, last_error = ? WHERE event_id = ? AND destination = ? AND target = ?",
            (
                state,
                job.attempts,
                job.first_attempt_at,
                now,
                reason,
                job.event_id,
                job.destination,
                job.target,
            ),
        )
        still_pending = self._sql.execute(
            "SELECT 1 FROM deliveries WHERE event_id = ? AND state = 'pending' LIMIT 1",
            (job.event_id,),
        ).fetchone()
        if still_pending is None and not self._has_dead_letter(job.event_id):
            self._sql.execute("DELETE FROM events WHERE event_id = ?", (job.event_id,))
        return still_pending is None

    def _has_dead_letter(self, event_id: str) -> bool:
        row = self._sql.execute(
            "SELECT 1 FROM deliveries WHERE event_id = ? AND state = 'dead_lettered' LIMIT 1",
            (event_id,),
        ).fetchone()
        return row is not None

    def dead_letters(
        self, event_ids: Collection[str], destination: str | None, since: float | None
    ) -> list[Job]:
        """The replayable dead letters (their event is still held) that match every criterion
        given: one of ``event_ids`` (empty: any), ``destination``, dead-lettered at or after
        ``since``; oldest first."""
        query = (
            "SELECT d.finished_at, d.rowid, d.event_id, d.destination, d.target, d.received_at"
            " FROM deliveries d JOIN events e ON e.event_id = d.event_id"
            " WHERE d.state = 'dead_lettered'"
        )
        parameters: list[object] = []
        if destination is not None:
            query += " AND d.destination = ?"
            parameters.append(destination)
        if since is not None:
            query += " AND d.finished_at >= ?"
            parameters.append(since)
        if not event_ids:
            rows = self._sql.execute(query, parameters).fetchall()
        else:
            # A few hundred ids a statement: SQLite caps the number of parameters.
            ids = sorted(set(event_ids))
            rows = []
            for start in range(0, len(ids), _IDS_PER_QUERY):
                chunk = ids[start : start + _IDS_PER_QUERY]
                chosen = f"{query} AND d.event_id IN ({', '.join('?' * len(chunk))})"
                rows += self._sql.execute(chosen, [*parameters, *chunk]).fetchall()
        return [
            Job(event_id, name, target, received_at=received_at)
            for _, _, event_id, name, target, received_at in sorted(rows)
        ]

    def replay(self, job: Job, now: float) -> bool:
        """Put a dead letter back to pending as if taken on ``now``: no attempts yet, so the
        retry policy and its deadline apply afresh. False if it was no longer dead-lettered."""
        changed = self._sql.execute(
            "UPDATE deliveries SET state = 'pending', attempts = 0, first_attempt_at = NULL,"
            " received_at = ?, next_attempt_at = ?, finished_at = NULL, last_error = NULL"
            " WHERE event_id = ? AND destination = ? AND target = ? AND state = 'dead_lettered'",
            (now, now, job.event_id, job.destination, job.target),
        ).rowcount
        if changed:
            job.received_at = job.next_attempt_at = now
            job.attempts, job.first_attempt_at = 0, None
        return bool(changed)

    def event_payload(self, event_id: str) -> bytes | None:
        row = self._sql.execute(
            "SELECT payload FROM events WHERE event_id = ?", (event_id,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def pending(self) -> Iterator[Job]:
        """Every unfinished delivery, oldest first (for a restart)."""
        rows = self._sql.execute(
            "SELECT event_id, destination, target, received_at, attempts, first_attempt_at,"
            " next_attempt_at FROM deliveries WHERE state = 'pending'"
            " ORDER BY received_at, rowid"  # one batch shares a time: then arrival order
        ).fetchall()
        for event_id, destination, target, received_at, attempts, first, next_at in rows:
            job = Job(
                event_id=event_id,
                destination=destination,
                target=target,
                received_at=received_at,
                attempts=attempts,
                first_attempt_at=first,
                next_attempt_at=next_at,
            )
            yield job

    def state_of(self, event_id: str, destination: str, target: str = "") -> State | None:
        row = self._sql.execute(
            "SELECT state FROM deliveries WHERE event_id = ? AND destination = ? AND target = ?",
            (event_id, destination, target),
        ).fetchone()
        state: State | None = None if row is None else row[0]
        return state

    def purge(self, finished_before: float, now: float) -> int:
        """Forget finished deliveries older than the retention, and expired rate windows."""
        with self._db.transaction() as sql:
            removed = sql.execute(
                "DELETE FROM deliveries WHERE state != 'pending' AND finished_at < ?",
                (finished_before,),
            ).rowcount
            sql.execute("DELETE FROM rate_limits WHERE expires_at < ?", (now,))
            # The payloads kept for dead letters go with the last of their event's deliveries.
            sql.execute(
                "DELETE FROM events WHERE NOT EXISTS"
                " (SELECT 1 FROM deliveries d WHERE d.event_id = events.event_id)"
            )
        return int(removed)
