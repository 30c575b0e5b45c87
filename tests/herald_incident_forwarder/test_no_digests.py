"""Machine destinations keep one delivery per event: a storm that the e-mail and chat defaults
would group reaches a webhook as one call per alert, and their settings have no ``group`` key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from herald_incident_forwarder.service import build
from herald_incident_forwarder.settings import IncidentForwarderSettings
from herald_shared.settings import BrokerSettings
from herald_testkit.http import HttpReceiver
from herald_testkit.made_events import failure
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer
from herald_testkit.subscribers import ServiceUnderTest, publish_events

_service = ServiceUnderTest(build, "incident-forwarder")


async def test_a_storm_reaches_a_webhook_as_one_call_per_alert(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    storm = [failure(n, "Finance") for n in range(1, 41)]  # 40 a minute: past the chat default
    async with HttpReceiver() as receiver:
        settings = IncidentForwarderSettings.model_validate(
            {
                "state_dir": str(tmp_path / "state"),
                "webhooks": [{"name": "ops", "url": receiver.url, "rate_limit": None}],
            }
        )
        async with (
            Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
            _service.running(settings, broker_settings),
        ):
            await publish_events(mosquitto, prefix, *storm)
            await receiver.wait_for(lambda r: len(r.accepted) == len(storm))
            seen = await observer.wait_for(
                lambda s: len(_service.receipts(s, prefix)) >= len(storm)
            )
    receipts = _service.receipts(seen, prefix)
    assert sorted(r.event_id for r in receipts) == sorted(e.event_id for e in storm)
    assert {r.outcome for r in receipts} == {"delivered"}


@pytest.mark.parametrize(
    "section",
    [
        {"webhooks": [{"name": "ops", "url": "https://hooks.example.com/", "group": {}}]},
        {"signl4": {"url": "https://connect.signl4.com/webhook/x", "group": {}}},
    ],
)
def test_machine_destinations_have_no_group_key(section: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="group"):
        IncidentForwarderSettings.model_validate(section)
