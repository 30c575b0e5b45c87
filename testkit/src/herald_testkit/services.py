"""Running a Herald service, or a bare bus, inside a test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Protocol, TypeVar

from herald_shared.bus import Bus


class _Service(Protocol):
    bus: Bus

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


S = TypeVar("S", bound=_Service)


@contextlib.asynccontextmanager
async def started(service: S) -> AsyncIterator[S]:
    """Start ``service``, wait for its broker connection, and stop it gracefully afterwards."""
    await service.start()
    await asyncio.wait_for(service.bus.wait_connected(), 10)
    try:
        yield service
    finally:
        await service.stop()


@contextlib.asynccontextmanager
async def connected(bus: Bus) -> AsyncIterator[Bus]:
    """Start ``bus``, wait for its broker connection, and close it afterwards."""
    bus.start()
    await asyncio.wait_for(bus.wait_connected(), 10)
    try:
        yield bus
    finally:
        await bus.close()
