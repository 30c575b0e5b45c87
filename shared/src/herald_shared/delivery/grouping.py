"""Grouped digests: many alerts for one recipient, collected and sent as one message.

A destination people read (e-mail, Slack, Teams) may have ``group:`` settings
(:class:`~herald_shared.settings.GroupSettings`). A group is one destination, one target (a
recipient) and the values of ``group.by`` (e.g. the stream). Storm protection decides when
grouping starts: once more than ``group.threshold`` alerts for the target arrived within a
minute (0: always). The alert that opens a group goes out alone at once (``wait: 0s``; with a
longer ``wait`` it is collected too); the group's further alerts until its interval ends are
collected, and at the end one digest carries them all. A window that collected something opens
the next one; one that collected nothing closes the group, so the next alert goes out alone
again.

Everything is in the service's database, in the intake's commits: the open groups (table
``delivery_groups``, with when each is due) and the collected alerts with their events (table
``group_members``). A collected alert's delivery ends ``grouped`` at once, with a receipt naming
its digest; when the group is due, the digest becomes one pending delivery in the ledger (its
"event id" is the digest's id), retried, resumed after a restart and reported like any other,
its receipt carrying the event ids it holds. A service killed during the interval finds its
groups at start and sends each digest once; the members' events are kept until their digest
ends. If the digest is dead-lettered, so is each alert it carried, with its event.

How many alerts arrived within the last minute is kept in memory only: after a restart a storm
is recognised again within its first minute.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any, Final

import msgspec

from herald_shared import events, samples
from herald_shared.db import Database
from herald_shared.delivery.ledger import Job
from herald_shared.events import Event
from herald_shared.outcomes import Outcome, outcome_of
from herald_shared.settings import GroupBy, GroupSettings

if TYPE_CHECKING:
    from herald_shared.delivery.destination import Destination

__all__ = [
    "DIGEST_PREFIX",
    "Digest",
    "DigestItem",
    "dead_members",
    "digest_context",
    "is_digest",
    "sample_digest",
]

DIGEST_PREFIX: Final = "digest-"
STORM_WINDOW: Final = 60.0  # seconds: "more than threshold alerts within a minute"

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS delivery_groups (
    group_key TEXT PRIMARY KEY,
    destination TEXT NOT NULL,
    target TEXT NOT NULL,
    label TEXT NOT NULL,
    opened_at REAL NOT NULL,
    window INTEGER NOT NULL,
    flush_at REAL NOT NULL,
    span REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS group_members (
    group_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    digest_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (group_key, event_id)
);
CREATE INDEX IF NOT EXISTS group_members_digest ON group_members (digest_id);
"""


def is_digest(delivery_id: str) -> bool:
    """Whether a ledger row's event id is a digest's."""
    return delivery_id.startswith(DIGEST_PREFIX)


def dead_members(digest: Digest, job: Job, detail: str | None) -> Iterator[tuple[Event, Job, str]]:
    """The alerts of a dead-lettered digest, each as its own dead delivery and its reason.

    Each becomes a dead letter of its own, in the ledger as on the dead-letter topic, so that a
    replay delivers it alone once the destination is back: the digest's moment has passed.
    """
    for event in digest.events:
        member = Job(event.event_id, job.destination, job.target, job.received_at)
        member.attempts = job.attempts
        member.first_attempt_at = job.first_attempt_at
        yield event, member, f"in the digest {job.event_id}: {detail}"


def group_values(by: Sequence[GroupBy], event: Event) -> dict[str, str]:
    """The values an event is grouped by, as people read them."""
    values: dict[str, str] = {}
    for key in by:
        if key == "stream":
            stream = event.app.stream if event.app is not None else None
            values[key] = stream.name if stream is not None else ""
        elif key == "app_owner":
            owner = event.app.owner if event.app is not None else None
            values[key] = (owner.name or f"{owner.directory}\\{owner.user_id}") if owner else ""
        elif key == "outcome":
            values[key] = outcome_of(event) or ""
        elif key == "node":
            values[key] = event.execution.node or ""
        else:
            values[key] = event.task.type
    return values


