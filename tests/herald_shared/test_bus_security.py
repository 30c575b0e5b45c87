"""The bus over TLS with a user name and password, against a Mosquitto that requires both."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from herald_shared.bus import Bus, Message
from herald_testkit.fixtures import broker_settings_for
from herald_testkit.mosquitto import Mosquitto, with_accounts
from herald_testkit.services import connected
from herald_testkit.tls import Certificates, make_certificates

PASSWORD = "s3cret-Passw0rd-for-tests"


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path / "certs")


@pytest.fixture
def secure_broker(tmp_path: Path, certificates: Certificates) -> Iterator[Mosquitto]:
    extra = "\n".join(
        [
            f"cafile {certificates.ca}",
            f"certfile {certificates.cert}",
            f"keyfile {certificates.key}",
            "allow_anonymous false",
        ]
    )
    accounts = {"herald": PASSWORD}
    with with_accounts(tmp_path / "mosquitto", accounts, extra=extra) as broker:
        yield broker


async def test_tls_and_a_password_carry_events(
    secure_broker: Mosquitto, certificates: Certificates, topic_prefix: str
) -> None:
    settings = broker_settings_for(
        secure_broker,
        topic_prefix,
        username="herald",
        password=PASSWORD,
        tls={"enabled": True, "ca_file": str(certificates.ca)},
    )
    received: list[bytes] = []

    async def handler(message: Message) -> None:
        received.append(message.payload)

    subscriber = Bus(settings, "secure", subscriptions=[f"{topic_prefix}/x"], handler=handler)
    sender = Bus(settings, "sender")
    async with connected(subscriber), connected(sender):
        await sender.publish(f"{topic_prefix}/x", b"over tls")
        async with asyncio.timeout(10):
            while not received:
                await asyncio.sleep(0.02)
    assert received == [b"over tls"]


@pytest.mark.parametrize("problem", ["wrong password", "unknown certificate authority"])
async def test_a_refused_connection_is_logged_without_the_password(
    secure_broker: Mosquitto,
    certificates: Certificates,
    topic_prefix: str,
    caplog: pytest.LogCaptureFixture,
    problem: str,
) -> None:
    tls: dict[str, object] = {"enabled": True, "ca_file": str(certificates.ca)}
    password = PASSWORD
    if problem == "wrong password":
        password = "not-the-password-at-all"
    else:
        tls = {"enabled": True}  # the system trust store does not know the test CA
    settings = broker_settings_for(
        secure_broker, topic_prefix, username="herald", password=password, tls=tls
    )
    bus = Bus(settings, "refused")
    with caplog.at_level(logging.WARNING, logger="herald_shared.bus"):
        bus.start()
        async with asyncio.timeout(10):
            while not any("cannot connect" in r.getMessage() for r in caplog.records):
                await asyncio.sleep(0.05)
        await bus.close()
    assert not bus.connected
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert password not in logged
    assert PASSWORD not in logged
