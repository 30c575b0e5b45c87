"""Ingest: the scheduler's datagrams in, one enriched event each out, nothing lost on the way.

A datagram is checked (source, format, duplicate) and stored in the inbox within the socket's
callback, so reading never waits. Workers enrich stored datagrams from the QRS (the same task's
events in arrival order, so a recovery is decided on the right history) and move each, as an
event, from the inbox to the outbox in one commit; the outbox publishes at QoS 1 and forgets an
event on PUBACK. A crash at any point leaves the datagram in the inbox or the event in the outbox.
A datagram whose handling keeps failing is retried a bounded number of times without holding up
the others (``herald_ingest.poison``); datagrams the state disk will not take wait in memory until
it does (``herald_ingest.unstored``).
The same commit keeps the event until every subscriber service has acknowledged it, and resends
it if one does not (``redelivery.py``): what the broker loses is published again.
The reconciliation sweep (``reconcile.py``) stores, through the same ``_store_event``, the runs
the QRS knows and no datagram reported.
The enrichers, the outbox loop and the broker connection are vital tasks: if one ends,
``/readyz`` and ``/livez`` say which and why (``herald_shared.supervision``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from pydantic import PrivateAttr

from herald_ingest import datagram as datagrams
from herald_ingest import gates
from herald_ingest.datagram import Datagram, Rejection
from herald_ingest.enrich import Enricher, Gathered, kind_of_distribute
from herald_ingest.intake_limit import WINDOW, IntakeLimit
from herald_ingest.lease import Lease
from herald_ingest.listener import Address, Listener, SourceFilter, listen
from herald_ingest.poison import Retries
from herald_ingest.qrs import QrsClient, QrsError
from herald_ingest.reconcile import Sweep
from herald_ingest.redelivery import Redelivery
from herald_ingest.settings import IngestSettings, QlikSettings
from herald_ingest.state import IngestState, Stored, seen_key
from herald_ingest.unstored import Checked, Unstored
from herald_shared import events, metrics, topics
from herald_shared.bus import Bus, BusError, Message
from herald_shared.config import ConfigDocument, ConfigError, Section, reveal
from herald_shared.db import Database, database_for
from herald_shared.outbox import Outbox
from herald_shared.preflight import Preflight
from herald_shared.runtime import Context, ServiceSpec
from herald_shared.settings import BrokerSettings
from herald_shared.supervision import Supervisor, WorkerPool, every

log = logging.getLogger(__name__)

NAME = "ingest"
REJECTION_LOG_INTERVAL = 60.0
STOP_GRACE = 10.0
FORGET_INTERVAL = 600.0
STORE_HELD_INTERVAL = 0.5
# Butler's payloads on mqttConfig.taskFailureServerStatusTopic (ingest.udp_status_topic).
UDP_START, UDP_ERROR = b"start", b"error"


class IngestConfig(Section):
    """Both sections ingest reads."""

    ingest: IngestSettings = IngestSettings()
    qlik: QlikSettings = QlikSettings()
    # The custom properties the whole file gates on -> the keys naming them (gates.py), checked
    # against the QRS once ingest has started. Read from the file, not a key of its own.
    _custom_property_gates: dict[str, list[str]] = PrivateAttr(default_factory=dict)

    @property
    def custom_property_gates(self) -> dict[str, list[str]]:
        return self._custom_property_gates


class IngestService:
    name = NAME

    def __init__(self, config: IngestConfig, broker: BrokerSettings) -> None:
        self._settings = config.ingest
        self._qlik = config.qlik
        self._prefix = broker.topic_prefix
        self._db = database_for(Path(config.ingest.state_dir), NAME)
        self._state = IngestState(self._db)
        self._lease_topic = topics.lease_topic(broker.topic_prefix, NAME, "reconcile")
        # The sweep's lease (so that two ingests sweep once), and the subscriber services'
        # statuses and acknowledgements (so that what the broker loses is sent again).
        self.bus = Bus(
            broker,
            NAME,
            subscriptions=[self._lease_topic, *Redelivery.subscriptions(broker.topic_prefix)],
            handler=self._on_message,
        )
        self._lease = Lease(
            self.bus, self._lease_topic, broker.instance, config.ingest.reconcile.interval
        )
        self.outbox = Outbox(self._db, self.bus)
        self.redelivery = Redelivery(
            self._db, self.outbox, config.ingest.redelivery, own_service=NAME
        )
        self._qrs = QrsClient(config.qlik.qrs)
        self._qrs_settings = config.qlik.qrs
        self._enricher = Enricher(
            self._qrs,
            config.qlik,
            config.ingest.enrichment_deadline,
            max_field_length=config.ingest.udp.max_field_length,
        )
        self._sources = SourceFilter(config.ingest.allowed_sources)
        self._supervisor = Supervisor(NAME)
        self._enrichers: WorkerPool[tuple[Stored, Datagram]] = WorkerPool(
            "enrichment",
            self._enrich,
            size=config.ingest.enrichment_concurrency,
            supervisor=self._supervisor,
        )
        self._queue = self._enrichers.queue
        self.sweep = Sweep(
            config.ingest.reconcile,
            qrs=self._qrs,
            enricher=self._enricher,
            db=self._db,
            state=self._state,
            store=self._store_event,
            concurrency=config.ingest.enrichment_concurrency,
            timezone=config.qlik.timezone,
            lease=self._lease,
        )
        self._task_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._listener: Listener | None = None
        self._udp_notices: set[asyncio.Task[None]] = set()
        self._gates = config.custom_property_gates
        self._gate_check: asyncio.Task[None] | None = None
        self._rejections: dict[str, tuple[float, int]] = {}
        self._datagrams = {
            outcome: metrics.DATAGRAMS.labels(service=NAME, outcome=outcome)
            for outcome in ("accepted", "duplicate", "rejected", "over_limit")
        }
        self._limit = IntakeLimit(config.ingest.max_datagrams_per_minute)
        self._inbox_gauge = metrics.INBOX.labels(service=NAME)
        self._retries = Retries(
            NAME,
            self._db,
            self._state,
            self.outbox,
            self._prefix,
            config.ingest,
            self._queue.put_nowait,
        )
        self._unstored = Unstored(NAME, config.ingest.unstored_buffer_bytes)

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        for stored in self._state.inbox():  # what a previous run accepted but did not publish
            parsed = self._parse(stored.datagram)
            if isinstance(parsed, Datagram):
                self._queue.put_nowait((stored, parsed))
            else:  # accepted by an earlier version or configuration
                reason = f"accepted earlier, but now rejected ({parsed.reason}): {parsed.detail}"
                self._retries.dead_letter(stored, reason)
        if self._queue.qsize():
            log.info("resuming %d accepted datagrams from the inbox", self._queue.qsize())
        self._inbox_gauge.set(self._queue.qsize())
        self._enrichers.start()
        self._supervisor.spawn(self.outbox.run(), "the outbox loop")
        forget = every(FORGET_INTERVAL, self._forget_old_datagrams, what="forgetting old datagrams")
        self._supervisor.spawn(forget, "forgetting old datagrams")
        reconcile = self._settings.reconcile
        if reconcile.active:
            sweeping = every(reconcile.interval, self.sweep.run, what="the reconciliation sweep")
            self._supervisor.spawn(sweeping, "the reconciliation sweep")
        store_held = every(STORE_HELD_INTERVAL, self._store_held, what="storing held datagrams")
        self._supervisor.spawn(store_held, "storing held datagrams")
        redeliver = every(
            self.redelivery.interval,
            self.redelivery.check,
            what="resending unacknowledged events",
        )
        self._supervisor.spawn(redeliver, "resending unacknowledged events")
        self._supervisor.watch(self.bus.start(), "the broker connection loop")
        if self._sources.names:
            # Resolved before the socket opens, so the first datagrams find the names' addresses.
            await self._sources.refresh()
            refresh = self._settings.allowed_sources_refresh
            resolving = every(
                refresh, self._sources.refresh, what="resolving ingest.allowed_sources"
            )
            self._supervisor.spawn(resolving, "resolving ingest.allowed_sources")
        udp = self._settings.udp
        try:
            self._listener = listen(
                udp.host,
                udp.port,
                udp.receive_buffer_bytes,
                self._on_datagrams,
                on_error=lambda _: self._announce_udp(UDP_ERROR),
            )
        except OSError:
            if self._settings.udp_status_topic is not None:
                # Before giving up, so the consumers of Butler's topic hear why alerts stopped.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._publish_udp_status(UDP_ERROR), self.bus.settings.connect_timeout
                    )
            await self.stop()
            raise
        self._announce_udp(UDP_START)
        if self._gates:
            self._gate_check = asyncio.create_task(self._check_gates(), name="ingest: CP check")

    def _announce_udp(self, state: bytes) -> None:
        """Butler's taskFailureServerStatusTopic notice, once the broker is connected."""
        if self._settings.udp_status_topic is None:
            return
        task = asyncio.create_task(self._publish_udp_status(state), name="ingest: UDP status")
        self._udp_notices.add(task)
        task.add_done_callback(self._udp_notices.discard)

    async def _publish_udp_status(self, state: bytes) -> None:
        topic = self._settings.udp_status_topic
        assert topic is not None
        await self.bus.wait_connected()
        try:
            await self.bus.publish(topic, state, qos=1)
        except BusError as error:
            log.warning("could not publish %r on %s: %s", state.decode(), topic, error)

    async def _check_gates(self) -> None:
        """Warn about each gating custom property the QRS does not define (gates.py)."""
        url = self._qrs_settings.url
        try:
            definitions = await self._qrs.custom_property_definitions()
        except QrsError as error:
            log.info("the custom properties herald.yaml names were not checked: %s", error)
            return
        gates.warn(gates.missing(self._gates, definitions), url)

    @property
    def db(self) -> Database:
        """The state database (inbox, outbox, duplicates), e.g. for a test that fills its disk."""
        return self._db

    @property
    def udp_port(self) -> int:
        assert self._listener is not None
        return self._listener.port

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        for notice in list(self._udp_notices):
            notice.cancel()
        if self._gate_check is not None:
            self._gate_check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gate_check
        # What is cancelled is still in the inbox: enriched again at the next start.
        await self._enrichers.stop(STOP_GRACE, what="datagrams")
        await self.sweep.release()
        if self.bus.connected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outbox.wait_empty(), 3.0)
        await self.bus.close()
        await self._supervisor.stop()
        await self._qrs.close()
        self._db.close()

    def readiness(self) -> tuple[bool, str]:
        alive, why = self._supervisor.health()
        if not alive:
            return False, why
        if self._listener is None:
            return False, "not listening yet"
        if self._unstored.problem is not None:
            return False, (
                f"cannot store datagrams in {self._db.path} ({self._unstored.problem}): "
                f"{len(self._unstored)} held in memory, {self._unstored.lost} lost"
            )
        if not self.bus.connected:
            return False, f"not connected to the broker ({self.outbox.depth()} events waiting)"
        return True, "listening, connected"

    def liveness(self) -> tuple[bool, str]:
        return self._supervisor.health()

    async def _on_message(self, message: Message) -> None:
        """The sweep's lease (``lease.py``), or subscriber services' statuses and
        acknowledgements (``redelivery.py``)."""
        if message.topic == self._lease_topic:
            await self._lease.on_message(message)
        else:
            self.redelivery.handle(message.topic, message.payload)

    # --- receiving -----------------------------------------------------------------------

    def _on_datagrams(self, batch: list[tuple[bytes, Address]]) -> None:
        """Check a batch read from the socket and store what passes, in one commit."""
        now = time.time()
        checked: list[Checked] = []
        for data, source in batch:
            if not self._sources.allows(source):
                self._reject("source", f"from {source}, which is not in ingest.allowed_sources")
                continue
            parsed = self._parse(data)
            if isinstance(parsed, Rejection):
                self._reject(parsed.reason, parsed.detail)
                continue
            checked.append(Checked(data, parsed, now))
        if len(self._unstored):
            self._unstored.hold(checked)  # after the ones already waiting: arrival order
            return
        problem = self._store(checked)
        if problem is not None:
            self._unstored.hold(checked, problem)

    def _store_held(self) -> None:
        if not len(self._unstored):
            return
        held = self._unstored.take()
        try:
            problem = self._store(held)
        except BaseException:
            self._unstored.restore(held, "storing them failed unexpectedly")  # kept, not lost
            raise
        if problem is None:
            self._unstored.stored(len(held))
        else:
            self._unstored.restore(held, problem)

    def _store(self, checked: list[Checked]) -> str | None:
        """Drop duplicates and store the rest in the inbox, in one commit; why not, if it failed."""
        window_start = time.time() - self._settings.duplicate_window
        accepted: list[tuple[Stored, Datagram]] = []
        duplicates: list[Datagram] = []
        over_limit: list[Datagram] = []
        try:
            with self._db.transaction():
                for item in checked:
                    parsed = item.parsed
                    key = seen_key(parsed.outcome, parsed.execution_id)
                    if self._state.seen_recently(key, window_start):
                        duplicates.append(parsed)
                        continue
                    if not self._limit.take():
                        self._retries.add_dead_letter(item.data, self._over_limit_reason())
                        over_limit.append(parsed)
                        continue
                    seq = self._state.accept(key, item.data, item.received_at)
                    accepted.append((Stored(seq, item.data, item.received_at), parsed))
        except sqlite3.Error as error:
            return str(error)
        self._report_over_limit(over_limit)
        for parsed in duplicates:
            self._datagrams["duplicate"].inc()
            log.info(
                "duplicate %s datagram for task %r (execution %s) from %s dropped",
                parsed.outcome,
                parsed.task_name,
                parsed.execution_id,
                parsed.host,
            )
        for stored, parsed in accepted:
            self._datagrams["accepted"].inc()
            if parsed.sanitized:
                log.warning(
                    "datagram for task %r had control characters or over-long fields",
                    parsed.task_name,
                )
            self._queue.put_nowait((stored, parsed))
            self._inbox_gauge.inc()
        return None

    def _over_limit_reason(self) -> str:
        return (
            f"over ingest.max_datagrams_per_minute ({self._limit.per_window} datagrams in "
            f"{WINDOW:g} s): not published"
        )

    def _report_over_limit(self, over_limit: list[Datagram]) -> None:
        if not over_limit:
            return
        self._datagrams["over_limit"].inc(len(over_limit))
        self._retries.dead_lettered(len(over_limit))
        for parsed in over_limit:
            if self._limit.first_in_window(parsed.task_id):
                log.warning(
                    "%s datagram for task %r (execution %s) from %s dead-lettered, not published: "
                    "%s; this window's others for the task are only counted "
                    '(herald_datagrams_total{outcome="over_limit"})',
                    parsed.outcome,
                    parsed.task_name,
                    parsed.execution_id,
                    parsed.host,
                    self._over_limit_reason(),
                )

    def _parse(self, data: bytes) -> Datagram | Rejection:
        udp = self._settings.udp
        return datagrams.parse(
            data, max_field_length=udp.max_field_length, max_datagram_bytes=udp.max_datagram_bytes
        )

    def _reject(self, reason: str, detail: str) -> None:
        """Count every rejection; log at most one line per reason a minute."""
        self._datagrams["rejected"].inc()
        metrics.DATAGRAMS_REJECTED.labels(service=NAME, reason=reason).inc()
        now = time.monotonic()
        last, suppressed = self._rejections.get(reason, (0.0, 0))
        if now - last < REJECTION_LOG_INTERVAL:
            self._rejections[reason] = (last, suppressed + 1)
            return
        more = f" ({suppressed} more since the last report)" if suppressed else ""
        log.warning("rejected a datagram (%s): %s%s", reason, detail, more)
        self._rejections[reason] = (now, 0)

    # --- enriching -----------------------------------------------------------------------

    async def _enrich(self, item: tuple[Stored, Datagram]) -> None:
        stored, parsed = item
        try:
            # One task's events in arrival order: queue.get and Lock are both first come,
            # first served, and nothing awaits between them.
            async with self._task_locks[parsed.task_id]:
                await self._publish(stored, parsed)
        except Exception as error:
            async with self._task_locks[parsed.task_id]:
                done = await self._retries.failed(item, error, self._publish)
            if not done:
                return  # still in the inbox, queued again later
        self._inbox_gauge.dec()

    async def _publish(
        self, stored: Stored, parsed: Datagram, gathered: Gathered | None = None
    ) -> None:
        """Enrich (unless ``gathered`` is given), build the event and store it for publishing."""
        if gathered is None:
            try:
                gathered = await self._enricher.gather(parsed)
            except Exception as error:
                # A bug in enrichment must not hold the alert back: publish what the datagram says.
                log.exception(
                    "enriching the datagram for task %r failed unexpectedly", parsed.task_name
                )
                gathered = Gathered(reasons=[f"enrichment failed unexpectedly: {error!r}"])
        kind = parsed.kind
        if kind is None:  # distribute: the QRS knows how it ended
            kind = kind_of_distribute(gathered)
            if kind is None:
                await self._recheck_distribute_later(stored, parsed, gathered.reasons)
                return
        received_at = datetime.fromtimestamp(stored.received_at, UTC)
        recovers = self._state.recovery_for(parsed.task_id) if kind == "task_succeeded" else None
        event = self._enricher.build(
            parsed, gathered, kind=kind, received_at=received_at, recovers=recovers
        )
        with self._db.transaction():
            self._store_event(event)
            self._state.done(stored.seq)
        metrics.ENRICHMENTS.labels(service=NAME, status=event.enrichment.status).inc()
        metrics.ENRICHMENT_SECONDS.labels(service=NAME).observe(time.time() - stored.received_at)
        if event.enrichment.status == "partial":
            log.warning(
                "%s of task %r published with partial enrichment: %s",
                event.kind,
                event.task.name,
                "; ".join(event.enrichment.reasons),
            )
        else:
            log.info("%s of task %r published", event.kind, event.task.name)

    def _store_event(self, event: events.Event) -> None:
        """Within the caller's transaction: the event into the outbox, kept until every
        subscriber service has acknowledged it, and the task's outcome."""
        topic, payload = topics.topic_of(self._prefix, event), events.encode(event)
        seq = self.outbox.add(topic, payload)
        self.redelivery.track(event.event_id, topic, payload, seq)
        self._state.record_outcome(event)

    async def _recheck_distribute_later(
        self, stored: Stored, parsed: Datagram, reasons: list[str]
    ) -> None:
        age = time.time() - stored.received_at
        if age > self._settings.distribute_recheck_for:
            why = "; ".join(reasons) or "the QRS reported no final status"
            self._retries.dead_letter(
                stored,
                f"distribute task {parsed.task_name!r} reached no final state within "
                f"ingest.distribute_recheck_for ({self._settings.distribute_recheck_for:g} s): "
                f"{why}",
            )
            return
        log.info("distribute task %r is not finished yet; checking again later", parsed.task_name)
        loop = asyncio.get_running_loop()
        loop.call_later(
            self._settings.distribute_recheck_interval, self._queue.put_nowait, (stored, parsed)
        )
        self._inbox_gauge.inc()  # _work decrements once this attempt returns

    def _forget_old_datagrams(self) -> None:
        self._state.forget_seen_before(time.time() - self._settings.duplicate_window)


