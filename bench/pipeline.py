"""Benchmark: the whole pipeline end to end, every service in its own process.

Mosquitto, InfluxDB 1.x, ``herald qlik-sim serve`` and ``herald run`` of ingest and the five
subscribers (herald_testkit.pipeline), with real SMTP, Slack, Teams, New Relic, Signl4 and
webhook stand-ins in this process. Failed-reload datagrams go out over UDP; an alert counts as
received at a destination when that destination's ``delivered`` receipt arrives on the broker,
which the service publishes right after the destination accepted it (SMTP 250, HTTP 2xx,
InfluxDB 204, the script log fsynced). Ten deliveries per event: two e-mails, Slack, Teams,
New Relic, Signl4, a webhook, InfluxDB, Prometheus, the archive.

Prints one table per mode: p50/p99 per destination at 10 and 100 events/s, the highest rate
tried that was delivered completely and kept up with (everything in within 5 s of the last
datagram), the RSS (peak) and CPU seconds per 1,000 events of every process. The modes:
``separate`` (every service its own process, as on Kubernetes) and ``one-process`` (``herald up``,
every service in one process, against the same Mosquitto).

    uv run python bench/pipeline.py [--mode both|separate|one-process] [--seconds 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import psutil

from herald_testkit.bench import RssSampler, megabytes
from herald_testkit.mqtt import Observer
from herald_testkit.pipeline import OWED, Burst, Pipeline, whole_system

RATES = (10.0, 100.0)
SEARCH = (20.0, 40.0, 60.0, 80.0, 100.0, 150.0, 200.0, 300.0)
STAND_INS = "stand-ins"  # this process: the SMTP, chat, New Relic, Signl4 and webhook stand-ins
NOT_HERALD = ("mosquitto", "qlik-sim", "influxdb", STAND_INS)
KEEP_UP = 5.0  # seconds after the last datagram within which every alert must be in


def destination_of(service: str, destination: str) -> str:
    return "email" if service == "emailer" else destination.removesuffix(":ops")


DESTINATIONS = sorted({destination_of(s, d) for s, d, _ in OWED})


class Receipts:
    """When each delivered receipt arrived: (event id, service, destination, target) -> time.

    Read from the pipeline's own observer of the deliveries topic (a second subscriber would
    double the harness's share of the two cores)."""

    def __init__(self, observer: Observer) -> None:
        self.at: dict[tuple[str, str, str, str], float] = {}
        self._observer = observer
        self._read = 0

    def update(self) -> None:
        seen = self._observer.seen
        for message in seen[self._read :]:
            receipt: dict[str, Any] = msgspec.json.decode(message.payload)
            if receipt.get("outcome") != "delivered":
                continue
            key = (
                receipt["event_id"],
                message.topic.rsplit("/", 1)[-1],
                receipt["destination"],
                receipt.get("target", ""),
            )
            self.at.setdefault(key, message.at)
        self._read = len(seen)

    def owed(self, burst: Burst) -> list[tuple[int, tuple[str, str, str, str]]]:
        return [(i, (e, *o)) for i, e in enumerate(burst.event_ids()) for o in OWED]

    async def wait(self, burst: Burst, within: float) -> bool:
        deadline = time.monotonic() + within
        owed = [key for _, key in self.owed(burst)]
        while time.monotonic() < deadline:
            self.update()
            if all(key in self.at for key in owed):
                return True
            await asyncio.sleep(0.05)
        return False


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * share + 0.5) - 1))]


async def steady(
    system: Pipeline, receipts: Receipts, rate: float, seconds: float
) -> dict[str, Any]:
    burst = await system.record(int(rate * seconds))
    await system.send(burst, rate=rate)
    complete = await receipts.wait(burst, 60)
    latencies: dict[str, list[float]] = {name: [] for name in DESTINATIONS}
    for index, key in receipts.owed(burst):
        if key in receipts.at:
            latencies[destination_of(key[1], key[2])].append(
                receipts.at[key] - burst.sent_at[index]
            )
    return {
        "events": len(burst.execution_ids),
        "complete": complete,
        "p50_ms": {k: round(statistics.median(v) * 1000, 1) for k, v in latencies.items() if v},
        "p99_ms": {k: round(percentile(v, 0.99) * 1000, 1) for k, v in latencies.items() if v},
    }


