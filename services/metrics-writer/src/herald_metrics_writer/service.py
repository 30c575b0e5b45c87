"""The metrics writer: reload outcomes into InfluxDB (Butler's schema) and Prometheus."""

from __future__ import annotations

from pathlib import Path

from herald_metrics_writer.destinations import influxdb, prometheus
from herald_metrics_writer.settings import MetricsWriterSettings
from herald_shared.butler_fields import site_zone
from herald_shared.config import ConfigDocument
from herald_shared.delivery import destination
from herald_shared.preflight import Preflight
from herald_shared.runtime import Context, ServiceSpec
from herald_shared.subscriber import SubscriberService

NAME = "metrics-writer"
SECTION = "metrics_writer"

#: The destination modules, in the order their destinations are built.
DESTINATIONS: tuple[destination.DestinationModule, ...] = (influxdb, prometheus)


def build(settings: MetricsWriterSettings, context: Context) -> SubscriberService:
    return SubscriberService(
        name=NAME,
        destinations=destination.build(
            DESTINATIONS, settings, destination.Context(NAME, context.broker)
        ),
        broker=context.broker,
        delivery=settings.delivery,
        state_dir=Path(settings.state_dir),
        time_intervals=context.time_intervals,
    )


def preflight(settings: MetricsWriterSettings, check: Preflight) -> None:
    """InfluxDB's CA file, when it is used."""
    influx = settings.influxdb
    if influx.enabled and influx.url.scheme == "https":
        check.certificate_authority("metrics_writer.influxdb.ca_file", influx.ca_file)


def configure(document: ConfigDocument) -> MetricsWriterSettings:
    """The section, influxdb.timezone defaulting to ``qlik.timezone``."""
    settings = document.section(SECTION, MetricsWriterSettings)
    influxdb = settings.influxdb.model_copy(
        update={"timezone": site_zone(document.data, settings.influxdb.timezone)}
    )
    return settings.model_copy(update={"influxdb": influxdb})


SERVICE = ServiceSpec(
    name=NAME,
    section=SECTION,
    settings=MetricsWriterSettings,
    build=build,
    configure=configure,
    preflight=preflight,
)
