"""Butler's ``…_full`` MQTT payloads carry the QRS's task and app objects whole, as Butler's do
(docs/butler-compatibility.md §4e), when the event has them; New Relic keeps the subset, whose
flattened attributes fit its limit. Against a real Mosquitto."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from herald_incident_forwarder import butler
from herald_incident_forwarder.service import build
from herald_incident_forwarder.settings import IncidentForwarderSettings
from herald_shared import samples
from herald_shared.settings import BrokerSettings
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer
from herald_testkit.subscribers import ServiceUnderTest, publish_events

_service = ServiceUnderTest(build, "incident-forwarder")

# Parts of QRS objects Herald's own event fields do not model, which Butler's consumers may read.
TASK_OBJECT: dict[str, Any] = {
    "id": "5d0e7c11-aaaa-4f3e-9d1c-0a1b2c3d4e5f",
    "name": "Reload of Sales",
    "schemaPath": "ReloadTask",
    "privileges": None,
    "operational": {"lastExecutionResult": {"status": 6, "executingNodeName": "sense-node-2"}},
    "app": {"id": "e7af59a0-c243-480d-9571-08727551a66f", "owner": {"userDirectory": "LAB"}},
}
APP_OBJECT: dict[str, Any] = {"id": "e7af59a0-c243-480d-9571-08727551a66f", "schemaPath": "App"}


async def test_the_full_payloads_carry_the_qrs_objects_whole(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    aborted = samples.sample_aborted()
    aborted.task.qrs = TASK_OBJECT
    assert aborted.app is not None
    aborted.app.qrs = APP_OBJECT
    topic = f"{prefix}/butler/task_aborted_full"
    settings = IncidentForwarderSettings.model_validate(
        {
            "state_dir": tmp_path,
            "butler_mqtt": {"enabled": True, "task_aborted_full_topic": topic},
        }
    )
    async with (
        Observer(mosquitto.host, mosquitto.port, topic) as seen,
        _service.running(settings, broker_settings),
    ):
        await publish_events(mosquitto, prefix, aborted)
        await seen.wait_for(lambda s: len(s) == 1)
    payload = json.loads(seen.seen[0].payload)
    assert payload["qs_taskMetadata"] == TASK_OBJECT
    assert payload["qs_appMetadata"] == APP_OBJECT
    assert list(payload)[-2:] == ["qs_appMetadata", "qs_taskMetadata"]  # Butler's order
    # New Relic flattens these into attributes: it keeps the subset Herald's fields give.
    assert "schemaPath" not in butler.task_metadata(aborted)
    assert butler.task_metadata(aborted)["name"] == aborted.task.name
