"""Testing a subscriber service in-process: run it, publish events to it, read what it reported.

Every service test needs the same four things; one place keeps them the same everywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Generic, TypeVar

import msgspec

from herald_shared import events, topics
from herald_shared.config import ConfigDocument
from herald_shared.delivery.receipts import DeadLetter, Receipt
from herald_shared.events import Event
from herald_shared.runtime import Context
from herald_shared.settings import BrokerSettings
from herald_shared.subscriber import SubscriberService
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Seen, publisher
from herald_testkit.services import started

S = TypeVar("S")


@contextlib.asynccontextmanager
async def running(
    build: Callable[[S, Context], SubscriberService], settings: S, broker: BrokerSettings
) -> AsyncIterator[SubscriberService]:
    """The service as ``herald run`` builds it, started and connected, stopped afterwards."""
    context = Context(broker=broker, document=ConfigDocument(path=Path("test.yaml"), data={}))
    async with started(build(settings, context)) as service:
        yield service


async def publish_events(broker: Mosquitto, prefix: str, *published: Event) -> None:
    """Publish events as ingest does (QoS 1, on their event topics)."""
    async with publisher(broker.host, broker.port) as client:
        for event in published:
            await client.publish(topics.topic_of(prefix, event), events.encode(event), qos=1)


def receipts(seen: list[Seen], prefix: str, service: str) -> list[Receipt]:
    topic = topics.deliveries_topic(prefix, service)
    return [msgspec.json.decode(s.payload, type=Receipt) for s in seen if s.topic == topic]


def dead_letters(seen: list[Seen], prefix: str, service: str) -> list[DeadLetter]:
    topic = topics.dead_letter_topic(prefix, service)
    return [msgspec.json.decode(s.payload, type=DeadLetter) for s in seen if s.topic == topic]


class ServiceUnderTest(Generic[S]):
    """A test module's service: its build function and name, given once."""

    def __init__(self, build: Callable[[S, Context], SubscriberService], name: str) -> None:
        self._build, self.name = build, name

    def running(
        self, settings: S, broker: BrokerSettings
    ) -> contextlib.AbstractAsyncContextManager[SubscriberService]:
        return running(self._build, settings, broker)

    def receipts(self, seen: list[Seen], prefix: str) -> list[Receipt]:
        return receipts(seen, prefix, self.name)

    def dead_letters(self, seen: list[Seen], prefix: str) -> list[DeadLetter]:
        return dead_letters(seen, prefix, self.name)