async def sustained(system: Pipeline, receipts: Receipts, seconds: float) -> dict[str, Any]:
    """The highest rate of SEARCH delivered completely and kept up with."""
    best, tried = 0.0, {}
    for rate in SEARCH:
        burst = await system.record(int(rate * seconds))
        await system.send(burst, rate=rate)
        sent = time.monotonic()
        kept_up = await receipts.wait(burst, KEEP_UP)
        complete = kept_up or await receipts.wait(burst, 120)
        last = max((receipts.at.get(key, 0.0) for _, key in receipts.owed(burst)), default=0.0)
        tried[str(int(rate))] = {"complete": complete, "drain_s": round(last - sent, 2)}
        if not kept_up:
            break
        best = rate
    return {"highest_sustained_rate": best, "tried": tried}


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    found = {}
    for name, pid in pids.items():
        with contextlib.suppress(psutil.NoSuchProcess):
            times = psutil.Process(pid).cpu_times()
            found[name] = times.user + times.system
    return found


MODES = {"separate": False, "one-process": True}


async def main(arguments: argparse.Namespace) -> dict[str, Any]:
    chosen = list(MODES) if arguments.mode == "both" else [arguments.mode]
    return {mode: await measure(arguments, one_process=MODES[mode]) for mode in chosen}


async def measure(arguments: argparse.Namespace, *, one_process: bool) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="herald-bench-pipeline-"))
    try:
        async with whole_system(work, one_process=one_process) as system:
            assert system.receipts is not None
            receipts = Receipts(system.receipts)
            warm = await system.record(20)
            await system.send(warm, rate=20)
            await receipts.wait(warm, 60)
            # The destinations' side is measured too: it shares the two cores.
            pids = {**system.pids(), STAND_INS: os.getpid()}
            if system.destinations.influx.pid is not None:
                pids["influxdb"] = system.destinations.influx.pid
            samplers = {name: RssSampler(pid) for name, pid in pids.items()}
            idle = {name: megabytes(s.now()) for name, s in samplers.items()}
            sampling = [asyncio.create_task(s.run()) for s in samplers.values()]

            figures: dict[str, Any] = {"idle_rss_mb": idle}
            for rate in RATES:
                before = cpu_seconds(pids)
                result = await steady(system, receipts, rate, arguments.seconds)
                after = cpu_seconds(pids)
                per_thousand = {
                    name: round((after[name] - before[name]) / result["events"] * 1000, 2)
                    for name in after
                }
                result["cpu_s_per_1000_events"] = per_thousand
                figures[f"at_{int(rate)}_per_s"] = result
            figures["search"] = await sustained(system, receipts, arguments.search_seconds)
            for task in sampling:
                task.cancel()
            figures["peak_rss_mb"] = {n: megabytes(s.peak) for n, s in samplers.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return figures


def show(mode: str, figures: dict[str, Any]) -> None:
    print(f"Herald, whole pipeline ({mode}): datagram sent -> delivered receipt")
    header = f"  {'destination':<18}" + "".join(
        f"{f'{int(r)}/s p50':>12}{f'{int(r)}/s p99':>12}" for r in RATES
    )
    print(header + "   (ms)")
    for name in DESTINATIONS:
        row = f"  {name:<18}"
        for rate in RATES:
            result = figures[f"at_{int(rate)}_per_s"]
            row += f"{result['p50_ms'].get(name, float('nan')):>12.1f}"
            row += f"{result['p99_ms'].get(name, float('nan')):>12.1f}"
        print(row)
    for rate in RATES:
        result = figures[f"at_{int(rate)}_per_s"]
        print(f"  {int(rate)}/s: {result['events']} events, complete: {result['complete']}")
    search = figures["search"]
    print(
        f"  highest sustained zero-loss rate: {search['highest_sustained_rate']:.0f} events/s"
        f"  (tried: {search['tried']})"
    )
    print(f"  {'process':<20}{'idle MB':>10}{'peak MB':>10}{'CPU s/1000 ev @100/s':>24}")
    cpu = figures["at_100_per_s"]["cpu_s_per_1000_events"]
    for name in figures["peak_rss_mb"]:
        print(
            f"  {name:<20}{figures['idle_rss_mb'][name]:>10.1f}{figures['peak_rss_mb'][name]:>10.1f}"
            f"{cpu.get(name, float('nan')):>24.2f}"
        )
    herald = [n for n in figures["peak_rss_mb"] if n not in NOT_HERALD]
    print(
        f"  Herald services together: peak {sum(figures['peak_rss_mb'][n] for n in herald):.1f} MB,"
        f" {sum(cpu.get(n, 0.0) for n in herald):.2f} CPU s per 1000 events;"
        f" everything: {sum(cpu.values()):.2f} CPU s per 1000 events"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["both", *MODES], default="both")
    parser.add_argument("--seconds", type=float, default=10.0, help="per steady rate")
    parser.add_argument("--search-seconds", type=float, default=5.0, help="per rate tried")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    for mode, figures in result.items():
        show(mode, figures)
    if arguments.json:
        arguments.json.write_text(json.dumps(result, indent=2) + "\n")
