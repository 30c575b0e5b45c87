"""The bus against a real Mosquitto: acknowledgement after handling, persistent sessions,
reconnection, shared subscriptions."""

from __future__ import annotations

import asyncio

import pytest

from herald_shared import topics
from herald_shared.bus import Bus, BusError, Message
from herald_shared.settings import BrokerSettings
from herald_testkit.fixtures import broker_settings_for
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer, publisher
from herald_testkit.processes import Child
from herald_testkit.services import connected


async def _bus_probe(broker: Mosquitto, prefix: str, mode: str, protocol: str = "5") -> Child:
    child = await Child.python(
        "-m",
        "herald_testkit.bus_client",
        "--host",
        broker.host,
        "--port",
        str(broker.port),
        "--prefix",
        prefix,
        "--topic",
        f"{prefix}/probe",
        "--mode",
        mode,
        "--protocol",
        protocol,
    )
    try:
        await child.wait_for_line(lambda line: line == "connected")
    except BaseException:
        await child.close()
        raise
    return child


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_message_not_acknowledged_before_a_sigkill_is_delivered_again(
    mosquitto: Mosquitto, topic_prefix: str, protocol: str
) -> None:
    holder = await _bus_probe(mosquitto, topic_prefix, "hold", protocol)
    try:
        async with publisher(mosquitto.host, mosquitto.port) as client:
            await client.publish(f"{topic_prefix}/probe", b"alert-1", qos=1)
            await holder.wait_for_line(lambda line: line == "alert-1")
            holder.kill()
            await holder.wait()

            acker = await _bus_probe(mosquitto, topic_prefix, "ack", protocol)
            try:
                await acker.wait_for_line(lambda line: line == "alert-1")
                await client.publish(f"{topic_prefix}/probe", b"alert-2", qos=1)
                await acker.wait_for_line(lambda line: line == "alert-2")
            finally:
                acker.terminate()
                await acker.wait()

            # Acknowledged now: a third session gets only what is new.
            third = await _bus_probe(mosquitto, topic_prefix, "ack", protocol)
            try:
                await client.publish(f"{topic_prefix}/probe", b"alert-3", qos=1)
                await third.wait_for_line(lambda line: line == "alert-3")
                assert third.lines == ["connected", "alert-3"]
            finally:
                await third.close()
    finally:
        await holder.close()


async def _publish_all(bus: Bus, topic: str, payloads: list[bytes]) -> None:
    """Publish each payload until the broker acknowledges it, whatever happens to the broker."""
    for payload in payloads:
        while True:
            try:
                await bus.publish(topic, payload)
                break
            except BusError:
                await asyncio.sleep(0.05)


async def test_a_broker_restart_in_the_middle_of_a_stream_loses_nothing(
    private_mosquitto: Mosquitto, topic_prefix: str
) -> None:
    settings = broker_settings_for(private_mosquitto, topic_prefix)
    topic = f"{topic_prefix}/stream"
    received: list[bytes] = []

    async def handler(message: Message) -> None:
        received.append(message.payload)

    sent = [f"event-{n}".encode() for n in range(300)]
    subscriber = Bus(settings, "subscriber", subscriptions=[topic], handler=handler)
    sender = Bus(settings, "sender")
    async with connected(subscriber), connected(sender):
        publishing = asyncio.create_task(_publish_all(sender, topic, sent))
        while len(received) < 100:
            await asyncio.sleep(0.01)
        private_mosquitto.restart(downtime=0.5)
        await asyncio.wait_for(publishing, 60)
        async with asyncio.timeout(30):
            while set(received) != set(sent):
                await asyncio.sleep(0.05)
    assert set(received) == set(sent)