def configure(document: ConfigDocument) -> IngestConfig:
    problems: list[str] = []
    ingest, qlik = IngestSettings(), QlikSettings()
    try:
        ingest = document.section("ingest", IngestSettings)
    except ConfigError as error:
        problems += error.problems
    try:
        qlik = document.section("qlik", QlikSettings)
    except ConfigError as error:
        problems += error.problems
    if problems:
        raise ConfigError(problems)
    config = IngestConfig(ingest=ingest, qlik=qlik)
    config._custom_property_gates = gates.gating_custom_properties(document.data)
    return config


def preflight(config: IngestConfig, check: Preflight) -> None:
    """What ingest's settings point at: the QRS and its certificates, the time zone, the links,
    the UDP port."""
    qrs = config.qlik.qrs
    if "url" not in ((check.document.data.get("qlik") or {}).get("qrs") or {}):
        check.fail(
            "qlik.qrs.url",
            "not set: ingest asks the QRS about every task (usually https://<central node>:4242)",
        )
    check.encrypted("qlik.qrs.url", qrs.url, "the QRS requests and answers")
    if qrs.url.startswith("https"):
        check.verifies("qlik.qrs.verify", qrs.verify, "the QRS")
        check.certificate_authority("qlik.qrs.ca_cert", qrs.ca_cert)
        check.client_certificate(
            "qlik.qrs.client_cert",
            qrs.client_cert,
            "qlik.qrs.client_key",
            qrs.client_key,
            reveal(qrs.client_key_password),
        )
    for key in ("qmc_url", "hub_url", "app_base_url"):
        check.absolute_url(f"qlik.{key}", getattr(config.qlik, key))
    for index, link in enumerate(config.qlik.generic_links):
        check.absolute_url(f"qlik.generic_links[{index}].url", link.url)
    udp = config.ingest.udp
    check.port_free("ingest.udp.port", udp.host, udp.port, udp=True)


def build(config: IngestConfig, context: Context) -> IngestService:
    return IngestService(config, context.broker)


SERVICE = ServiceSpec(
    name=NAME,
    section="ingest",
    settings=IngestConfig,
    build=build,
    publisher=True,
    configure=configure,
    preflight=preflight,
)
