"""The shipped broker configuration keeps each account to its own sessions.

Mosquitto runs deploy/mosquitto/mosquitto.conf as shipped (moved onto loopback ports) with its
ACLs. The read-only consumer account `iot`, connecting with a service's client id, must get
nothing of that service's session and must not push the connected service off; the services'
own accounts still carry events.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from herald_shared import topics
from herald_shared.bus import Bus, Message, PublishRefused
from herald_shared.settings import BrokerSettings
from herald_testkit.mosquitto import ShippedMosquitto
from herald_testkit.tls import Certificates, make_certificates

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
PASSWORD = "s3cret-for-tests"
ACCOUNTS = ("herald-ingest", "herald-emailer", "herald-operator", "iot")
PREFIX = "herald"  # the ACL's topics


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("broker-certs"))


@pytest.fixture(scope="module")
def shipped(
    tmp_path_factory: pytest.TempPathFactory, certificates: Certificates
) -> Iterator[ShippedMosquitto]:
    accounts = dict.fromkeys(ACCOUNTS, PASSWORD)
    workdir = tmp_path_factory.mktemp("shipped-mosquitto")
    with ShippedMosquitto(workdir, DEPLOY, accounts, certificates) as broker:
        yield broker


def settings(broker: ShippedMosquitto, account: str, instance: str) -> BrokerSettings:
    return BrokerSettings.model_validate(
        {
            "host": broker.host,
            "port": broker.port,
            "username": account,
            "password": PASSWORD,
            "topic_prefix": PREFIX,
            "instance": instance,
            "reconnect_min": 0.1,
            "reconnect_max": 0.5,
        }
    )


class Emailer:
    """The emailer's bus (account herald-emailer), recording what it receives."""

    def __init__(self, broker: ShippedMosquitto, instance: str) -> None:
        self.received: list[bytes] = []
        self.bus = Bus(
            settings(broker, "herald-emailer", instance),
            "emailer",
            subscriptions=[topics.events_filter(PREFIX)],
            handler=self._handle,
        )

    async def _handle(self, message: Message) -> None:
        self.received.append(message.payload)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(20):
            while len(self.received) < count:
                await asyncio.sleep(0.05)


@pytest.fixture
async def ingest(shipped: ShippedMosquitto) -> AsyncIterator[Bus]:
    bus = Bus(settings(shipped, "herald-ingest", uuid.uuid4().hex[:8]), "ingest")
    bus.start()
    await asyncio.wait_for(bus.wait_connected(), 10)
    yield bus
    await bus.close()


async def started(emailer: Emailer) -> Emailer:
    emailer.bus.start()
    await asyncio.wait_for(emailer.bus.wait_connected(), 10)
    return emailer


async def publish_events(ingest: Bus, names: list[str]) -> None:
    for name in names:
        await ingest.publish(f"{PREFIX}/v1/events/task_failed/reload/{name}", name.encode())


async def as_iot(
    broker: ShippedMosquitto, port: int, client_id: str, tls: ssl.SSLContext | None, protocol: str
) -> list[bytes] | str:
    """Connect as `iot` resuming ``client_id``'s session: what arrives in 2 s, or the refusal."""
    v5 = protocol == "5"
    properties = None
    if v5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3600
    received: list[bytes] = []
    try:
        async with aiomqtt.Client(
            broker.host,
            port,
            identifier=client_id,
            username="iot",
            password=PASSWORD,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_start=False if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            clean_session=None if v5 else False,
            properties=properties,
            tls_context=tls,
        ) as client:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(collect(client, received), 2)
    except aiomqtt.MqttCodeError as error:
        return str(error)
    return received


async def collect(client: aiomqtt.Client, into: list[bytes]) -> None:
    async for message in client.messages:
        into.append(bytes(message.payload))


def consumer_tls(certificates: Certificates) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificates.ca))


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_iot_with_a_service_client_id_gets_none_of_its_queued_events(
    shipped: ShippedMosquitto, certificates: Certificates, ingest: Bus, protocol: str
) -> None:
    emailer = await started(Emailer(shipped, uuid.uuid4().hex[:8]))
    client_id = emailer.bus.client_id
    await emailer.bus.close()  # away: its persistent session collects the events
    queued = [f"queued-{n}" for n in range(5)]
    await publish_events(ingest, queued)

    # On Herald's listener the consumer account does not exist; on its own listener its client
    # id is its account name, so it resumes nothing.
    refused = await as_iot(shipped, shipped.port, client_id, None, protocol)
    assert isinstance(refused, str)
    assert "not authori" in refused.lower()
    tls = consumer_tls(certificates)
    assert await as_iot(shipped, shipped.ports[8884], client_id, tls, protocol) == []

    emailer = await started(Emailer(shipped, client_id.removeprefix("herald-emailer-")))
    try:
        await emailer.wait_for(len(queued))
    finally:
        await emailer.bus.close()
    assert emailer.received == [name.encode() for name in queued]


async def test_iot_with_a_service_client_id_does_not_push_the_service_off(
    shipped: ShippedMosquitto, certificates: Certificates, ingest: Bus
) -> None:
    emailer = await started(Emailer(shipped, uuid.uuid4().hex[:8]))
    try:
        client_id = emailer.bus.client_id
        tls = consumer_tls(certificates)
        await as_iot(shipped, shipped.port, client_id, None, "5")
        await as_iot(shipped, shipped.ports[8884], client_id, tls, "5")
        await publish_events(ingest, ["after-the-attempt"])
        await emailer.wait_for(1)
        assert emailer.bus.connected
    finally:
        await emailer.bus.close()
    assert emailer.received == [b"after-the-attempt"]
    assert f"Client {client_id} already connected" not in shipped.log_file.read_text()


async def test_a_consumer_reads_events_on_its_own_listener(
    shipped: ShippedMosquitto, certificates: Certificates, ingest: Bus
) -> None:
    async with aiomqtt.Client(
        shipped.host,
        shipped.ports[8884],
        identifier="any-id-it-likes",
        username="iot",
        password=PASSWORD,
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=consumer_tls(certificates),
    ) as client:
        await client.subscribe(topics.events_filter(PREFIX), qos=1)
        await publish_events(ingest, ["for-the-dashboard"])
        async with asyncio.timeout(10):
            message = await anext(aiter(client.messages))
    assert message.payload == b"for-the-dashboard"


async def test_the_operator_adds_silences_the_services_read_them_and_ingest_may_not(
    shipped: ShippedMosquitto, ingest: Bus
) -> None:
    topic = topics.silence_topic(PREFIX, uuid.uuid4().hex[:8])
    operator = Bus(settings(shipped, "herald-operator", uuid.uuid4().hex[:8]), "silence")
    operator.start()
    await asyncio.wait_for(operator.wait_connected(), 10)
    received: list[bytes] = []

    async def take(message: Message) -> None:
        received.append(message.payload)

    emailer = Bus(
        settings(shipped, "herald-emailer", uuid.uuid4().hex[:8]),
        "emailer",
        subscriptions=[topics.silence_topic(PREFIX, "+")],
        handler=take,
    )
    try:
        await operator.publish(topic, b'{"id": "acl"}', retain=True)
        emailer.start()  # after the publish: the retained message is what it reads
        async with asyncio.timeout(20):
            while not received:
                await asyncio.sleep(0.05)
        assert received == [b'{"id": "acl"}']
        with pytest.raises(PublishRefused, match="Not authorized"):
            await ingest.publish(topic, b"", retain=True)
    finally:
        await operator.publish(topic, b"", retain=True)
        await operator.close()
        await emailer.close()
