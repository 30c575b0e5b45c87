"""Waiting for what a user would notice, without timing it: poll a condition, with a generous limit.

The machine the suite runs on is shared, so a test never asserts how long something took; it
waits until the condition holds and fails only when it has not held for ``within`` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client import REGISTRY


async def wait_until(condition: Callable[[], bool], within: float = 60.0) -> None:
    """Return once ``condition()`` holds; TimeoutError if it has not within ``within`` s."""
    try:
        async with asyncio.timeout(within):
            while not condition():  # noqa: ASYNC110 - what it polls has no event to await
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise TimeoutError(f"the condition did not hold within {within:g} s") from None


def sample(name: str, **labels: str) -> float:
    """A metric's current value in this process (0 when it has none yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
