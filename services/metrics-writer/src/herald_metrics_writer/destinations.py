"""The metrics writer's two destinations: InfluxDB (Butler's schema) and Prometheus."""

from __future__ import annotations

from collections.abc import Sequence

from herald_metrics_writer import butler_schema, metrics
from herald_metrics_writer.batch_writer import BatchWriter
from herald_metrics_writer.settings import InfluxDbSettings, PrometheusSettings
from herald_shared.delivery.destination import SINGLE_TARGET, Destination, Target
from herald_shared.events import Event, TaskAborted, TaskFailed, TaskSucceeded
from herald_shared.matcher import MATCH_ALL, When


class InfluxDestination(Destination):
    name = "influxdb"

    def __init__(self, settings: InfluxDbSettings, service: str, when: When = MATCH_ALL) -> None:
        self.when = when
        self._settings = settings
        self._options = butler_schema.SchemaOptions(
            static_tags=settings.static_tags,
            measurement_tags=settings.measurement_tags,
            use_task_tags=settings.use_task_tags,
            use_app_tags=settings.use_app_tags,
            failed_tail_lines=settings.failed_tail_lines,
            success_head_lines=settings.success_head_lines,
            success_tail_lines=settings.success_tail_lines,
        )
        self.writer = BatchWriter(settings, service)

    def targets(self, event: Event) -> Sequence[Target]:
        if isinstance(event, TaskAborted):
            return ()  # Butler never writes aborts
        if isinstance(event, TaskSucceeded) and not self._wants_success(event):
            return ()
        return SINGLE_TARGET

    def _wants_success(self, event: TaskSucceeded) -> bool:
        success = self._settings.success
        if not success.enabled:
            return False
        if success.mode == "all_reload_tasks":
            return True
        wanted = success.custom_property
        return wanted.value in event.task.custom_properties.get(wanted.name, ())

    async def deliver(self, event: Event, target: str) -> str | None:
        point = butler_schema.point(event, self._options)
        assert point is not None, "targets() leaves out what has no measurement"
        await self.writer.write(point.to_line())
        return f"{point.measurement} → {self.writer.describe}"

    async def start(self) -> None:
        await self.writer.start()

    async def close(self) -> None:
        await self.writer.close()


_OUTCOMES = {TaskFailed: "failed", TaskAborted: "aborted", TaskSucceeded: "succeeded"}


class PrometheusDestination(Destination):
    """Counts reloads into the /metrics series as events are delivered (ledgered like any
    destination, so a redelivered event is not counted twice)."""

    name = "prometheus"

    def __init__(self, settings: PrometheusSettings, service: str, when: When = MATCH_ALL) -> None:
        self.when = when
        self._labels = list(settings.labels)
        self.series = metrics.ReloadSeries(
            service, settings.labels, settings.max_series, settings.duration_buckets
        )

    def _label_values(self, event: Event) -> list[str]:
        app = event.app
        values = {
            "task_name": event.task.name,
            "task_id": event.task.id,
            "app_name": app.name if app else "",
            "stream": app.stream.name if app and app.stream else "",
        }
        return [values[label] for label in self._labels]

    async def deliver(self, event: Event, target: str) -> str | None:
        duration_ms = event.execution.duration_ms
        counted = self.series.record(
            self._label_values(event),
            _OUTCOMES[type(event)],
            event.occurred_at.timestamp(),
            None if duration_ms is None else duration_ms / 1000,
        )
        return None if counted else "not counted: max_series reached"

    async def start(self) -> None:
        metrics.RELOADS.store = self.series

    async def close(self) -> None:
        if metrics.RELOADS.store is self.series:
            metrics.RELOADS.store = None
