"""Ingest's durable state, in its SQLite database next to the event outbox.

- ``seen``: the datagrams already accepted (outcome and execution id), for duplicate suppression
  within the window, across restarts.
- ``inbox``: accepted datagrams not yet published as events. A datagram is stored here the moment
  it is accepted, so one that was being enriched when the process died is enriched again at the
  next start: an accepted datagram is never lost. ``attempts`` counts the handlings that failed
  unexpectedly, so the bound on them (``herald_ingest.poison``) holds across restarts.
- ``last_outcome``: each task's latest outcome, so a success that follows a failure or an abort
  carries ``recovers``.
- ``reconcile``: the reconciliation sweep's checkpoint, the stop time up to which the QRS's
  execution results have been turned into events; it is written in the same commit as those
  events' outbox rows (``herald_ingest.reconcile``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from herald_shared.db import Database
from herald_shared.events import Event, Recovery

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS seen (
    key TEXT PRIMARY KEY,
    seen_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_at ON seen (seen_at);
CREATE TABLE IF NOT EXISTS inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    datagram BLOB NOT NULL,
    received_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS reconcile (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    checkpoint_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS last_outcome (
    task_id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    occurred_at TEXT NOT NULL
);
"""


def seen_key(outcome: str, execution_id: str) -> str:
    """How the duplicate memory names one report of a run: ``failed:<execution id>``."""
    return f"{outcome}:{execution_id}"


@dataclass(frozen=True)
class Stored:
    """An accepted datagram waiting in the inbox."""

    seq: int
    datagram: bytes
    received_at: float
    attempts: int = 0  # handlings that failed unexpectedly so far


class IngestState:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.execute_script(_SCHEMA)
        columns = {row[1] for row in db.connection.execute("PRAGMA table_info(inbox)")}
        if "attempts" not in columns:  # an inbox written before attempts were counted
            db.connection.execute(
                "ALTER TABLE inbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0"
            )

    def seen_recently(self, key: str, since: float) -> bool:
        row = self._db.connection.execute(
            "SELECT 1 FROM seen WHERE key = ? AND seen_at >= ?", (key, since)
        ).fetchone()
        return row is not None

    def mark_seen(self, key: str, now: float) -> None:
        """Remember an execution as reported (``outcome:execution id``), so that a datagram or a
        sweep that reports it later is a duplicate."""
        self._db.connection.execute(
            "INSERT INTO seen (key, seen_at) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET seen_at = excluded.seen_at",
            (key, now),
        )

    def accept(self, key: str, datagram: bytes, now: float) -> int:
        """Remember the datagram as seen and put it in the inbox; its inbox sequence number."""
        self.mark_seen(key, now)
        cursor = self._db.connection.execute(
            "INSERT INTO inbox (datagram, received_at) VALUES (?, ?)", (datagram, now)
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def inbox(self) -> list[Stored]:
        rows = self._db.connection.execute(
            "SELECT seq, datagram, received_at, attempts FROM inbox ORDER BY seq"
        ).fetchall()
        return [
            Stored(seq, bytes(data), received, attempts) for seq, data, received, attempts in rows
        ]

    def failed(self, seq: int) -> int:
        """Count one more failed handling of an inbox datagram; how many there have been."""
        with self._db.transaction() as sql:
            row = sql.execute(
                "UPDATE inbox SET attempts = attempts + 1 WHERE seq = ? RETURNING attempts", (seq,)
            ).fetchone()
        return int(row[0]) if row else 0

    def done(self, seq: int) -> None:
        self._db.connection.execute("DELETE FROM inbox WHERE seq = ?", (seq,))

    def recovery_for(self, task_id: str) -> Recovery | None:
        """What a success of ``task_id`` would end: its last failure or abort, if that was last."""
        row = self._db.connection.execute(
            "SELECT event_id, kind, occurred_at FROM last_outcome WHERE task_id = ?", (task_id,)
        ).fetchone()
        if row is None or row[1] not in ("task_failed", "task_aborted"):
            return None
        return Recovery(event_id=row[0], kind=row[1], occurred_at=datetime.fromisoformat(row[2]))

    def record_outcome(self, event: Event) -> None:
        self._db.connection.execute(
            "INSERT INTO last_outcome (task_id, event_id, kind, occurred_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (task_id) DO UPDATE SET event_id = excluded.event_id, "
            "kind = excluded.kind, occurred_at = excluded.occurred_at",
            (event.task.id, event.event_id, event.kind, event.occurred_at.isoformat()),
        )

    def forget_seen_before(self, before: float) -> None:
        with self._db.transaction() as sql:
            sql.execute("DELETE FROM seen WHERE seen_at < ?", (before,))

    def checkpoint_ms(self) -> int | None:
        """The sweep's checkpoint (Unix milliseconds); None before the first sweep."""
        row = self._db.connection.execute("SELECT checkpoint_ms FROM reconcile").fetchone()
        return None if row is None else int(row[0])

    def set_checkpoint_ms(self, checkpoint_ms: int) -> None:
        self._db.connection.execute(
            "INSERT INTO reconcile (id, checkpoint_ms) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET checkpoint_ms = excluded.checkpoint_ms",
            (checkpoint_ms,),
        )
