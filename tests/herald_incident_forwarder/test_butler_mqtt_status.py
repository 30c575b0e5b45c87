"""Butler's connect notice on ``qliksense/butler/mqtt/status`` (``butler_mqtt.status_topic``),
against a real Mosquitto: published when the Butler-MQTT connection is made, and again each time
it is made anew, as Butler's mqtt.js client does on every ``connect``."""

from __future__ import annotations

from pathlib import Path

import aiomqtt

from herald_incident_forwarder.service import build
from herald_incident_forwarder.settings import IncidentForwarderSettings
from herald_shared.settings import BrokerSettings
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer
from herald_testkit.subscribers import ServiceUnderTest

_service = ServiceUnderTest(build, "incident-forwarder")


async def test_the_butler_mqtt_connection_announces_itself_on_every_connect(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    topic = f"{broker_settings.topic_prefix}/butler/mqtt/status"
    settings = IncidentForwarderSettings.model_validate(
        {"state_dir": tmp_path, "butler_mqtt": {"enabled": True, "status_topic": topic}}
    )
    client_id = f"herald-incident-forwarder-butler-mqtt-{broker_settings.instance}"
    notice = (
        f"Connected to MQTT broker {mosquitto.host}:{mosquitto.port} with client ID {client_id}"
    )
    async with (
        Observer(mosquitto.host, mosquitto.port, topic) as seen,
        _service.running(settings, broker_settings),
    ):
        await seen.wait_for(lambda s: len(s) == 1)
        # Another client with the same id takes the connection over; Herald's comes back.
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier=client_id):
            pass
        await seen.wait_for(lambda s: len(s) == 2)
    assert [(m.payload.decode(), m.retain) for m in seen.seen] == [(notice, False)] * 2
