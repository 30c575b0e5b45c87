"""Prometheus: reload counts and durations in the /metrics series, as events are delivered."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from herald_metrics_writer import metrics
from herald_shared.config import Section
from herald_shared.delivery.destination import Context, Destination
from herald_shared.events import Event, TaskAborted, TaskFailed, TaskSucceeded
from herald_shared.matcher import MATCH_ALL, When

KEY = "prometheus"


PrometheusLabel = Literal["task_name", "task_id", "app_name", "stream"]


def _default_labels() -> list[PrometheusLabel]:
    return ["task_name"]


class PrometheusSettings(Section):
    enabled: bool = True
    # Every label multiplies the series; task_id is unique per task, app_name/stream group them.
    labels: list[PrometheusLabel] = Field(default_factory=_default_labels)
    # Label combinations beyond this are not tracked; herald_reload_series_dropped_total counts them.
    max_series: int = Field(default=1000, ge=1)
    duration_buckets: list[float] = Field(
        default_factory=lambda: [10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0]
    )
    when: When = MATCH_ALL  # metrics_writer.when unless set here

    @model_validator(mode="after")
    def _check(self) -> PrometheusSettings:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels: each label at most once")
        if sorted(self.duration_buckets) != self.duration_buckets or not self.duration_buckets:
            raise ValueError("duration_buckets: ascending seconds, at least one")
        return self


_OUTCOMES = {TaskFailed: "failed", TaskAborted: "aborted", TaskSucceeded: "succeeded"}


class PrometheusDestination(Destination):
    """Counts reloads into the /metrics series as events are delivered (ledgered like any
    destination, so a redelivered event is not counted twice)."""

    name = "prometheus"
    skips_tests = "test alert: not counted in the reload metrics"

    def __init__(self, settings: PrometheusSettings, service: str) -> None:
        self.when = settings.when
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


def destinations(settings: PrometheusSettings, context: Context) -> list[Destination]:
    return [PrometheusDestination(settings, context.service)] if settings.enabled else []
