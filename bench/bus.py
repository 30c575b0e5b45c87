"""Benchmark: events through the bus, the delivery runner and the log archiver.

A real Mosquitto and a real ``herald run log-archiver`` process; this script publishes failed
reload events (each with a 14-line script log) and times each one until its delivery receipt
arrives, i.e. the file is written, the ledger updated and the receipt published, with every
event acknowledged to the broker only after it was stored.

Prints: sustained events/s for a burst, p50/p99 latency at a steady 200 events/s, and the
service process's idle and peak RSS.

    uv run python bench/bus.py [--burst 5000] [--rate 200] [--seconds 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt
import msgspec

from herald_shared import events, samples, topics
from herald_testkit.bench import RssSampler, fast_client, megabytes, run
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.ports import wait_for_port

PREFIX = "bench"


def failed_event(n: int) -> events.TaskFailed:
    base = samples.sample_failed()
    execution_id = f"00000000-0000-4000-8000-{n:012d}"
    return msgspec.structs.replace(
        base,
        event_id=events.event_id_for("task_failed", execution_id),
        execution=msgspec.structs.replace(base.execution, id=execution_id),
    )


class Receipts:
    """Delivery receipts as they arrive, with their arrival time."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            receipt = msgspec.json.decode(message.payload)
            self.arrived[receipt["event_id"]] = time.perf_counter()

            self.changed.set()

    async def wait_for(self, ids: list[str], within: float) -> None:
        deadline = time.perf_counter() + within
        while not all(event_id in self.arrived for event_id in ids):
            self.changed.clear()
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                missing = sum(event_id not in self.arrived for event_id in ids)
                raise TimeoutError(f"{missing} receipts missing")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)


async def main(arguments: argparse.Namespace) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    with Mosquitto(work / "mosquitto") as broker:
        config = work / "herald.yaml"
        config.write_text(
            f"broker: {{host: {broker.host}, port: {broker.port}, topic_prefix: {PREFIX}, instance: bench}}\n"
            "health: {host: 127.0.0.1, port: 0}\n"
            "logging: {level: WARNING}\n"
            f"log_archiver: {{directory: {work / 'logs'}, state_dir: {work / 'state'}, retention_days: 0}}\n"
        )
        service = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "herald_shared.cli",
            "run",
            "log-archiver",
            "--config",
            str(config),
        )
        receipts = Receipts()
        try:
            async with fast_client(broker.host, broker.port) as client:
                await client.subscribe(topics.deliveries_topic(PREFIX, "log-archiver"), qos=1)
                listener = asyncio.create_task(receipts.listen(client))
                await _wait_online(broker, work)
                await asyncio.sleep(2.0)  # settle before measuring idle memory
                sampler = RssSampler(service.pid)
                idle_rss = sampler.now()
                sampling = asyncio.create_task(sampler.run())

                # Warm-up, so the first measured events pay no start-up costs.
                warm = [failed_event(n) for n in range(200)]
                await _publish(client, warm)
                await receipts.wait_for([e.event_id for e in warm], 60)

                # Burst: everything at once; throughput is events over time to the last receipt.
                burst = [failed_event(n) for n in range(1000, 1000 + arguments.burst)]
                started = time.perf_counter()
                await _publish(client, burst)
                await receipts.wait_for([e.event_id for e in burst], 600)
                burst_seconds = max(receipts.arrived[e.event_id] for e in burst) - started

                # Steady rate: latency from publish to receipt.
                latencies = await _steady(client, receipts, arguments.rate, arguments.seconds)
                sampling.cancel()

                listener.cancel()
        finally:
            service.terminate()
            await service.wait()
    latencies.sort()
    return {
        "burst_events": arguments.burst,
        "events_per_second": round(arguments.burst / burst_seconds, 1),
        "steady_rate": arguments.rate,
        "steady_events": len(latencies),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "idle_rss_mb": megabytes(idle_rss),
        "peak_rss_mb": megabytes(sampler.peak),
    }


async def _wait_online(broker: Mosquitto, work: Path) -> None:
    wait_for_port(broker.host, broker.port)
    async with aiomqtt.Client(
        broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(topics.status_topic(PREFIX, "log-archiver", "bench"), qos=1)
        async for message in client.messages:
            if message.payload == b"online":
                return


async def _publish(client: aiomqtt.Client, batch: list[events.TaskFailed]) -> None:
    await asyncio.gather(
        *(client.publish(topics.topic_of(PREFIX, e), events.encode(e), qos=1) for e in batch)
    )


async def _steady(
    client: aiomqtt.Client, receipts: Receipts, rate: float, seconds: float
) -> list[float]:
    count = int(rate * seconds)
    sent: dict[str, float] = {}
    start = time.perf_counter()
    pending = []
    for n in range(count):
        event = failed_event(100_000 + n)
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[event.event_id] = time.perf_counter()
        pending.append(
            asyncio.create_task(
                client.publish(topics.topic_of(PREFIX, event), events.encode(event), qos=1)
            )
        )
    await asyncio.gather(*pending)
    await receipts.wait_for(list(sent), 120)
    return [receipts.arrived[event_id] - at for event_id, at in sent.items()]


def _print(result: dict[str, float]) -> None:
    print("Herald bus + runner + log archiver (ack after handling, one service process)")
    print(
        f"  burst of {result['burst_events']:.0f} events     {result['events_per_second']:>9.1f} events/s"
    )
    print(
        f"  latency at {result['steady_rate']:.0f}/s ({result['steady_events']:.0f} events)"
        f"  p50 {result['p50_ms']:.1f} ms   p99 {result['p99_ms']:.1f} ms"
    )
    print(
        f"  service RSS             idle {result['idle_rss_mb']:.1f} MB   peak {result['peak_rss_mb']:.1f} MB"
    )


if __name__ == "__main__":
    run(__doc__, main, _print, burst=5000, rate=200.0, seconds=15.0)
