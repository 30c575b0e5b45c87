"""An observer on the broker: what a test (or an external consumer) sees on Herald's topics."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiomqtt
import msgspec
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass
class Seen:
    topic: str
    payload: bytes
    retain: bool
    at: float = field(default_factory=time.monotonic)  # when it arrived

    def json(self) -> object:
        return msgspec.json.decode(self.payload)


class Observer:
    """Subscribes to ``topic_filter`` and records every message, in arrival order."""

    def __init__(
        self, host: str, port: int, topic_filter: str, *, persistent: bool = False
    ) -> None:
        """``persistent``: a session the broker keeps (and queues for) while the observer is
        disconnected, e.g. across a broker restart."""
        self.host, self.port, self.topic_filter = host, port, topic_filter
        self._persistent = persistent
        self._identifier = f"observer-{uuid.uuid4().hex[:12]}"
        self.seen: list[Seen] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Observer:
        self._task = asyncio.create_task(self._listen())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _listen(self) -> None:
        # Survives broker restarts: tests restart the broker while observing.
        while True:
            try:
                properties = None
                if self._persistent:
                    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                    properties.SessionExpiryInterval = 600
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    identifier=self._identifier,
                    clean_start=not self._persistent,
                    properties=properties,
                    # Without it, Nagle's algorithm holds small messages back for up to 40 ms.
                    socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                ) as client:
                    await client.subscribe(self.topic_filter, qos=1)
                    self._ready.set()
                    async for message in client.messages:
                        self.seen.append(
                            Seen(message.topic.value, bytes(message.payload), message.retain)
                        )
                        self._changed.set()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    def matching(self, predicate: Callable[[Seen], bool]) -> list[Seen]:
        return [seen for seen in self.seen if predicate(seen)]

    async def wait_for(
        self, predicate: Callable[[list[Seen]], bool], within: float = 20.0
    ) -> list[Seen]:
        """Wait until ``predicate(self.seen)`` holds; raises TimeoutError with what was seen."""
        return await wait_for_seen(self.seen, self._changed, predicate, within)


async def wait_for_seen(
    seen: list[Seen],
    changed: asyncio.Event,
    predicate: Callable[[list[Seen]], bool],
    within: float,
) -> list[Seen]:
    """Wait until ``predicate(seen)`` holds, woken by ``changed`` whenever ``seen`` grows."""

    async def until() -> None:
        while not predicate(seen):
            changed.clear()
            await changed.wait()

    try:
        await asyncio.wait_for(until(), within)
    except TimeoutError:
        topics = [item.topic for item in seen[-20:]]
        raise TimeoutError(f"condition not met within {within} s; last topics: {topics}") from None
    return seen


@contextlib.asynccontextmanager
async def publisher(host: str, port: int) -> AsyncIterator[aiomqtt.Client]:
    """A plain MQTT v5 client for publishing test events."""
    async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        yield client
