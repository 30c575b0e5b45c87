"""Benchmark: what grouped digests cost a service per event.

A burst of failures (five streams) goes through the delivery core (the real runner, ledger and
outbox, an in-memory bus, a destination that does nothing) in four ways:

- ``one per event``: no ``group`` (a machine destination, or ``group.enabled: false``): every
  event becomes a pending delivery, is delivered and gets its receipt;
- ``storm protection, below the threshold``: ``group`` on, but the threshold is never reached,
  so every event still goes out alone (what the per-minute count adds);
- ``grouped``: every event after each stream's first is collected (its event stored with the
  group, a ``grouped`` receipt); then the clock passes the interval and the five digests are
  made, read back and delivered. ``intake`` is the first part, ``digests`` the second, both per
  event of the burst.

Prints microseconds of this process's CPU time per event of the burst (CPU, not wall time: the
digests wait up to a quarter of a second for the runner's timer, which costs nothing).

    uv run python bench/grouping.py [--events 5000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from herald_shared import events, topics
from herald_shared.delivery.destination import Destination, Target
from herald_shared.delivery.grouping import Digest
from herald_shared.events import Event
from herald_shared.settings import DeliverySettings, GroupSettings
from herald_testkit.bench import report
from herald_testkit.made_events import failure
from herald_testkit.memory_bus import MemoryRunner, memory_runner
from herald_testkit.mqtt import Seen

STREAMS = ("Finance", "Sales", "HR", "Logistics", "Marketing")
BATCH = 100  # events handed to the runner at once, as a burst arrives from the broker
DELIVERY = DeliverySettings(concurrency=8, shutdown_grace=5)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Sink(Destination):
    name = "sink"

    def __init__(self, group: GroupSettings | None) -> None:
        self.group = group

    def targets(self, event: Event) -> Sequence[Target]:
        return (Target("ops@example.com"),)

    async def deliver(self, event: Event, target: str) -> str | None:
        return None

    async def deliver_digest(self, digest: Digest, target: str) -> str | None:
        return None


async def _take(runner: MemoryRunner, burst: list[tuple[str, bytes]]) -> None:
    for start in range(0, len(burst), BATCH):
        await asyncio.gather(*(runner.send(*message) for message in burst[start : start + BATCH]))


async def _wait(runner: MemoryRunner, receipts: int) -> None:
    def enough(seen: list[Seen]) -> bool:
        return sum("/v1/deliveries/" in s.topic for s in seen) >= receipts

    await runner.bus.wait_for(enough, 600)


async def measure(group: GroupSettings | None, count: int, work: Path) -> dict[str, float]:
    made = [failure(n, STREAMS[n % len(STREAMS)]) for n in range(1, count + 1)]
    burst = [(topics.topic_of("herald", event), events.encode(event)) for event in made]
    clock = Clock()
    async with memory_runner(work, [Sink(group)], delivery=DELIVERY, clock=clock) as runner:
        started = time.process_time()
        await _take(runner, burst)
        await _wait(runner, count)  # a receipt per event: delivered, or grouped
        taken = time.process_time()
        figures = {"intake": (taken - started) / count * 1e6}
        if group is not None and group.threshold == 0:
            clock.now += group.interval + 1
            await _wait(runner, count + len(STREAMS))  # and one per digest
            figures["digests"] = (time.process_time() - taken) / count * 1e6
    figures["total"] = sum(figures.values())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    arguments = parser.parse_args()
    cases = {
        "one per event": None,
        "storm protection, below the threshold": GroupSettings(threshold=10**9),
        "grouped": GroupSettings(threshold=0, interval=60),
    }
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for n, (name, group) in enumerate(cases.items()):
            work = Path(folder) / str(n)
            work.mkdir()
            for part, value in asyncio.run(measure(group, arguments.events, work)).items():
                figures[f"{name}: {part} (us/event)"] = value
    report(figures, arguments.json, width=55)


if __name__ == "__main__":
    main()
