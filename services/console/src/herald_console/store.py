"""The console's history: events, what became of each delivery, dead letters and replays, in SQLite.

One row per event (its JSON kept whole, the fields the filters use beside it), one row per
delivery (service, destination, target) holding its latest state, and a timeline of everything
said about an event (taken, retrying, receipts, dead letters, replay requests and answers).
Receipts can arrive before their event (other topics, other publishers): each table stands on
its own and the pages join them by event id.

Kept: :attr:`retention` seconds and at most :attr:`max_events` events; :meth:`prune` forgets the
rest and what was said about it.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import msgspec

from herald_shared import events, following
from herald_shared.db import Database
from herald_shared.delivery.receipts import DeadLetter, Pending
from herald_shared.replay import ReplayAnswer, ReplayRequest

__all__ = ["Delivery", "EventFilter", "EventRow", "Report", "Store", "TimelineEntry"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    task_name TEXT NOT NULL,
    app_name TEXT NOT NULL,
    stream TEXT NOT NULL,
    occurred_at REAL NOT NULL,
    received_at REAL NOT NULL,
    test INTEGER NOT NULL,
    body BLOB NOT NULL  -- the event's JSON, zlib-compressed
);
CREATE INDEX IF NOT EXISTS events_newest ON events (received_at DESC);
CREATE TABLE IF NOT EXISTS deliveries (
    event_id TEXT NOT NULL,
    service TEXT NOT NULL,
    destination TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    detail TEXT NOT NULL,
    next_attempt_at REAL,
    at REAL NOT NULL,
    PRIMARY KEY (event_id, service, destination, target)
);
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (state, event_id);
CREATE TABLE IF NOT EXISTS timeline (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    at REAL NOT NULL,
    service TEXT NOT NULL,
    what TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS timeline_event ON timeline (event_id, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT,
    service TEXT NOT NULL,
    destination TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    at REAL NOT NULL,
    task_name TEXT NOT NULL,
    payload TEXT
);
CREATE INDEX IF NOT EXISTS dead_letters_newest ON dead_letters (at DESC);
CREATE TABLE IF NOT EXISTS replays (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    destination TEXT,
    event_ids TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS replay_answers (
    id TEXT NOT NULL,
    service TEXT NOT NULL,
    instance TEXT NOT NULL,
    replayed TEXT NOT NULL,
    not_found TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (id, service, instance)
);
"""


class Report(msgspec.Struct, kw_only=True):
    """A receipt as the console reads it: any ``outcome`` a service reports is kept as it is
    (``grouped`` from a digest, a state added after this console was built), where
    ``herald_shared.delivery.receipts.Receipt`` knows only today's."""

    event_id: str
    service: str
    destination: str
    target: str = ""
    outcome: str
    attempts: int = 0
    at: datetime
    detail: str | None = None
    event_ids: list[str] | None = None  # a digest's: the alerts it carried

    def per_event(self) -> list[Report]:
        """What it says of each event: a digest's receipt ends the delivery of every alert it
        carried (each was ``grouped`` until then); any other receipt speaks of its own event."""
        if self.event_ids is None:
            return [self]
        detail = f"in {self.event_id}" + (f": {self.detail}" if self.detail else "")
        return [
            msgspec.structs.replace(self, event_id=event_id, event_ids=None, detail=detail)
            for event_id in self.event_ids
        ]


@dataclass(frozen=True)
class Delivery:
    service: str
    destination: str
    target: str
    state: str
    attempts: int
    detail: str
    next_attempt_at: float | None
    at: float


@dataclass(frozen=True)
class TimelineEntry:
    at: float
    service: str
    what: str
    detail: str


@dataclass
class EventRow:
    event_id: str
    kind: str
    task_name: str
    app_name: str
    stream: str
    occurred_at: float
    received_at: float
    test: bool
    compressed: bytes
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        """The event's JSON, as it was published (less the whole script log)."""
        return zlib.decompress(self.compressed)

    def event(self) -> events.Event:
        return events.decode(self.body)


