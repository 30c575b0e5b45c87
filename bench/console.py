"""Benchmark: what the console's history costs, and how fast its pages stay when it is full.

Feeds ``--events`` failed reloads (default 100 000, ``console.max_events``' default), each with
two receipts (one delivered, one dead-lettered for every tenth event), through the console's
intake (``Feed.take``, what each broker message goes through) into a fresh SQLite store, then
serves the pages from that store on a free loopback port and fetches them over HTTP.

Prints:
- CPU per event stored (its message and its two receipts), and per message;
- the process's RSS with the whole history in the store, and the database's size on disk;
- the time to render a page of 50 events (median and worst of 20 requests): the newest page,
  a task-name search, an outcome filter, and one event's page. Target: under 100 ms.

    uv run python bench/console.py [--events 100000] [--json out.json]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import msgspec
import psutil
from aiohttp import web

from herald_console.actions import Actions
from herald_console.auth import Access
from herald_console.feed import Announcements, Feed
from herald_console.settings import ConsoleSettings
from herald_console.store import Store
from herald_console.web import Web
from herald_shared import events, topics
from herald_shared.delivery import receipts
from herald_shared.settings import BrokerSettings
from herald_testkit import bench
from herald_testkit.made_events import failure

PREFIX = "bench"
REQUESTS = 20


class NoBroker:
    """The pages are measured; nothing is published."""

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        raise AssertionError("the benchmark publishes nothing")


def messages(first: int, count: int, total: int) -> list[tuple[str, bytes]]:
    """The broker messages of failed reloads ``first`` to ``first + count`` of ``total``: each
    event and its two receipts, one second apart, the last a moment ago."""
    start = datetime.now(UTC) - timedelta(seconds=total)
    made: list[tuple[str, bytes]] = []
    for n in range(first, first + count):
        moment = start + timedelta(seconds=n)
        event = msgspec.structs.replace(
            failure(
                n, stream=("Finance", "Sales", "Operations")[n % 3], name=f"Reload task {n % 500}"
            ),
            occurred_at=moment,
            received_at=moment,
        )
        made.append((topics.topic_of(PREFIX, event), events.encode(event)))
        for service, destination, outcome in (
            ("emailer", "email-failed", "delivered"),
            ("chat-notifier", "slack:ops", "dead_lettered" if n % 10 == 0 else "delivered"),
        ):
            receipt = {
                "event_id": event.event_id, "kind": event.kind, "task_id": event.task.id,
                "task_name": event.task.name, "service": service, "destination": destination,
                "target": "", "outcome": outcome, "attempts": 1, "at": moment,
            }  # fmt: skip
            made.append((topics.deliveries_topic(PREFIX, service), receipts.encode(receipt)))
    return made


async def page_times(base: str, paths: dict[str, str]) -> dict[str, tuple[float, float]]:
    found = {}
    async with aiohttp.ClientSession() as session:
        for name, path in paths.items():
            took = []
            for _ in range(REQUESTS):
                begun = time.perf_counter()
                async with session.get(base + path) as response:
                    assert response.status == 200, (path, response.status)
                    await response.read()
                took.append((time.perf_counter() - begun) * 1000)
            found[name] = (statistics.median(took), max(took))
    return found


async def main(arguments: argparse.Namespace) -> dict[str, float]:
    process = psutil.Process()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "console.sqlite3"
        store = Store(path, retention=365 * 86400.0, max_events=arguments.events)
        feed = Feed(store, PREFIX, Announcements())
        rss_empty = process.memory_info().rss
        cpu = 0.0
        # Made a thousand at a time, so the process's RSS is the console's, not the messages'.
        for first in range(0, arguments.events, 1000):
            made = messages(first, min(1000, arguments.events - first), arguments.events)
            begun = time.process_time()
            for topic, payload in made:
                feed.take(topic, payload)
            cpu += time.process_time() - begun
        assert store.count() == arguments.events
        rss_full = process.memory_info().rss

        settings = ConsoleSettings(listen="127.0.0.1:0", auth="none", state_dir=Path(folder))
        broker = BrokerSettings(topic_prefix=PREFIX)
        pages = Web(feed, Actions(broker, NoBroker(), store), Access(settings), settings.page_size)
        runner = web.AppRunner(pages.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        newest = store.events(limit=1)[0].event_id
        try:
            times = await page_times(
                f"http://127.0.0.1:{port}",
                {
                    "newest": "/",
                    "search": "/?task=task+42",
                    "outcome": "/?outcome=dead_lettered",
                    "stream_and_outcome": "/?stream=sales&outcome=dead_lettered",
                    "event": f"/events/{newest}",
                    "api": "/api/v1/events?limit=50",
                },
            )
        finally:
            await runner.cleanup()
        rss_serving = process.memory_info().rss
        store.close()  # the last connection checkpoints the WAL into the file
        size = path.stat().st_size
    figures = {
        "events": float(arguments.events),
        "cpu_us_per_event": cpu / arguments.events * 1e6,
        "cpu_us_per_message": cpu / (arguments.events * 3) * 1e6,
        "rss_mb_empty": rss_empty / 2**20,
        "rss_mb_full": rss_full / 2**20,
        "rss_mb_serving": rss_serving / 2**20,
        "database_mb": size / 2**20,
    }
    for name, (median, worst) in times.items():
        figures[f"page_ms_{name}_median"] = median
        figures[f"page_ms_{name}_worst"] = worst
    return figures


def show(figures: dict[str, float]) -> None:
    print(f"history of {figures['events']:.0f} events, each with two receipts")
    print(
        f"CPU per event stored:  {figures['cpu_us_per_event']:.0f} µs "
        f"({figures['cpu_us_per_message']:.0f} µs per message)"
    )
    print(
        f"RSS: {figures['rss_mb_empty']:.0f} MB empty, {figures['rss_mb_full']:.0f} MB with the "
        f"history, {figures['rss_mb_serving']:.0f} MB after serving; database "
        f"{figures['database_mb']:.0f} MB"
    )
    print(f"a page of 50 events, median / worst of {REQUESTS} (target < 100 ms):")
    for name in ("newest", "search", "outcome", "stream_and_outcome", "event", "api"):
        print(
            f"  {name:<19} {figures[f'page_ms_{name}_median']:6.1f} / "
            f"{figures[f'page_ms_{name}_worst']:6.1f} ms"
        )


if __name__ == "__main__":
    bench.run(__doc__, main, show, events=100_000)
