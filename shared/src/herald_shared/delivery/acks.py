"""A subscriber service's acknowledgements to ingest: which events it has taken on.

The intake records the id of every event it took (stored, or recognised as a duplicate) in the
same commit as the event's deliveries; at most every :data:`SEND_EVERY` seconds the ids recorded
so far leave as one message on ``herald/v1/acks/<service>/<instance>`` (a JSON list), through
the outbox. Recorded in the ledger's commit, an acknowledgement survives a crash right after it
(what is left in the table is sent at the next start); gathered, it costs ingest a few messages a
second instead of one per event and service. Ingest waits ``ingest.redelivery.after`` (30 s) for
it, so the gathering delay does not matter (``herald_ingest.redelivery``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import msgspec

from herald_shared.db import Database
from herald_shared.outbox import Outbox

__all__ = ["Acknowledgements"]

log = logging.getLogger("herald_shared.delivery.runner")

SEND_EVERY: Final = 0.25  # seconds
MAX_IDS: Final = 5000  # per message
RETRY_AFTER: Final = 1.0  # after a failed write (the disk is full)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS acknowledgements (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL
);
"""


class Acknowledgements:
    """``topic`` None: nothing is acknowledged (a runner without an instance, in tests)."""

    def __init__(self, db: Database, outbox: Outbox, topic: str | None) -> None:
        self._db = db
        self._outbox = outbox
        self._topic = topic
        self._timer: asyncio.TimerHandle | None = None
        if topic is not None:
            db.execute_script(_SCHEMA)

    def record(self, event_ids: list[str]) -> None:
        """Inside the intake's transaction: these events are taken on."""
        if self._topic is None or not event_ids:
            return
        self._db.connection.executemany(
            "INSERT INTO acknowledgements (event_id) VALUES (?)", [(e,) for e in event_ids]
        )

    def send_soon(self, delay: float = SEND_EVERY) -> None:
        if self._topic is not None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(delay, self.send)

    def send(self) -> None:
        """Move the recorded ids into the outbox, as one message."""
        self._timer = None
        if self._topic is None:
            return
        try:
            with self._db.transaction() as sql:
                rows = sql.execute(
                    "SELECT seq, event_id FROM acknowledgements ORDER BY seq LIMIT ?", (MAX_IDS,)
                ).fetchall()
                if not rows:
                    return
                self._outbox.add(self._topic, msgspec.json.encode([e for _, e in rows]))
                sql.execute("DELETE FROM acknowledgements WHERE seq <= ?", (rows[-1][0],))
        except Exception:
            # Kept in the table: sent with a later try; meanwhile ingest may resend (harmless).
            log.exception("cannot move acknowledgements for ingest into the outbox; retrying")
            self.send_soon(RETRY_AFTER)
            return
        if len(rows) == MAX_IDS:
            self.send_soon(0.0)

    def close(self) -> None:
        """Send what is recorded (the database closes next) and stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
        self.send()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
