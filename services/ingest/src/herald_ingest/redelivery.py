"""End-to-end acknowledgement: ingest keeps every event until each subscriber service has it.

The broker's PUBACK says only that the broker holds an event, and a broker can still lose it:
killed before its next autosave (``autosave_interval`` in ``deploy/mosquitto/mosquitto.conf``),
a queue limit reached (``max_queued_messages``, which drops silently), or a persistent session
that nobody resumes (a subscriber restarted under another ``broker.instance``). So every
subscriber service, in the commit that takes a batch of events into its ledger, puts one
acknowledgement in its outbox: the batch's event ids on ``herald/v1/acks/<service>/<instance>``
(``herald_shared.delivery.reporting``). Ingest keeps each event it publishes (topic and payload,
in its state database, in the commit that puts it in the outbox) with the services expected to
acknowledge it, until each one has; an acknowledgement from any instance counts for its service.

Expected are the services with a retained status on ``herald/v1/status/<service>/<instance>``
(ingest itself aside), as known when the event is stored; what ingest learnt is kept in its
database, so it knows them before the broker's retained messages arrive. A service that is not
installed never published a status, and consumers that are not Herald services (IoT) publish
none, so neither is waited for. A service is retired by clearing its retained status (an empty
retained message): ingest then stops waiting for it.

An event that a service has not acknowledged ``ingest.redelivery.after`` after it reached the
broker is published again, on its own topic with the same payload (the subscribers' ledgers
know it if they have it, and acknowledge it again), then after twice as long, and so on up to
``ingest.redelivery.max_interval``; but only while an instance of that service is online: while
none is, the broker keeps the event in the sessions, and resending would only pile copies there.
Each service's overdue events are a gauge and its resends a counter; a WARNING, at most once a
minute per service, says how many. Events are kept at most ``keep_for`` and ``keep_at_most``:
what is dropped before every acknowledgement came is counted and logged as an ERROR.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Final

import msgspec

from herald_ingest.settings import RedeliverySettings
from herald_shared import metrics, topics
from herald_shared.bus import ONLINE
from herald_shared.db import Database
from herald_shared.outbox import Outbox

log = logging.getLogger(__name__)

REPORT_EVERY: Final = 60.0  # seconds between WARNING lines about one service
RESEND_BATCH: Final = 500  # events put back in the outbox per check, oldest first
_NOT_WAITING: Final = 2**62  # an outbox sequence number no message reaches

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS subscribers (
    service TEXT NOT NULL,
    instance TEXT NOT NULL,
    online INTEGER NOT NULL,
    PRIMARY KEY (service, instance)
);
CREATE TABLE IF NOT EXISTS unacknowledged (
    event_id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    added_at REAL NOT NULL,
    outbox_seq INTEGER NOT NULL,    -- its latest copy in the outbox
    published_at REAL,              -- when that copy was seen gone from the outbox (PUBACKed)
    resends INTEGER NOT NULL DEFAULT 0,
    wait REAL NOT NULL              -- seconds after published_at before it is resent
);
CREATE INDEX IF NOT EXISTS unacknowledged_unpublished
    ON unacknowledged (outbox_seq) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS unacknowledged_added ON unacknowledged (added_at);
CREATE TABLE IF NOT EXISTS awaiting (
    event_id TEXT NOT NULL,
    service TEXT NOT NULL,
    PRIMARY KEY (event_id, service)
) WITHOUT ROWID;
"""