@dataclass(frozen=True)
class EventFilter:
    """What the events page asks for; every given criterion must hold."""

    kind: str = ""
    task: str = ""  # a part of the task name, any case
    app: str = ""  # a part of the app name, any case
    stream: str = ""  # the stream's name, any case
    outcome: str = ""  # some delivery of the event is in this state
    since: float | None = None
    until: float | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        values: list[Any] = []
        if self.kind:
            clauses.append("kind = ?")
            values.append(self.kind)
        for column, text in (("task_name", self.task), ("app_name", self.app)):
            if text:
                clauses.append(f"instr(lower({column}), ?) > 0")
                values.append(text.lower())
        if self.stream:
            clauses.append("lower(stream) = ?")
            values.append(self.stream.lower())
        if self.outcome:
            clauses.append(
                "EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.event_id "
                "AND d.state = ?)"
            )
            values.append(self.outcome)
        if self.since is not None:
            clauses.append("received_at >= ?")
            values.append(self.since)
        if self.until is not None:
            clauses.append("received_at < ?")
            values.append(self.until)
        return (" AND ".join(clauses) or "1"), values


def _seconds(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


class Store:
    def __init__(self, path: Path, *, retention: float, max_events: int) -> None:
        self.db = Database(path)
        self.db.execute_script(_SCHEMA)
        self.retention = retention
        self.max_events = max_events

    def close(self) -> None:
        self.db.close()

    # --- what arrives ----------------------------------------------------------------------

    def add_event(self, event: events.Event, body: bytes | None = None) -> bool:
        """Store an event; False when it was known already (a redelivery).

        The whole script log an event may carry (``script_log.full_text``, up to megabytes, for
        the log archiver) is left out: the pages show its head and tail, and the history stays
        a few kilobytes an event."""
        log = event.script_log
        if log is not None and log.full_text is not None:
            event = msgspec.structs.replace(
                event, script_log=msgspec.structs.replace(log, full_text=None)
            )
            body = None
        app = event.app
        stream = "" if app is None or app.stream is None else app.stream.name
        with self.db.transaction() as sql:
            cursor = sql.execute(
                "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event.event_id,
                    event.kind,
                    event.task.name,
                    "" if app is None else app.name,
                    stream,
                    event.occurred_at.timestamp(),
                    event.received_at.timestamp(),
                    int(event.test),
                    # 40% of the JSON (1.5 of 3.8 kB for a typical event): 100 000 events with their
                    # receipts take ~290 MB.
                    zlib.compress(body if body is not None else events.encode(event), 1),
                ),
            )
        return cursor.rowcount == 1

    def add_receipt(self, receipt: Report) -> None:
        at = receipt.at.timestamp()
        with self.db.transaction() as sql:
            # The latest word wins: a replay's receipt follows the dead letter it ends.
            sql.execute(
                "INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?) "
                "ON CONFLICT DO UPDATE SET state = excluded.state, attempts = excluded.attempts, "
                "detail = excluded.detail, next_attempt_at = NULL, at = excluded.at "
                "WHERE excluded.at >= deliveries.at",
                (
                    receipt.event_id,
                    receipt.service,
                    receipt.destination,
                    receipt.target,
                    receipt.outcome,
                    receipt.attempts,
                    receipt.detail or "",
                    at,
                ),
            )
            where = following.where(receipt.destination, receipt.target)
            detail = f": {receipt.detail}" if receipt.detail else ""
            self._said(sql, receipt.event_id, at, receipt.service, receipt.outcome, where + detail)

    def add_pending(self, pending: Pending) -> None:
        """A test alert's delivery that is not over: taken (0 attempts) or to be retried."""
        at = pending.at.timestamp()
        state = "retrying" if pending.attempts else "taken"
        with self.db.transaction() as sql:
            sql.execute(
                "INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO UPDATE SET state = excluded.state, attempts = excluded.attempts, "
                "detail = excluded.detail, next_attempt_at = excluded.next_attempt_at, "
                "at = excluded.at WHERE excluded.at >= deliveries.at "
                "AND deliveries.state IN ('taken', 'retrying')",
                (
                    pending.event_id,
                    pending.service,
                    pending.destination,
                    pending.target,
                    state,
                    pending.attempts,
                    pending.reason,
                    _seconds(pending.next_attempt_at),
                    at,
                ),
            )
            where = following.where(pending.destination, pending.target)
            detail = (
                f": attempt {pending.attempts} failed: {pending.reason}" if pending.attempts else ""
            )
            self._said(sql, pending.event_id, at, pending.service, state, where + detail)

    def add_dead_letter(self, letter: DeadLetter) -> None:
        event = letter.event
        if event is not None:
            self.add_event(event)
        with self.db.transaction() as sql:
            sql.execute(
                "INSERT INTO dead_letters (event_id, service, destination, target, reason, "
                "attempts, at, task_name, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    None if event is None else event.event_id,
                    letter.service,
                    letter.destination or "",
                    letter.target,
                    letter.reason,
                    letter.attempts,
                    letter.at.timestamp(),
                    "" if event is None else event.task.name,
                    letter.payload,
                ),
            )

    def add_replay_request(self, request: ReplayRequest, service: str) -> None:
        with self.db.transaction() as sql:
            sql.execute(
                "INSERT OR IGNORE INTO replays VALUES (?, ?, ?, ?, ?, ?)",
                (
                    request.id,
                    service,
                    request.destination,
                    msgspec.json.encode(request.event_ids).decode(),
                    request.requested_by,
                    request.requested_at.timestamp(),
                ),
            )
            for event_id in request.event_ids:
                what = f"asked {service} to deliver again, by {request.requested_by}"
                self._said(sql, event_id, request.requested_at.timestamp(), service, "replay", what)

    def add_replay_answer(self, answer: ReplayAnswer, at: float) -> None:
        with self.db.transaction() as sql:
            sql.execute(
                "INSERT OR REPLACE INTO replay_answers VALUES (?, ?, ?, ?, ?, ?)",
                (
                    answer.id,
                    answer.service,
                    answer.instance,
                    msgspec.json.encode(answer.replayed).decode(),
                    msgspec.json.encode(answer.not_found).decode(),
                    at,
                ),
            )
            for item in answer.replayed:
                where = following.where(item.destination, item.target)
                self._said(
                    sql, item.event_id, at, answer.service, "replayed", f"{where}: back to pending"
                )
            for event_id in answer.not_found:
                what = f"{answer.instance} holds no dead letter of it"
                self._said(sql, event_id, at, answer.service, "not_found", what)

    @staticmethod
    def _said(sql: Any, event_id: str, at: float, service: str, what: str, detail: str) -> None:
        sql.execute(
            "INSERT INTO timeline (event_id, at, service, what, detail) VALUES (?, ?, ?, ?, ?)",
            (event_id, at, service, what, detail),
        )

    # --- what the pages read ---------------------------------------------------------------

    def events(
        self, chosen: EventFilter = EventFilter(), *, limit: int = 50, offset: int = 0
    ) -> list[EventRow]:
        where, values = chosen.where()
        rows = self.db.connection.execute(
            f"SELECT * FROM events WHERE {where} "  # noqa: S608 - where() builds only placeholders
            "ORDER BY received_at DESC, event_id LIMIT ? OFFSET ?",
            (*values, limit, offset),
        ).fetchall()
        found = [_event_row(row) for row in rows]
        self._attach_deliveries(found)
        return found

    def event(self, event_id: str) -> EventRow | None:
        row = self.db.connection.execute(
            "SELECT * FROM events WHERE event_id = ?", (event_id,)
        ).fetchone()
        if row is None:
            return None
        found = _event_row(row)
        self._attach_deliveries([found])
        return found

    def matches(self, event_id: str, chosen: EventFilter) -> bool:
        where, values = chosen.where()
        row = self.db.connection.execute(
            f"SELECT 1 FROM events WHERE event_id = ? AND {where}",  # noqa: S608
            (event_id, *values),
        ).fetchone()
        return row is not None

    def count(self) -> int:
        return int(self.db.connection.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def deliveries(self, event_id: str) -> list[Delivery]:
        rows = self.db.connection.execute(
            "SELECT service, destination, target, state, attempts, detail, next_attempt_at, at "
            "FROM deliveries WHERE event_id = ? ORDER BY service, destination, target",
            (event_id,),
        ).fetchall()
        return [Delivery(*row) for row in rows]

    def _attach_deliveries(self, rows: Sequence[EventRow]) -> None:
        if not rows:
            return
        by_id = {row.event_id: row for row in rows}
        marks = ",".join("?" * len(by_id))
        query = (
            "SELECT event_id, service, destination, target, state, attempts, detail, "
            "next_attempt_at, at FROM deliveries WHERE event_id IN (%s) "
            "ORDER BY service, destination, target"
        )
        for event_id, *rest in self.db.connection.execute(query % marks, tuple(by_id)):
            by_id[event_id].deliveries.append(Delivery(*rest))

    def timeline(self, event_id: str) -> list[TimelineEntry]:
        rows = self.db.connection.execute(
            "SELECT at, service, what, detail FROM timeline WHERE event_id = ? ORDER BY at, seq",
            (event_id,),
        ).fetchall()
        return [TimelineEntry(*row) for row in rows]

    def dead_letters(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest dead letters, each with the delivery's state now (a replay may have ended it)."""
        rows = self.db.connection.execute(
            "SELECT l.seq, l.event_id, l.service, l.destination, l.target, l.reason, l.attempts, "
            "l.at, l.task_name, l.payload, d.state FROM dead_letters l LEFT JOIN deliveries d "
            "ON d.event_id = l.event_id AND d.service = l.service "
            "AND d.destination = l.destination AND d.target = l.target "
            "ORDER BY l.at DESC, l.seq DESC LIMIT ?",
            (limit,),
        ).fetchall()
        names = (
            "seq", "event_id", "service", "destination", "target", "reason", "attempts", "at",
            "task_name", "payload", "state_now",
        )  # fmt: skip
        return [dict(zip(names, row, strict=True)) for row in rows]

    def dead_letter(self, seq: int) -> dict[str, Any] | None:
        row = self.db.connection.execute(
            "SELECT seq, event_id, service, destination FROM dead_letters WHERE seq = ?", (seq,)
        ).fetchone()
        if row is None:
            return None
        return dict(zip(("seq", "event_id", "service", "destination"), row, strict=True))

    def replays(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest replay requests, each with its instances' answers."""
        requests = self.db.connection.execute(
            "SELECT id, service, destination, event_ids, requested_by, requested_at FROM replays "
            "ORDER BY requested_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        found = []
        for request_id, service, destination, event_ids, by, at in requests:
            answers = [
                {
                    "instance": instance,
                    "replayed": msgspec.json.decode(replayed),
                    "not_found": msgspec.json.decode(not_found),
                    "at": answered,
                }
                for instance, replayed, not_found, answered in self.db.connection.execute(
                    "SELECT instance, replayed, not_found, at FROM replay_answers WHERE id = ? "
                    "ORDER BY instance",
                    (request_id,),
                )
            ]
            found.append(
                {
                    "id": request_id,
                    "service": service,
                    "destination": destination,
                    "event_ids": msgspec.json.decode(event_ids),
                    "requested_by": by,
                    "requested_at": at,
                    "answers": answers,
                }
            )
        return found

    # --- forgetting ------------------------------------------------------------------------

    def prune(self, now: float | None = None) -> int:
        """Forget what is older than the retention or beyond max_events; how many events went."""
        cutoff = (time.time() if now is None else now) - self.retention
        with self.db.transaction() as sql:
            newest_dropped = sql.execute(
                "SELECT received_at FROM events ORDER BY received_at DESC LIMIT 1 OFFSET ?",
                (self.max_events,),
            ).fetchone()
            if newest_dropped is not None:
                cutoff = max(cutoff, newest_dropped[0] + 1e-6)
            dropped = sql.execute("DELETE FROM events WHERE received_at < ?", (cutoff,)).rowcount
            for table in ("deliveries", "timeline", "dead_letters"):
                sql.execute(f"DELETE FROM {table} WHERE at < ?", (cutoff,))  # noqa: S608
            sql.execute("DELETE FROM replays WHERE requested_at < ?", (cutoff,))
            sql.execute("DELETE FROM replay_answers WHERE at < ?", (cutoff,))
        return int(dropped)


def _event_row(row: Iterable[Any]) -> EventRow:
    event_id, kind, task, app, stream, occurred, received, test, body = row
    return EventRow(event_id, kind, task, app, stream, occurred, received, bool(test), body)
