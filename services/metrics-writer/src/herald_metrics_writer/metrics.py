"""The metrics writer's own Prometheus metrics (``herald_`` prefix, ``service`` label).

The reload metrics (outcomes, last success/failure time, duration) have labels chosen in the
configuration, so they cannot be declared up front like the platform's: a collector exposes
the current :class:`ReloadSeries` store instead. It is registered once, in the default registry.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

INFLUX_WRITES = Counter(
    "herald_influxdb_writes_total",
    "Write requests to InfluxDB by result: ok, transient_error, permanent_error",
    ["service", "result"],
)
INFLUX_POINTS = Counter(
    "herald_influxdb_points_written_total", "Points InfluxDB accepted", ["service"]
)
INFLUX_BUFFERED = Gauge(
    "herald_influxdb_buffered_points", "Points waiting to be written to InfluxDB", ["service"]
)


@dataclass
class _Series:
    outcomes: dict[str, float] = field(default_factory=dict)
    last_success: float | None = None
    last_failure: float | None = None
    # outcome -> (bucket counts, sum, count)
    durations: dict[str, tuple[list[float], float, int]] = field(default_factory=dict)


class ReloadSeries:
    """Reload metrics per label combination, at most ``max_series`` combinations."""

    def __init__(
        self, service: str, labels: Sequence[str], max_series: int, buckets: Sequence[float]
    ) -> None:
        self.service = service
        self.labels = list(labels)
        self.max_series = max_series
        self.buckets = list(buckets)
        self.dropped = 0.0
        self._series: dict[tuple[str, ...], _Series] = {}
        self._lock = threading.Lock()  # /metrics is served from another thread

    def record(
        self, values: Sequence[str], outcome: str, at: float, duration: float | None
    ) -> bool:
        """Count one reload; False when its label combination is beyond the cap (dropped)."""
        key = tuple(values)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                if len(self._series) >= self.max_series:
                    self.dropped += 1
                    return False
                series = self._series[key] = _Series()
            series.outcomes[outcome] = series.outcomes.get(outcome, 0.0) + 1
            if outcome == "succeeded":
                series.last_success = max(at, series.last_success or at)
            elif outcome == "failed":
                series.last_failure = max(at, series.last_failure or at)
            if duration is not None:
                counts, total, count = series.durations.get(
                    outcome, ([0.0] * len(self.buckets), 0.0, 0)
                )
                index = bisect.bisect_left(self.buckets, duration)
                if index < len(counts):
                    counts[index] += 1
                series.durations[outcome] = (counts, total + duration, count + 1)
            return True

    def __len__(self) -> int:
        return len(self._series)

    def collect(self) -> Iterator[Metric]:
        names = ["service", *self.labels]
        outcomes = CounterMetricFamily(
            "herald_reload_outcomes",
            "Reloads by outcome (failed, aborted, succeeded)",
            labels=[*names, "outcome"],
        )
        last_success = GaugeMetricFamily(
            "herald_reload_last_success_timestamp_seconds",
            "When the task last reloaded successfully (Unix time)",
            labels=names,
        )
        last_failure = GaugeMetricFamily(
            "herald_reload_last_failure_timestamp_seconds",
            "When the task last failed (Unix time)",
            labels=names,
        )
        durations = HistogramMetricFamily(
            "herald_reload_duration_seconds",
            "How long reloads ran, by outcome",
            labels=[*names, "outcome"],
        )
        dropped = CounterMetricFamily(
            "herald_reload_series_dropped",
            "Reloads not counted because their label combination was beyond max_series",
            labels=["service"],
        )
        with self._lock:
            for key, series in self._series.items():
                values = [self.service, *key]
                for outcome, count in series.outcomes.items():
                    outcomes.add_metric([*values, outcome], count)
                if series.last_success is not None:
                    last_success.add_metric(values, series.last_success)
                if series.last_failure is not None:
                    last_failure.add_metric(values, series.last_failure)
                for outcome, (counts, total, count) in series.durations.items():
                    cumulative, running = [], 0.0
                    for bound, bucket in zip(self.buckets, counts, strict=True):
                        running += bucket
                        cumulative.append((_bound(bound), running))
                    cumulative.append(("+Inf", float(count)))
                    durations.add_metric([*values, outcome], cumulative, total)
            dropped.add_metric([self.service], self.dropped)
        yield from (outcomes, last_success, last_failure, durations, dropped)


def _bound(value: float) -> str:
    return repr(float(value))


class _ReloadCollector(Collector):
    """Exposes the running service's store (one metrics-writer per process)."""

    def __init__(self) -> None:
        self.store: ReloadSeries | None = None

    def collect(self) -> Iterator[Metric]:
        store = self.store
        if store is not None:
            yield from store.collect()


RELOADS = _ReloadCollector()
REGISTRY.register(RELOADS)
