"""The incident forwarder: New Relic, Signl4, outgoing webhooks and Butler's MQTT topics."""

from __future__ import annotations

from pathlib import Path

from herald_incident_forwarder.destinations import butler_mqtt, new_relic, signl4, webhooks
from herald_incident_forwarder.settings import IncidentForwarderSettings
from herald_shared import logs
from herald_shared.config import reveal, secret_values
from herald_shared.delivery import destination
from herald_shared.preflight import Preflight, tls_files
from herald_shared.runtime import Context, ServiceSpec
from herald_shared.subscriber import SubscriberService

NAME = "incident-forwarder"
SECTION = "incident_forwarder"

#: The destination modules, in the order their destinations are built.
DESTINATIONS: tuple[destination.DestinationModule, ...] = (new_relic, signl4, webhooks, butler_mqtt)


def build(settings: IncidentForwarderSettings, context: Context) -> SubscriberService:
    # `herald run` registers every secret already; a service built any other way (embedded,
    # tests) gets the same last line of defence.
    logs.REDACTOR.add(secret_values(settings))
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


def preflight(settings: IncidentForwarderSettings, check: Preflight) -> None:
    """The endpoints' URLs (those that carry a token are never shown) and the TLS files."""
    new_relic = settings.new_relic
    check.absolute_url(f"{SECTION}.new_relic.event_url", new_relic.event_url)
    check.absolute_url(f"{SECTION}.new_relic.log_url", new_relic.log_url)
    if settings.signl4.enabled:
        check.absolute_url(f"{SECTION}.signl4.url", reveal(settings.signl4.url), secret=True)
        check.encrypted(f"{SECTION}.signl4.url", reveal(settings.signl4.url), "alerts")
    for index, webhook in enumerate(settings.webhooks):
        where = f"{SECTION}.webhooks[{index}]"
        check.absolute_url(f"{where}.url", reveal(webhook.url), secret=True)
        check.encrypted(f"{where}.url", reveal(webhook.url), "alerts")
        check.certificate_authority(f"{where}.ca_file", webhook.ca_file)
    broker = settings.butler_mqtt.broker
    if settings.butler_mqtt.enabled and not isinstance(broker, str):
        tls_files(check, f"{SECTION}.butler_mqtt.broker.tls", broker.tls)


SERVICE = ServiceSpec(
    name=NAME,
    section=SECTION,
    settings=IncidentForwarderSettings,
    build=build,
    preflight=preflight,
)