@dataclass
class _Group:
    key: str
    destination: str
    target: str
    label: str  # JSON of the group values
    opened_at: float
    window: int
    flush_at: float
    span: float  # the window's length: a flush_at further away than this, the clock went back

    def due(self, now: float) -> bool:
        return self.flush_at <= now or self.flush_at - now > self.span

    @property
    def digest_id(self) -> str:
        """The id of the digest this window collects for: the same after a restart, never the
        same as an earlier group's of the same key (``opened_at`` differs)."""
        seed = f"{self.key}|{self.opened_at!r}|{self.window}"
        return DIGEST_PREFIX + hashlib.sha256(seed.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Grouped:
    """A delivery that went into a group: its ``grouped`` receipt's detail."""

    reason: str


@dataclass(frozen=True)
class Digest:
    """One digest as a destination delivers it: the events it carries, in arrival order."""

    id: str
    destination: str
    target: str
    group: dict[str, str]  # group.by -> value, e.g. {"stream": "Finance"}
    events: list[Event]
    max_items: int

    @property
    def event_ids(self) -> list[str]:
        return [event.event_id for event in self.events]


@dataclass(frozen=True)
class DigestItem:
    """One row of a digest's table."""

    event_id: str
    outcome: str
    task_name: str
    task_id: str
    app_name: str
    stream: str
    time: str  # when it happened, in the destination's zone
    error: str  # the line that says what went wrong
    links: dict[str, str | None] = field(default_factory=dict)  # qmc, hub, app


_VERBS: Final[dict[str, str]] = {
    "failed": "failed",
    "aborted": "were aborted",
    "succeeded": "succeeded",
    "recovered": "are running again",
}
_WHERE: Final[dict[str, str]] = {
    "stream": "in {}",
    "app_owner": "owned by {}",
    "outcome": "({})",
    "node": "on {}",
    "task_type": "of type {}",
}
_NOWHERE: Final[dict[str, str]] = {
    "stream": "outside any stream",
    "app_owner": "without an owner",
    "outcome": "",
    "node": "on an unknown node",
    "task_type": "",
}


def _error_line(event: Event) -> str:
    if event.log_message:
        return event.log_message
    tail = event.script_log.tail if event.script_log is not None else []
    for line in reversed(tail):
        if line.strip():
            return line.strip()
    return event.execution.status or ""


def _local(moment: datetime, zone: tzinfo | None) -> datetime:
    return moment.astimezone(zone) if zone is not None else moment.astimezone()


def digest_context(digest: Digest, zone: tzinfo | None) -> dict[str, Any]:
    """What every digest template sees: ``title`` ("37 reload tasks failed in Finance since
    03:02"), ``count``, ``since`` (text), ``group`` (its values), ``items`` (the first
    ``max_items`` rows, :class:`DigestItem` as dicts), ``more`` (rows left out), ``event_ids``
    (every event it carries), ``outcomes`` (the distinct outcomes among them), ``problem``
    (whether one of them is a failure or an abort) and ``digest_id``."""
    carried = digest.events
    since = min(event.occurred_at for event in carried)
    outcomes: list[Outcome] = []
    for event in carried:
        outcome = outcome_of(event)
        if outcome is not None and outcome not in outcomes:
            outcomes.append(outcome)
    reloads = all(event.task.type == "reload" for event in carried)
    count = len(carried)
    noun = ("reload task" if reloads else "task") + ("" if count == 1 else "s")
    verb = " or ".join(_VERBS[outcome] for outcome in outcomes)
    if count == 1:
        verb = verb.replace("were ", "was ").replace("are ", "is ")
    where = [
        _WHERE[key].format(value) if value else _NOWHERE[key] for key, value in digest.group.items()
    ]
    local_since = _local(since, zone)
    title = " ".join(
        part for part in (f"{count} {noun} {verb}", *where, f"since {local_since:%H:%M}") if part
    )
    items = [
        DigestItem(
            event_id=event.event_id,
            outcome=outcome_of(event) or "",
            task_name=event.task.name,
            task_id=event.task.id,
            app_name=event.app.name if event.app is not None else "",
            stream=group_values(("stream",), event)["stream"],
            time=f"{_local(event.occurred_at, zone):%Y-%m-%d %H:%M:%S}",
            error=_error_line(event),
            links={"qmc": event.links.qmc, "hub": event.links.hub, "app": event.links.app},
        ).__dict__
        for event in carried[: digest.max_items]
    ]
    return {
        "digest_id": digest.id,
        "title": title,
        "count": count,
        "since": f"{local_since:%Y-%m-%d %H:%M %Z}".strip(),
        "group": dict(digest.group),
        "items": items,
        "more": count - len(items),
        "event_ids": digest.event_ids,
        "outcomes": outcomes,
        "problem": any(outcome in ("failed", "aborted") for outcome in outcomes),
    }


def sample_digest(destination: str = "sample", target: str = "") -> Digest:
    """A digest of the sample failures (:mod:`herald_shared.samples`), for checking templates."""
    carried: list[Event] = [
        samples.sample_failed(),
        samples.sample_partial(),
        samples.sample_aborted(),
    ]
    return Digest(
        id=f"{DIGEST_PREFIX}sample",
        destination=destination,
        target=target,
        group=group_values(("stream",), carried[0]),
        events=carried,
        max_items=2,  # so that "and N more" is rendered too
    )


class _Storms:
    """How many alerts each (destination, target) had within the last minute."""

    def __init__(self) -> None:
        self._arrivals: dict[tuple[str, str], deque[float]] = {}
        self._counted = 0

    def count(self, destination: str, target: str, now: float) -> int:
        """Record one alert now; how many arrived within the window, this one included."""
        arrivals = self._arrivals.setdefault((destination, target), deque())
        arrivals.append(now)
        while arrivals[0] <= now - STORM_WINDOW:
            arrivals.popleft()
        self._counted += 1
        if self._counted % 4096 == 0:  # forget the recipients that have been quiet
            self._arrivals = {
                key: times
                for key, times in self._arrivals.items()
                if times[-1] > now - STORM_WINDOW
            }
        return len(arrivals)


@dataclass(frozen=True)
class DueDigest:
    """A digest whose group is due: its delivery, to be added to the ledger."""

    id: str
    destination: str
    target: str


class Grouping:
    """The open groups of a service, in its database and, for speed, in memory.

    Every method that writes runs inside the intake's transaction; if that transaction fails,
    :meth:`reload` makes memory agree with the database again.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        db.execute_script(_SCHEMA)
        self._storms = _Storms()
        self._open: dict[str, _Group] = {}
        self._stored: tuple[str, bytes] = ("", b"")  # the last event stored, for its other targets
        self._targets: Counter[tuple[str, str]] = Counter()
        self.reload()

    def reload(self) -> None:
        rows = self._db.connection.execute(
            "SELECT group_key, destination, target, label, opened_at, window, flush_at, span"
            " FROM delivery_groups"
        ).fetchall()
        self._open = {row[0]: _Group(*row) for row in rows}
        # How many groups each (destination, target) has open.
        self._targets = Counter((g.destination, g.target) for g in self._open.values())

    def place(
        self, destination: Destination, event: Event, target: str, now: float
    ) -> Grouped | None:
        """Whether this delivery goes into a group (recorded) or out alone (None)."""
        settings = destination.group
        if settings is None or event.test:
            return None
        storm = self._storms.count(destination.name, target, now)
        if storm <= settings.threshold and not self._targets[destination.name, target]:
            return None  # the common case, decided without working out the group
        values = group_values(settings.by, event)
        label = json.dumps(values, ensure_ascii=False)
        key = f"{destination.name}\x1f{target}\x1f{label}"
        group = self._open.get(key)
        if group is None:
            if storm <= settings.threshold:
                return None
            group = self._open_group(key, destination.name, target, label, settings, now)
            if settings.wait <= 0:
                return None  # the first alert of a group goes out at once
        self._db.connection.execute(
            "INSERT OR IGNORE INTO group_members (group_key, event_id, digest_id, payload)"
            " VALUES (?, ?, ?, ?)",
            (key, event.event_id, group.digest_id, self._payload(event)),
        )
        due = datetime.fromtimestamp(group.flush_at, UTC)
        return Grouped(
            f"grouped into {group.digest_id} ({_described(values)}), due {due:%H:%M:%S} UTC"
        )

    def _payload(self, event: Event) -> bytes:
        """The event without the script log's full text, which no e-mail or chat message shows
        (they show its head and tail lines, kept) and which is most of an event's size: each
        recipient's group keeps a copy."""
        if self._stored[0] != event.event_id:
            log = event.script_log
            if log is not None:
                log = msgspec.structs.replace(log, full_text=None, full_text_truncated=False)
            slim = msgspec.structs.replace(event, script_log=log)
            self._stored = (event.event_id, events.encode(slim))
        return self._stored[1]

    def _open_group(
        self,
        key: str,
        destination: str,
        target: str,
        label: str,
        settings: GroupSettings,
        now: float,
    ) -> _Group:
        first = settings.wait if settings.wait > 0 else settings.interval
        group = _Group(key, destination, target, label, now, 0, now + first, first)
        self._open[key] = group
        self._targets[destination, target] += 1
        self._db.connection.execute(
            "INSERT INTO delivery_groups (group_key, destination, target, label, opened_at,"
            " window, flush_at, span) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key, destination, target, label, now, 0, group.flush_at, first),
        )
        return group

    @property
    def open(self) -> int:
        """How many groups are collecting."""
        return len(self._open)

    def due(self, now: float) -> bool:
        """Whether a group's window has ended (cheap: memory only). A wall clock stepped back
        does not hold a digest back longer than its window."""
        return any(group.due(now) for group in self._open.values())

    def flush(
        self, now: float, intervals: Mapping[str, GroupSettings], delivering: set[str]
    ) -> Iterator[DueDigest]:
        """Close every window that ended: each that collected something becomes a digest and
        opens the next window; one that collected nothing closes its group. ``intervals``:
        each destination's group settings; ``delivering``: the destinations configured now (a
        group of one that is not stays until it is)."""
        sql = self._db.connection
        for group in [g for g in self._open.values() if g.due(now)]:
            if group.destination not in delivering:
                continue
            digest_id = group.digest_id
            collected = sql.execute(
                "SELECT 1 FROM group_members WHERE digest_id = ? LIMIT 1", (digest_id,)
            ).fetchone()
            if collected is None:
                del self._open[group.key]
                self._targets[group.destination, group.target] -= 1
                sql.execute("DELETE FROM delivery_groups WHERE group_key = ?", (group.key,))
                continue
            settings = intervals.get(group.destination)
            # Grouping turned off since the group opened: this digest is its last.
            group.span = settings.interval if settings is not None else 0.0
            group.window += 1
            group.flush_at = now + group.span
            sql.execute(
                "UPDATE delivery_groups SET window = ?, flush_at = ?, span = ? WHERE group_key = ?",
                (group.window, group.flush_at, group.span, group.key),
            )
            yield DueDigest(digest_id, group.destination, group.target)

    def digest(self, digest_id: str, settings: GroupSettings | None) -> Digest | None:
        """The digest with its events, or None when the database has none of them."""
        rows = self._db.connection.execute(
            "SELECT payload, group_key FROM group_members WHERE digest_id = ? ORDER BY rowid",
            (digest_id,),
        ).fetchall()
        if not rows:
            return None
        # The key says whose group it is: the group itself may have closed since.
        destination, target, label = str(rows[0][1]).split("\x1f")
        return Digest(
            id=digest_id,
            destination=destination,
            target=target,
            group=json.loads(label),
            events=[events.decode(bytes(row[0])) for row in rows],
            max_items=settings.max_items if settings is not None else GroupSettings().max_items,
        )

    def forget(self, digest_id: str) -> None:
        """The digest ended: its events are no longer needed (inside the transaction)."""
        self._db.connection.execute("DELETE FROM group_members WHERE digest_id = ?", (digest_id,))


def _described(values: Mapping[str, str]) -> str:
    return ", ".join(f"{key} {value or '-'}" for key, value in values.items()) or "one group"
