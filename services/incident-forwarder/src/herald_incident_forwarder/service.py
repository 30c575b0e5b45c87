"""The incident forwarder: New Relic, Signl4, outgoing webhooks and Butler's MQTT topics."""

from __future__ import annotations

from pathlib import Path

from herald_incident_forwarder.destinations import butler_mqtt, new_relic, signl4, webhooks
from herald_incident_forwarder.settings import IncidentForwarderSettings
from herald_shared import logs
from herald_shared.config import secret_values
from herald_shared.delivery import destination
from herald_shared.runtime import Context, ServiceSpec
from herald_shared.subscriber import SubscriberService

NAME = "incident-forwarder"

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


SERVICE = ServiceSpec(
    name=NAME, section="incident_forwarder", settings=IncidentForwarderSettings, build=build
)
