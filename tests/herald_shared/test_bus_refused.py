"""Publishes the broker refuses are errors, not deliveries.

A real Mosquitto with a password file and an ACL that grants the account `allowed/#` only: a
publish elsewhere gets a PUBACK with reason code 0x87 (Not authorized) under MQTT 5. MQTT 3.1.1
has no reason codes; there Mosquitto acknowledges the denied publish like any other, and the
last test shows what that means.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from herald_shared import metrics
from herald_shared.bus import Bus, Message, PublishRefused
from herald_shared.db import Database
from herald_shared.outbox import Outbox
from herald_shared.settings import BrokerSettings
from herald_testkit.mosquitto import Mosquitto, with_accounts
from herald_testkit.services import connected

PASSWORD = "s3cret-for-refusals"
PREFIX = "allowed"  # the status topics live under the prefix, which the ACL grants


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    accounts = dict.fromkeys(("publisher", "reader"), PASSWORD)
    acl = "user publisher\ntopic readwrite allowed/#\n\nuser reader\ntopic read #\n"
    with with_accounts(tmp_path / "mosquitto", accounts, acl=acl) as broker:
        yield broker


def settings(broker: Mosquitto, account: str, protocol: str = "5") -> BrokerSettings:
    return BrokerSettings.model_validate(
        {
            "host": broker.host,
            "port": broker.port,
            "username": account,
            "password": PASSWORD,
            "protocol": protocol,
            "topic_prefix": PREFIX,
            "instance": uuid.uuid4().hex[:8],
            "reconnect_min": 0.1,
            "reconnect_max": 0.5,
        }
    )


class Reader:
    """An account that may read every topic, recording what arrives."""

    def __init__(self, broker: Mosquitto) -> None:
        self.seen: list[tuple[str, bytes]] = []
        self.bus = Bus(settings(broker, "reader"), "reader", subscriptions=["#"], handler=self._on)

    async def _on(self, message: Message) -> None:
        if "/status/" not in message.topic:
            self.seen.append((message.topic, message.payload))

    async def wait_for(self, topic: str) -> None:
        async with asyncio.timeout(15):
            while topic not in [seen_topic for seen_topic, _ in self.seen]:
                await asyncio.sleep(0.05)


def refusals(service: str) -> float:
    counter = metrics.PUBLISHES_REFUSED.labels(service=service, reason="Not authorized")
    return float(counter._value.get())


async def test_a_publish_the_acl_denies_is_refused_with_the_brokers_reason(
    acl_broker: Mosquitto,
) -> None:
    reader = Reader(acl_broker)
    async with (
        connected(reader.bus),
        connected(Bus(settings(acl_broker, "publisher"), "p5")) as bus,
    ):
        before = refusals("p5")
        with pytest.raises(PublishRefused) as refused:
            await bus.publish("denied/alert", b"not for this account")
        await bus.publish("allowed/alert", b"still connected")
        await reader.wait_for("allowed/alert")
    assert refused.value.reason == "Not authorized"
    assert refused.value.code == 0x87
    assert refused.value.permanent
    assert "denied/alert" in str(refused.value)
    assert refusals("p5") == before + 1
    assert [topic for topic, _ in reader.seen] == ["allowed/alert"]


async def test_under_mqtt_3_1_1_a_denied_publish_looks_delivered(acl_broker: Mosquitto) -> None:
    # No reason code in a 3.1.1 PUBACK: the bus cannot know, so it cannot say (docs/deploy.md).
    reader = Reader(acl_broker)
    publisher = Bus(settings(acl_broker, "publisher", protocol="3.1.1"), "p311")
    async with connected(reader.bus), connected(publisher) as bus:
        await bus.publish("denied/alert", b"lost without a word")
        await bus.publish("allowed/alert", b"after it")
        await reader.wait_for("allowed/alert")
    assert [topic for topic, _ in reader.seen] == ["allowed/alert"]


async def test_the_outbox_keeps_a_refused_message_and_says_why_once(
    acl_broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reader = Reader(acl_broker)
    db = Database(tmp_path / "outbox.db")
    async with (
        connected(reader.bus),
        connected(Bus(settings(acl_broker, "publisher"), "ob")) as bus,
    ):
        outbox = Outbox(db, bus)
        before = refusals("ob")
        with caplog.at_level(logging.ERROR, logger="herald_shared.outbox"):
            publishing = asyncio.create_task(outbox.run())
            outbox.add("denied/v1/events/task_failed/reload/t1", b"refused")
            outbox.add("allowed/v1/events/task_failed/reload/t2", b"accepted")
            try:
                await reader.wait_for("allowed/v1/events/task_failed/reload/t2")
                async with asyncio.timeout(30):
                    while refusals("ob") < before + 2:  # refused, and refused again
                        await asyncio.sleep(0.1)
            finally:
                publishing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publishing
    assert outbox.depth() == 1
    [stored] = db.connection.execute("SELECT topic, payload FROM outbox").fetchall()
    assert stored == ("denied/v1/events/task_failed/reload/t1", b"refused")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors  # not once per attempt
    assert "denied/v1/events/task_failed/reload/t1" in errors[0]
    assert "Not authorized" in errors[0]
    db.close()
