"""Waiting for something a test cannot be told about (a metric, a readiness answer): polled, with
a generous limit, never a timed assertion."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client import REGISTRY


async def wait_until(condition: Callable[[], bool], within: float = 60.0) -> None:
    """Return once ``condition()`` holds; TimeoutError after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - a metric or a check wakes no one
            await asyncio.sleep(0.05)


def sample(name: str, **labels: str) -> float:
    """A metric's current value in this process (0 when it has none yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
