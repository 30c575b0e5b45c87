"""The console through faults and over TLS: it keeps what the broker held for it while it was
stopped (a persistent session), rides out a broker restart, and serves HTTPS with the configured
certificate."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import pytest

from herald_console.service import ConsoleService
from herald_shared import events, topics
from herald_shared.settings import BrokerSettings
from herald_testkit.fixtures import broker_settings_for
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import publisher
from herald_testkit.tls import make_certificates
from herald_testkit.waiting import wait_until

from .conftest import basic, console_settings, url
from .events_for_tests import failure_now


async def publish_event(broker: BrokerSettings, event: events.Event) -> None:
    async with publisher(broker.host, broker.port) as client:
        await client.publish(
            topics.topic_of(broker.topic_prefix, event), events.encode(event), qos=1
        )


async def test_events_published_while_the_console_is_stopped_or_the_broker_restarts_are_kept(
    private_mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    broker = broker_settings_for(private_mosquitto, topic_prefix)
    settings = console_settings(tmp_path / "console")
    first = ConsoleService(settings, broker)
    await first.start()
    await wait_until(lambda: first.bus.connected, within=20)
    before = failure_now(1)
    await publish_event(broker, before)
    await wait_until(lambda: first.store.count() == 1, within=20)
    await first.stop()

    while_stopped = failure_now(2)
    await publish_event(broker, while_stopped)  # the broker keeps it in the console's session
    second = ConsoleService(settings, broker)
    await second.start()
    try:
        await wait_until(lambda: second.store.count() == 2, within=30)
        private_mosquitto.restart(downtime=0.5)
        await wait_until(lambda: second.bus.connected, within=30)
        after = failure_now(3)
        await publish_event(broker, after)
        await wait_until(lambda: second.store.count() == 3, within=30)
        ids = {row.event_id for row in second.store.events(limit=10)}
        assert ids == {before.event_id, while_stopped.event_id, after.event_id}
        assert second.readiness()[0]
    finally:
        await second.stop()


async def test_the_console_serves_https_with_the_configured_certificate(
    broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    certificates = make_certificates(tmp_path / "certs")
    settings = console_settings(
        tmp_path / "console",
        tls={"cert_file": str(certificates.cert), "key_file": str(certificates.key)},
    )
    console = ConsoleService(settings, broker_settings)
    await console.start()
    try:
        trusted = ssl.create_default_context(cafile=str(certificates.ca))
        address = f"https://127.0.0.1:{console.port}/api/v1/session"
        async with (
            aiohttp.ClientSession(headers=basic("olivia", "operator-secret-password")) as session,
            session.get(address, ssl=trusted) as response,
        ):
            assert response.status == 200
            assert (await response.json())["role"] == "operator"
        async with aiohttp.ClientSession() as plain:
            with pytest.raises(aiohttp.ClientError):
                async with plain.get(url(console, "/")):
                    pass
    finally:
        await console.stop()


async def test_a_stop_ends_the_live_streams_of_open_pages(
    broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    console = ConsoleService(console_settings(tmp_path / "console"), broker_settings)
    await console.start()
    stopped = False
    try:
        async with (
            aiohttp.ClientSession(headers=basic("victor", "viewer-secret-password")) as session,
            session.get(url(console, "/live")) as stream,
        ):
            assert stream.headers["Content-Type"] == "text/event-stream"
            assert await stream.content.readline() == b"retry: 2000\n"
            # Well within Kubernetes' 30 s grace: an open page does not hold the stop up.
            await asyncio.wait_for(console.stop(), 20)
            stopped = True
            assert await asyncio.wait_for(stream.content.read(), 20) == b"\n"
    finally:
        if not stopped:
            await console.stop()
