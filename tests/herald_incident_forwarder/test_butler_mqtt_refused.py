"""Butler's MQTT topics on a broker whose ACL refuses one of them: a dead letter, never a delivery.

The other broker is a real Mosquitto with a password file and an ACL that lets the account
publish on ``qliksense/task_failure`` only; ``qliksense/task_failure_full`` is refused with
reason code 0x87 (Not authorized, MQTT 5), which no retry cures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from herald_incident_forwarder.service import build
from herald_incident_forwarder.settings import IncidentForwarderSettings
from herald_shared import samples
from herald_shared.settings import BrokerSettings
from herald_testkit.mosquitto import Mosquitto, with_accounts
from herald_testkit.mqtt import Observer
from herald_testkit.subscribers import ServiceUnderTest, publish_events

PASSWORD = "s3cret-butler-account"
_service = ServiceUnderTest(build, "incident-forwarder")


@pytest.fixture
def butler_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    acl = "user butler\ntopic write qliksense/task_failure\n"
    accounts = {"butler": PASSWORD}
    with with_accounts(tmp_path / "butler-mosquitto", accounts, acl=acl) as broker:
        yield broker


async def test_a_refused_butler_topic_is_dead_lettered_with_the_brokers_reason(
    mosquitto: Mosquitto, butler_broker: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    settings = IncidentForwarderSettings.model_validate(
        {
            "state_dir": tmp_path / "state",
            "delivery": {"initial_backoff": 0.05, "max_backoff": 0.2, "shutdown_grace": 2},
            "butler_mqtt": {
                "enabled": True,
                "broker": {
                    "host": butler_broker.host,
                    "port": butler_broker.port,
                    "protocol": "5",
                    "username": "butler",
                    "password": PASSWORD,
                },
            },
        }
    )
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as seen,
        _service.running(settings, broker_settings),
    ):
        await publish_events(mosquitto, prefix, samples.sample_failed())
        await seen.wait_for(
            lambda s: (
                bool(_service.dead_letters(s, prefix))
                and any(r.target == "basic" for r in _service.receipts(s, prefix))
            )
        )
    receipts = _service.receipts(seen.seen, prefix)
    assert [(r.target, r.outcome) for r in receipts if r.outcome == "delivered"] == [
        ("basic", "delivered")
    ]
    [dead] = _service.dead_letters(seen.seen, prefix)
    assert (dead.destination, dead.target) == ("butler-mqtt", "full")
    assert "qliksense/task_failure_full" in dead.reason
    assert "Not authorized" in dead.reason
    assert dead.attempts == 1  # not authorized stays so: no retries
