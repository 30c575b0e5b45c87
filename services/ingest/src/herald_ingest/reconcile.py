"""The reconciliation sweep: every run that ended is alerted, even when its datagram never came.

UDP is fire-and-forget: a datagram lost on the network, refused by a firewall, sent while ingest
was down, or never sent by a node whose ``LocalLogConfig.xml`` lacks the appender is an alert
nobody gets. The repository knows every run, so every ``ingest.reconcile.interval`` the sweep asks
the QRS for the execution results that stopped since its checkpoint (minus ``overlap``, for
clock skew between Sense nodes and results written a little late) with the outcomes of
``ingest.reconcile.outcomes``: FinishedFail (8) and Error (11, a distribute task's failure),
Aborted (6), FinishedSuccess (7, so recoveries are not missed). Each one no datagram has reported becomes the event the datagram
would have given: the same deterministic id (``event_id_for(kind, execution id)``), the same
enrichment, ``source: "reconcile"``. Exactly once, whichever path sees a run first:

- the duplicate memory (``seen`` in ``state.py``, keyed ``outcome:execution id``) is checked
  before enriching and again in the commit that stores the event, and that commit marks the run
  as seen, so a datagram that arrives later is dropped as a duplicate, and a datagram that
  arrived while the sweep was enriching wins and the sweep stores nothing for it;
- the checkpoint advances only in the commit that puts the events in the outbox, so a crash or
  a QRS that fails mid-sweep loses nothing: the next sweep starts from the last commit;
- a first start (no checkpoint) looks back ``lookback`` only (at most 24 h).

What it costs the QRS. Its list endpoints have no skip/take, so the sweep pages by narrowing the
stop-time filter, guided by ``executionresult/count``:

1. one count of the whole window (``stopTime gt <since> and stopTime le <until>``); when it is
   0 that is the sweep's only request: an idle site costs one tiny request per interval;
2. at most ``page_size`` results: one ``executionresult/full`` of the window (2 requests);
3. more: the window is halved by time, one count for the first half (the second half's count is
   the difference, for free), recursively, only where a half still holds more than
   ``page_size``; halves with nothing are never fetched, neighbours that fit together are
   fetched together, and a span of a second or less is fetched whatever it holds (runs stopped
   in the same second cannot be told apart by the filter). Evenly spread results cost about
   ``1 + 2 * ceil(n / page_size)`` requests, a burst in one second about ``2 + log2(window in
   seconds)``.

Each page is committed with the checkpoint at its end, so a long catch-up makes progress even if
a later page fails.

With two ingests, one sweeps and the other follows its checkpoint (``lease.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, Final
from zoneinfo import ZoneInfo

from herald_ingest.datagram import Datagram
from herald_ingest.datagram import Outcome as DatagramOutcome
from herald_ingest.enrich import (
    STATUS_TEXT,
    TASK_TYPES,
    Enricher,
    Gathered,
    kind_of_distribute,
    qrs_datetime,
)
from herald_ingest.lease import Claim, Lease
from herald_ingest.qrs import NO_FILE, QrsClient, QrsError
from herald_ingest.settings import MAX_LOOKBACK, ReconcileSettings
from herald_ingest.state import IngestState, seen_key
from herald_shared import metrics
from herald_shared.db import Database
from herald_shared.events import Event, Kind

log = logging.getLogger(__name__)

SOURCE: Final = "reconcile"
# The statuses asked for, per ``ingest.reconcile.outcomes``; Error (11) is how a distribute task
# can fail, so it comes with "failed".
STATUSES: Final[dict[str, tuple[int, ...]]] = {
    "failed": (8, 11),
    "aborted": (6,),
    "succeeded": (7,),
}
# A span this short (milliseconds) is fetched whatever it holds: the filter cannot split it.
SMALLEST_SPAN_MS: Final = 1000
_OUTCOME_OF_STATUS: Final[dict[int, DatagramOutcome]] = {
    8: "failed",
    6: "aborted",
    7: "succeeded",
}
_KIND_OF_OUTCOME: Final[dict[str, Kind]] = {
    "failed": "task_failed",
    "aborted": "task_aborted",
    "succeeded": "task_succeeded",
}


@dataclass(frozen=True)
class Span:
    """Stop times ``start_ms < t <= end_ms`` (Unix milliseconds) and how many results they hold."""

    start_ms: int
    end_ms: int
    count: int

    def filter(self, statuses: str) -> str:
        return (
            f"{statuses} and stopTime gt '{qrs_time(self.start_ms)}' "
            f"and stopTime le '{qrs_time(self.end_ms)}'"
        )


def status_filter(outcomes: list[str]) -> str:
    """``(status eq 8 or status eq 11 or …)`` for the outcomes the sweep asks for."""
    codes = [code for outcome in outcomes for code in STATUSES[outcome]]
    return "(" + " or ".join(f"status eq {code}" for code in codes) + ")"


@dataclass
class Report:
    """What one sweep did: for logs, metrics, tests and the benchmark."""

    requests: int = 0
    pages: list[int] = field(default_factory=list)  # results per executionresult/full answer
    seen: int = 0  # execution results read
    published: int = 0  # events stored that no datagram had reported
    skipped: bool = False  # another ingest holds the sweep's lease (lease.py)


class Sweep:
    """One ingest's sweep; :meth:`run` is what ``every(interval, …)`` calls, :meth:`once` what
    tests and the benchmark call to see what a sweep did."""

    def __init__(
        self,
        settings: ReconcileSettings,
        *,
        qrs: QrsClient,
        enricher: Enricher,
        db: Database,
        state: IngestState,
        store: Callable[[Event], None],
        concurrency: int,
        timezone: str | None,
        lease: Lease | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._lease = lease
        self._statuses = status_filter(list(settings.outcomes))
        self._qrs = qrs
        self._enricher = enricher
        self._db = db
        self._state = state
        self._store = store
        self._slots = asyncio.Semaphore(concurrency)
        self._zone: tzinfo | None = ZoneInfo(timezone) if timezone else None
        self._clock = clock
        self._metrics = {
            name: metrics.RECONCILE_SWEEPS.labels(service="ingest", outcome=name)
            for name in ("completed", "failed", "skipped")
        }
        self._seen_metric = metrics.RECONCILE_EXECUTIONS.labels(service="ingest")
        self._published_metric = metrics.RECONCILE_EVENTS.labels(service="ingest")
        self._lag = metrics.RECONCILE_LAG.labels(service="ingest")

    @property
    def checkpoint(self) -> datetime | None:
        """Up to which stop time the repository's runs have been turned into events."""
        checkpoint = self._state.checkpoint_ms()
        return None if checkpoint is None else datetime.fromtimestamp(checkpoint / 1000, UTC)

    @property
    def follows(self) -> Claim | None:
        """The other ingest's claim while it holds the sweep's lease (this one does not sweep)."""
        return None if self._lease is None else self._lease.held_elsewhere()

    async def run(self) -> None:
        await self.once()

    async def once(self) -> Report:
        """Sweep once; a QRS that fails is logged, counted, and leaves the checkpoint alone."""
        report = Report()
        lease = self._lease
        if lease is not None:
            holder = lease.held_elsewhere()
            if holder is not None:
                self._follow(holder)
                report.skipped = True
                self._metrics["skipped"].inc()
                self._update_lag()
                return report
            await lease.claim(self._state.checkpoint_ms())
        try:
            await self._sweep(report)
        except QrsError as error:
            self._metrics["failed"].inc()
            checkpoint = self._state.checkpoint_ms()
            where = "its first start" if checkpoint is None else qrs_time(checkpoint)
            log.warning(
                "the reconciliation sweep could not ask the QRS (%s); the checkpoint stays at %s "
                "and the next sweep catches up",
                error,
                where,
            )
        else:
            self._metrics["completed"].inc()
        finally:
            self._update_lag()
            if lease is not None:
                await lease.claim(self._state.checkpoint_ms())
        return report

    async def release(self) -> None:
        """On a clean stop: another ingest may sweep from its next interval on."""
        if self._lease is not None:
            await self._lease.release(self._state.checkpoint_ms())

    def _follow(self, holder: Claim) -> None:
        """Keep up with the ingest that sweeps, so that a takeover starts where it left off."""
        mine = self._state.checkpoint_ms()
        if holder.checkpoint_ms is not None and (mine is None or holder.checkpoint_ms > mine):
            with self._db.transaction():
                self._state.set_checkpoint_ms(holder.checkpoint_ms)

    async def _sweep(self, report: Report) -> None:
        until = int(self._clock() * 1000)
        checkpoint = self._state.checkpoint_ms()
        settings = self._settings
        if checkpoint is None:
            since = until - int(settings.lookback * 1000)
        else:
            since = checkpoint - int(settings.overlap * 1000)
        since = max(since, until - int(MAX_LOOKBACK * 1000))
        if since >= until:
            return
        total = await self._count(since, until, report)
        for span in await self._pages(Span(since, until, total), report):
            await self._fetch_and_store(span, report)
        with self._db.transaction():
            self._state.set_checkpoint_ms(until)
        if report.published:
            log.warning(
                "the reconciliation sweep found %s no datagram had reported; alerted now "
                "(check the Sense nodes' LocalLogConfig.xml, the network and ingest.allowed_sources)",
                "1 run" if report.published == 1 else f"{report.published} runs",
            )

    async def _count(self, start_ms: int, end_ms: int, report: Report) -> int:
        report.requests += 1
        return await self._qrs.count_execution_results(
            Span(start_ms, end_ms, 0).filter(self._statuses)
        )

    async def _pages(self, window: Span, report: Report) -> list[Span]:
        """The window split into spans of at most ``page_size`` results (see the docstring)."""
        limit = self._settings.page_size
        pending, leaves = [window], []
        while pending:
            span = pending.pop()
            if span.count <= 0:
                continue
            if span.count <= limit or span.end_ms - span.start_ms <= SMALLEST_SPAN_MS:
                leaves.append(span)
                continue
            middle = span.start_ms + (span.end_ms - span.start_ms) // 2
            left = await self._count(span.start_ms, middle, report)
            pending.append(Span(middle, span.end_ms, max(span.count - left, 0)))
            pending.append(Span(span.start_ms, middle, left))
        return _merged(leaves, limit)

    async def _fetch_and_store(self, span: Span, report: Report) -> None:
        report.requests += 1
        results = await self._qrs.execution_results(
            span.filter(self._statuses), orderby="stopTime asc"
        )
        report.pages.append(len(results))
        report.seen += len(results)
        self._seen_metric.inc(len(results))
        fresh = [(r, d) for r in results if (d := self._datagram_for(r)) and not self._known(d)]
        gathered = await asyncio.gather(*(self._gather(d, r) for r, d in fresh))
        now = self._clock()
        published = 0
        with self._db.transaction():
            for (result, datagram), found in zip(fresh, gathered, strict=True):
                event = self._event(datagram, found, now)
                if event is None or self._known(datagram):
                    continue  # not final, or a datagram reported it while this sweep enriched
                self._store(event)
                self._state.mark_seen(seen_key(datagram.outcome, datagram.execution_id), now)
                metrics.ENRICHMENTS.labels(service="ingest", status=event.enrichment.status).inc()
                published += 1
                log.info(
                    "%s of task %r (execution %s, stopped %s) found by the reconciliation sweep",
                    event.kind,
                    event.task.name,
                    datagram.execution_id,
                    result.get("stopTime"),
                )
            self._state.set_checkpoint_ms(span.end_ms)
        report.published += published
        self._published_metric.inc(published)

    async def _gather(self, datagram: Datagram, result: dict[str, Any]) -> Gathered:
        async with self._slots:
            return await self._enricher.gather(datagram, result)

    def _event(self, datagram: Datagram, gathered: Gathered, now: float) -> Event | None:
        kind: Kind | None = _KIND_OF_OUTCOME.get(datagram.outcome)
        if TASK_TYPES.get((gathered.task or {}).get("taskType", 0)) == "distribute":
            # A distribute task's datagram has no outcome; its kind comes from the status, and
            # its duplicate key says "distribute", whichever path comes first.
            datagram = dataclasses.replace(datagram, outcome="distribute")
            kind = kind_of_distribute(gathered)
        if kind is None:
            return None
        recovers = self._state.recovery_for(datagram.task_id) if kind == "task_succeeded" else None
        return self._enricher.build(
            datagram,
            gathered,
            kind=kind,
            received_at=datetime.fromtimestamp(now, UTC),
            recovers=recovers,
            source=SOURCE,
        )

    def _known(self, datagram: Datagram) -> bool:
        """Reported already, by a datagram or an earlier sweep, under any outcome it could have."""
        since = self._clock() - max(self._settings.lookback, MAX_LOOKBACK)
        return any(
            self._state.seen_recently(seen_key(outcome, datagram.execution_id), since)
            for outcome in (datagram.outcome, "distribute")
        )

    def _datagram_for(self, result: dict[str, Any]) -> Datagram | None:
        """The datagram the scheduler would have sent about this run (what enrichment reads)."""
        status = result.get("status")
        execution_id = str(result.get("executionID") or "").lower()
        task_id = str(result.get("taskID") or "").lower()
        stopped = qrs_datetime(result.get("stopTime"))
        if not isinstance(status, int) or not execution_id or not task_id or stopped is None:
            return None
        app_id = str(result.get("appID") or "").lower()
        status_text = STATUS_TEXT.get(status, str(status))
        return Datagram(
            message_type="/reconcile/",
            # Error (11) alerts only for distribute tasks, whose outcome _event decides.
            outcome=_OUTCOME_OF_STATUS.get(status, "distribute"),
            host=str(result.get("executingNodeName") or ""),
            task_name=f"task {task_id}",  # the QRS's name replaces it when the task is found
            app_name="",
            user="",
            task_id=task_id,
            app_id="" if app_id == NO_FILE else app_id,
            log_timestamp=self._log_timestamp(stopped),
            log_level="INFO",
            execution_id=execution_id,
            message=f"{status_text}: found in the repository by the reconciliation sweep "
            "(no datagram arrived)",
        )

    def _log_timestamp(self, moment: datetime) -> str:
        """The stop time as a Sense node writes its log timestamp (its local time)."""
        local = moment.astimezone(self._zone) if self._zone else moment.astimezone()
        return local.strftime("%Y-%m-%d %H:%M:%S,") + f"{local.microsecond // 1000:03d}"

    def _update_lag(self) -> None:
        checkpoint = self._state.checkpoint_ms()
        if checkpoint is not None:
            self._lag.set(max(self._clock() - checkpoint / 1000, 0.0))


def _merged(spans: list[Span], limit: int) -> list[Span]:
    """Neighbouring spans joined while their results fit in one page."""
    merged: list[Span] = []
    for span in spans:
        last = merged[-1] if merged else None
        if last is not None and last.count + span.count <= limit:
            merged[-1] = Span(last.start_ms, span.end_ms, last.count + span.count)
        else:
            merged.append(span)
    return merged


def qrs_time(unix_ms: int) -> str:
    """``2026-12-02T10:00:00.000Z``: the QRS's date format, which its filters compare as text."""
    moment = datetime.fromtimestamp(unix_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{unix_ms % 1000:03d}Z"
