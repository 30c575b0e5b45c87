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

from herald_shared import config, sendtest, topics
from herald_shared.bus import Bus, Message, PublishRefused
from herald_shared.settings import BrokerSettings
from herald_testkit.mosquitto import ShippedMosquitto
from herald_testkit.services import connected
from herald_testkit.tls import Certificates, make_certificates

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
TLS_EXAMPLE = DEPLOY.parent / "config" / "broker-tls.yaml"
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
    async with connected(
        Bus(settings(shipped, "herald-ingest", uuid.uuid4().hex[:8]), "ingest")
    ) as bus:
        yield bus


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
    operator = Bus(
        settings(shipped, "herald-operator", uuid.uuid4().hex[:8]), "silence", ephemeral=True
    )
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


async def test_the_documented_broker_tls_section_carries_events_over_the_tls_listener(
    shipped: ShippedMosquitto, certificates: Certificates
) -> None:
    # The example as written, with only what differs here: this machine's host, port and CA.
    document = config.load(
        TLS_EXAMPLE,
        environ={
            "HERALD_BROKER__HOST": "localhost",
            "HERALD_BROKER__PORT": str(shipped.ports[8883]),
            "HERALD_BROKER__TLS__CA_FILE": str(certificates.ca),
            "HERALD_BROKER__USERNAME": "herald-emailer",
            "HERALD_BROKER__PASSWORD": PASSWORD,
        },
    )
    tls = document.section("broker", BrokerSettings)
    assert tls.tls.enabled
    assert tls.tls.verify
    received: list[bytes] = []

    async def handle(message: Message) -> None:
        received.append(message.payload)

    emailer = Bus(
        tls.model_copy(update={"topic_prefix": PREFIX, "instance": uuid.uuid4().hex[:8]}),
        "emailer",
        subscriptions=[topics.events_filter(PREFIX)],
        handler=handle,
    )
    async with (
        connected(emailer),
        connected(
            Bus(settings(shipped, "herald-ingest", uuid.uuid4().hex[:8]), "ingest")
        ) as ingest,
    ):
        await publish_events(ingest, ["over-tls"])
        async with asyncio.timeout(20):
            while received != [b"over-tls"]:
                await asyncio.sleep(0.05)


class Reader:
    """A send-test connection (account herald-operator), recording what it reads."""

    def __init__(self, broker: ShippedMosquitto, instance: str) -> None:
        self.seen: dict[str, bytes] = {}
        self.bus = sendtest.connection(settings(broker, "herald-operator", instance), self._read)

    async def _read(self, message: Message) -> None:
        self.seen[message.topic] = message.payload

    async def wait_for(self, topic: str) -> bytes:
        async with asyncio.timeout(20):
            while topic not in self.seen:
                await asyncio.sleep(0.05)
        return self.seen[topic]


async def test_send_test_runs_side_by_side_and_reads_what_services_may_announce(
    shipped: ShippedMosquitto,
) -> None:
    instance = uuid.uuid4().hex[:8]
    announcement = topics.destinations_topic(PREFIX, "emailer", instance)
    service = Bus(
        settings(shipped, "herald-emailer", instance),
        "emailer",
        retained=[(announcement, b'["email-failed"]')],
    )
    service.start()
    readers = [Reader(shipped, "ops-laptop"), Reader(shipped, "ops-laptop")]  # the same user twice
    try:
        await asyncio.wait_for(service.wait_connected(), 10)
        # A test alert's progress is the service's to publish (MQTT 5: a denial would raise).
        await service.publish(topics.pending_topic(PREFIX, "emailer"), b"{}")
        for reader in readers:
            reader.bus.start()
        for reader in readers:
            assert await reader.wait_for(announcement) == b'["email-failed"]'
            assert reader.bus.connected
        # A clean stop clears the list, so nobody waits for a service that is gone.
        await service.close()
        async with asyncio.timeout(20):
            while readers[0].seen[announcement] != b"":
                await asyncio.sleep(0.05)
    finally:
        for reader in readers:
            await reader.bus.close()
        await service.close()
    taken_over = [
        line
        for line in shipped.log_file.read_text().splitlines()
        if "herald-send-test-ops-laptop" in line and "already connected" in line
    ]
    assert taken_over == []


async def test_ingest_hears_a_subscribers_status_and_acknowledgements_under_the_shipped_acl(
    shipped: ShippedMosquitto,
) -> None:
    heard: list[tuple[str, bytes]] = []

    async def hear(message: Message) -> None:
        heard.append((message.topic, message.payload))

    instance = uuid.uuid4().hex[:8]
    ingest = Bus(
        settings(shipped, "herald-ingest", instance),
        "ingest",
        subscriptions=[topics.status_filter(PREFIX), topics.acks_filter(PREFIX)],
        handler=hear,
    )
    ingest.start()
    emailer = await started(Emailer(shipped, instance))
    acks = topics.acks_topic(PREFIX, "emailer", instance)
    try:
        await asyncio.wait_for(ingest.wait_connected(), 10)
        await emailer.bus.publish(acks, b'["an-event-id"]')  # refused (MQTT 5) if the ACL denies
        async with asyncio.timeout(20):
            while (acks, b'["an-event-id"]') not in heard:
                await asyncio.sleep(0.05)
    finally:
        await emailer.bus.close()
        await ingest.close()
    assert (topics.status_topic(PREFIX, "emailer", instance), b"online") in heard


async def test_the_operator_asks_for_a_replay_and_the_service_answers_under_the_shipped_acl(
    shipped: ShippedMosquitto, ingest: Bus
) -> None:
    instance = uuid.uuid4().hex[:8]
    asked = topics.replay_topic(PREFIX, "emailer")
    answer = topics.replayed_topic(PREFIX, "emailer", instance)
    heard: list[tuple[str, bytes]] = []

    async def hear(message: Message) -> None:
        heard.append((message.topic, message.payload))

    async def heard_on(topic: str) -> None:
        async with asyncio.timeout(20):
            while (topic, b"{}") not in heard:
                await asyncio.sleep(0.05)

    operator = Bus(
        settings(shipped, "herald-operator", uuid.uuid4().hex[:8]),
        "replay",
        subscriptions=[topics.replayed_filter(PREFIX)],
        handler=hear,
        ephemeral=True,
    )
    emailer = Bus(
        settings(shipped, "herald-emailer", instance),
        "emailer",
        subscriptions=[asked],
        handler=hear,
    )
    async with connected(operator), connected(emailer):
        await operator.publish(asked, b"{}")
        await heard_on(asked)
        await emailer.publish(answer, b"{}")  # refused (MQTT 5) if the ACL denies
        await heard_on(answer)
        with pytest.raises(PublishRefused, match="Not authorized"):
            await ingest.publish(asked, b"{}")