async def test_messages_published_while_a_subscriber_is_away_wait_for_it(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    settings = broker_settings_for(mosquitto, topic_prefix)
    topic = f"{topic_prefix}/offline"
    received: list[bytes] = []

    async def handler(message: Message) -> None:
        received.append(message.payload)

    async with connected(Bus(settings, "away", subscriptions=[topic], handler=handler)):
        pass  # the persistent session now exists
    async with connected(Bus(settings, "sender")) as sender:
        await _publish_all(sender, topic, [b"while-away-1", b"while-away-2"])
    async with connected(Bus(settings, "away", subscriptions=[topic], handler=handler)):
        async with asyncio.timeout(10):
            while len(received) < 2:
                await asyncio.sleep(0.02)
    assert received == [b"while-away-1", b"while-away-2"]


async def test_two_replicas_in_a_shared_subscription_split_the_stream(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}/shared"
    subscription = f"$share/herald-replicated/{topic}"
    by_replica: dict[str, list[bytes]] = {"a": [], "b": []}

    def bus_for(instance: str) -> Bus:
        async def handler(message: Message) -> None:
            by_replica[instance].append(message.payload)

        settings = broker_settings_for(mosquitto, topic_prefix, instance=instance)
        return Bus(settings, "replicated", subscriptions=[subscription], handler=handler)

    sent = [f"event-{n}".encode() for n in range(100)]
    async with connected(bus_for("a")), connected(bus_for("b")):
        async with connected(Bus(broker_settings_for(mosquitto, topic_prefix), "sender")) as sender:
            await _publish_all(sender, topic, sent)
        async with asyncio.timeout(10):
            while len(by_replica["a"]) + len(by_replica["b"]) < len(sent):
                await asyncio.sleep(0.02)
    everything = by_replica["a"] + by_replica["b"]
    assert sorted(everything) == sorted(sent)  # none lost, none doubled
    assert by_replica["a"]
    assert by_replica["b"]


async def test_status_is_retained_online_and_offline_after_a_clean_stop(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings
) -> None:
    status = topics.status_topic(topic_prefix, "status-probe", broker_settings.instance)
    async with Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/status/#") as seen:
        async with connected(Bus(broker_settings, "status-probe")):
            await seen.wait_for(lambda s: any(m.payload == b"online" for m in s))
        await seen.wait_for(lambda s: s[-1].payload == b"offline")
        assert [m.topic for m in seen.seen] == [status, status]
    async with Observer(mosquitto.host, mosquitto.port, status) as late:
        retained = await late.wait_for(lambda s: len(s) == 1)
        assert retained[0].payload == b"offline"
        assert retained[0].retain


async def test_the_will_says_offline_when_a_process_dies(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    status = topics.status_topic(topic_prefix, "bus-probe", "probe")
    async with Observer(mosquitto.host, mosquitto.port, status) as seen:
        child = await _bus_probe(mosquitto, topic_prefix, "ack")
        await seen.wait_for(lambda s: bool(s) and s[-1].payload == b"online")
        child.kill()
        await child.wait()
        # Mosquitto sends the will once it notices the dead connection (at once on a reset).
        await seen.wait_for(lambda s: s[-1].payload == b"offline", within=60)


async def test_a_failing_handler_leaves_its_message_for_redelivery(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    settings = broker_settings_for(mosquitto, topic_prefix)
    topic = f"{topic_prefix}/flaky"
    attempts: list[bytes] = []

    async def handler(message: Message) -> None:
        attempts.append(message.payload)
        if len(attempts) == 1:
            raise OSError("disk full")

    async with connected(Bus(settings, "flaky", subscriptions=[topic], handler=handler)):
        async with connected(Bus(settings, "sender")) as sender:
            await sender.publish(topic, b"important")
        async with asyncio.timeout(15):
            while len(attempts) < 2:
                await asyncio.sleep(0.02)
    assert attempts[:2] == [b"important", b"important"]


async def test_publishing_without_a_broker_fails_clearly(topic_prefix: str) -> None:
    from herald_testkit.ports import free_port

    settings = BrokerSettings(
        host="127.0.0.1", port=free_port(), topic_prefix=topic_prefix, instance="x"
    )
    bus = Bus(settings, "nowhere")
    bus.start()
    with pytest.raises(BusError, match="not connected"):
        await bus.publish(f"{topic_prefix}/x", b"lost?")
    await bus.close()