class Redelivery:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        settings: RedeliverySettings,
        *,
        own_service: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._settings = settings
        self._own = own_service
        self._clock = clock
        db.execute_script(_SCHEMA)
        # service -> instance -> online
        self._instances: dict[str, dict[str, bool]] = {}
        rows = db.connection.execute("SELECT service, instance, online FROM subscribers")
        for service, instance, online in rows:
            self._instances.setdefault(service, {})[instance] = bool(online)
        self._reported: dict[tuple[str, bool], float] = {}
        self._resent_since_report: Counter[str] = Counter()

    @staticmethod
    def subscriptions(prefix: str) -> list[str]:
        return [topics.status_filter(prefix), topics.acks_filter(prefix)]

    @property
    def interval(self) -> float:
        """How often :meth:`check` runs: often enough to resend within the bound's precision."""
        return max(0.05, min(self._settings.after / 2, 5.0))

    def expected(self) -> list[str]:
        """The services every new event waits for."""
        return sorted(self._instances)

    def waiting_for(self, service: str) -> int:
        """How many events ``service`` has not acknowledged yet."""
        row = self._db.connection.execute(
            "SELECT COUNT(*) FROM awaiting WHERE service = ?", (service,)
        ).fetchone()
        return int(row[0])

    # --- storing -------------------------------------------------------------------------

    def track(self, event_id: str, topic: str, payload: bytes, outbox_seq: int) -> None:
        """Keep an event just put in the outbox (inside the caller's transaction)."""
        if not self._instances:
            return
        sql = self._db.connection
        sql.execute(
            "INSERT OR REPLACE INTO unacknowledged "
            "(event_id, topic, payload, added_at, outbox_seq, wait) VALUES (?, ?, ?, ?, ?, ?)",
            (event_id, topic, payload, self._clock(), outbox_seq, self._settings.after),
        )
        sql.executemany(
            "INSERT OR IGNORE INTO awaiting (event_id, service) VALUES (?, ?)",
            [(event_id, service) for service in self._instances],
        )

    # --- what the broker tells ------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> None:
        """A status or an acknowledgement (ingest's bus handler)."""
        service, instance = topics.service_and_instance(topic)
        if topic.split("/")[-3] == "acks":
            self._acknowledged(service, topic, payload)
        elif service != self._own:
            self._status(service, instance, payload)

    def _acknowledged(self, service: str, topic: str, payload: bytes) -> None:
        try:
            event_ids = msgspec.json.decode(payload, type=list[str])
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            log.warning(
                "ignored an acknowledgement on %s that is not a list of ids: %s", topic, error
            )
            return
        with self._db.transaction() as sql:
            sql.executemany(
                "DELETE FROM awaiting WHERE event_id = ? AND service = ?",
                [(event_id, service) for event_id in event_ids],
            )
            sql.executemany(
                "DELETE FROM unacknowledged WHERE event_id = ? "
                "AND NOT EXISTS (SELECT 1 FROM awaiting WHERE event_id = ?)",
                [(event_id, event_id) for event_id in event_ids],
            )

    def _status(self, service: str, instance: str, payload: bytes) -> None:
        instances = self._instances.get(service, {})
        with self._db.transaction() as sql:
            if payload:
                sql.execute(
                    "INSERT INTO subscribers (service, instance, online) VALUES (?, ?, ?) "
                    "ON CONFLICT (service, instance) DO UPDATE SET online = excluded.online",
                    (service, instance, int(payload == ONLINE)),
                )
            else:  # the retained status was cleared: that instance is retired
                sql.execute(
                    "DELETE FROM subscribers WHERE service = ? AND instance = ?",
                    (service, instance),
                )
                if set(instances) <= {instance}:
                    self._forget(service)
        if payload:
            if service not in self._instances:
                log.info("events from now on wait for %s's acknowledgement", service)
            self._instances.setdefault(service, {})[instance] = payload == ONLINE
        elif instance in instances:
            del instances[instance]
            if not instances:
                del self._instances[service]
                log.info("%s's status was cleared: no event waits for it any more", service)
                metrics.EVENTS_UNACKNOWLEDGED.labels(service=self._own, subscriber=service).set(0)

    def _forget(self, service: str) -> None:
        sql = self._db.connection
        sql.execute("DELETE FROM awaiting WHERE service = ?", (service,))
        sql.execute(
            "DELETE FROM unacknowledged WHERE NOT EXISTS "
            "(SELECT 1 FROM awaiting WHERE awaiting.event_id = unacknowledged.event_id)"
        )

    # --- the periodic check ---------------------------------------------------------------

    def check(self) -> None:
        """Note what reached the broker, drop what is too old, resend what is overdue."""
        now = self._clock()
        first_waiting = self._outbox.first_waiting()
        with self._db.transaction() as sql:
            # The outbox publishes in order and forgets a message on its PUBACK.
            sql.execute(
                "UPDATE unacknowledged SET published_at = ? "
                "WHERE published_at IS NULL AND outbox_seq < ?",
                (now, _NOT_WAITING if first_waiting is None else first_waiting),
            )
            self._expire(now)
            resent = self._resend(now)
        for service, count in resent.items():
            metrics.EVENTS_RESENT.labels(service=self._own, subscriber=service).inc(count)
            self._resent_since_report[service] += count
        self._report(self._overdue(now), now)

    def _resend(self, now: float) -> Counter[str]:
        resent: Counter[str] = Counter()
        if not any(any(instances.values()) for instances in self._instances.values()):
            return resent
        sql = self._db.connection
        rows = sql.execute(
            "SELECT u.event_id, u.topic, u.payload, u.resends, group_concat(a.service, ' ') "
            "FROM unacknowledged u JOIN awaiting a ON a.event_id = u.event_id "
            "WHERE u.published_at IS NOT NULL AND u.published_at + u.wait <= ? "
            "AND a.service IN (SELECT service FROM subscribers WHERE online = 1) "
            "GROUP BY u.event_id ORDER BY u.added_at LIMIT ?",
            (now, RESEND_BATCH),
        ).fetchall()
        for event_id, topic, payload, resends, services in rows:
            seq = self._outbox.add(topic, bytes(payload))
            wait = min(self._settings.after * 2 ** (resends + 1), self._settings.max_interval)
            sql.execute(
                "UPDATE unacknowledged SET outbox_seq = ?, published_at = NULL, "
                "resends = resends + 1, wait = ? WHERE event_id = ?",
                (seq, wait, event_id),
            )
            resent.update(services.split(" "))
        return resent

    def _expire(self, now: float) -> None:
        sql = self._db.connection
        (count,) = sql.execute("SELECT COUNT(*) FROM unacknowledged").fetchone()
        expired = sql.execute(
            "SELECT event_id FROM unacknowledged WHERE added_at < ? "
            "UNION SELECT event_id FROM "
            "(SELECT event_id FROM unacknowledged ORDER BY added_at LIMIT ?)",
            (now - self._settings.keep_for, max(0, count - self._settings.keep_at_most)),
        ).fetchall()
        if not expired:
            return
        by_service: Counter[str] = Counter()
        for (event_id,) in expired:
            services = sql.execute(
                "DELETE FROM awaiting WHERE event_id = ? RETURNING service", (event_id,)
            ).fetchall()
            by_service.update(service for (service,) in services)
            sql.execute("DELETE FROM unacknowledged WHERE event_id = ?", (event_id,))
        for service, lost in by_service.items():
            metrics.EVENTS_EXPIRED.labels(service=self._own, subscriber=service).inc(lost)
            log.error(
                "%s never acknowledged %d event(s) within ingest.redelivery.keep_for (%g s) or "
                "keep_at_most (%d events); ingest no longer resends them, and they may never "
                "have reached it",
                service,
                lost,
                self._settings.keep_for,
                self._settings.keep_at_most,
            )

    def _overdue(self, now: float) -> dict[str, int]:
        rows = self._db.connection.execute(
            "SELECT a.service, COUNT(*) FROM awaiting a "
            "JOIN unacknowledged u ON u.event_id = a.event_id "
            "WHERE u.added_at <= ? GROUP BY a.service",
            (now - self._settings.after,),
        ).fetchall()
        return dict(rows)

    def _report(self, overdue: dict[str, int], now: float) -> None:
        for service in self._instances:
            count = overdue.get(service, 0)
            metrics.EVENTS_UNACKNOWLEDGED.labels(service=self._own, subscriber=service).set(count)
            resent = self._resent_since_report[service]
            if not (count or resent):
                continue
            online = any(self._instances[service].values())
            # Resending and waiting are told apart: the first resend is reported at once.
            key = (service, online)
            if now - self._reported.get(key, -REPORT_EVERY) < REPORT_EVERY:
                continue
            self._reported[key] = now
            self._resent_since_report[service] = 0
            if online:
                log.warning(
                    "%s has not acknowledged %d event(s) within %g s; ingest published %d "
                    "again since the last report (lost by the broker, or the service is slow)",
                    service,
                    count,
                    self._settings.after,
                    resent,
                )
            else:
                log.warning(
                    "%s has not acknowledged %d event(s) and none of its instances is online; "
                    "they are published again once one is",
                    service,
                    count,
                )
