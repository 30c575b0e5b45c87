"""The incident forwarder: New Relic, Signl4, outgoing webhooks and Butler's MQTT topics."""

from __future__ import annotations

from pathlib import Path

from herald_incident_forwarder.butler_mqtt import ButlerMqttDestination
from herald_incident_forwarder.new_relic import NewRelicEventDestination, NewRelicLogDestination
from herald_incident_forwarder.settings import IncidentForwarderSettings
from herald_incident_forwarder.signl4 import Signl4Destination
from herald_incident_forwarder.webhooks import WebhookDestination
from herald_shared import logs
from herald_shared.config import secret_values
from herald_shared.delivery.destination import Destination
from herald_shared.runtime import Context, ServiceSpec
from herald_shared.settings import BrokerSettings
from herald_shared.subscriber import SubscriberService

NAME = "incident-forwarder"


def destinations(settings: IncidentForwarderSettings, broker: BrokerSettings) -> list[Destination]:
    """One destination per enabled integration (and per webhook)."""
    built: list[Destination] = []
    new_relic = settings.new_relic
    if new_relic.event.enabled:
        built.append(NewRelicEventDestination(new_relic))
    if new_relic.log.enabled:
        built.append(NewRelicLogDestination(new_relic))
    if settings.signl4.enabled:
        built.append(Signl4Destination(settings.signl4))
    built += [WebhookDestination(webhook) for webhook in settings.webhooks]
    if settings.butler_mqtt.enabled:
        built.append(ButlerMqttDestination(settings.butler_mqtt, broker))
    return built


def build(settings: IncidentForwarderSettings, context: Context) -> SubscriberService:
    # `herald run` registers every secret already; a service built any other way (embedded,
    # tests) gets the same last line of defence.
    logs.REDACTOR.add(secret_values(settings))
    return SubscriberService(
        name=NAME,
        destinations=destinations(settings, context.broker),
        broker=context.broker,
        delivery=settings.delivery,
        state_dir=Path(settings.state_dir),
    )


SERVICE = ServiceSpec(
    name=NAME, section="incident_forwarder", settings=IncidentForwarderSettings, build=build
)
