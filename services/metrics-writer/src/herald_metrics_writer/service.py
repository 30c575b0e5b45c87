"""The metrics writer: reload outcomes into InfluxDB (Butler's schema) and Prometheus."""

from __future__ import annotations

from pathlib import Path

from herald_metrics_writer.destinations import InfluxDestination, PrometheusDestination
from herald_metrics_writer.settings import MetricsWriterSettings
from herald_shared.delivery.destination import Destination
from herald_shared.runtime import Context, ServiceSpec
from herald_shared.subscriber import SubscriberService

NAME = "metrics-writer"


def destinations(settings: MetricsWriterSettings) -> list[Destination]:
    found: list[Destination] = []
    if settings.influxdb.enabled:
        found.append(InfluxDestination(settings.influxdb, NAME, settings.when))
    if settings.prometheus.enabled:
        found.append(PrometheusDestination(settings.prometheus, NAME, settings.when))
    return found


def build(settings: MetricsWriterSettings, context: Context) -> SubscriberService:
    return SubscriberService(
        name=NAME,
        destinations=destinations(settings),
        broker=context.broker,
        delivery=settings.delivery,
        state_dir=Path(settings.state_dir),
    )


SERVICE = ServiceSpec(
    name=NAME, section="metrics_writer", settings=MetricsWriterSettings, build=build
)
