"""Benchmark: points/s the metrics writer's InfluxDB destination writes to a real InfluxDB 1.x,
and the process's RSS. Run: .venv/bin/python bench/metrics_writer.py [points]"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import msgspec

from herald_metrics_writer.destinations.influxdb import InfluxDbSettings, InfluxDestination
from herald_shared import samples
from herald_shared.events import event_id_for
from herald_testkit.influxdb import InfluxDB


async def run(influxdb: InfluxDB, count: int) -> float:
    settings = InfluxDbSettings.model_validate(
        {
            "url": influxdb.url,
            "batch_size": 500,
            "flush_interval": 0.05,
            "v1": {"database": "bench"},
        }
    )
    destination = InfluxDestination(settings, "metrics-writer")
    await destination.start()
    base = samples.sample_failed()
    events = []
    for n in range(count):
        execution_id = str(uuid.uuid4())
        events.append(
            msgspec.structs.replace(
                base,
                event_id=event_id_for("task_failed", execution_id),
                occurred_at=base.occurred_at + timedelta(milliseconds=n),
                execution=msgspec.structs.replace(base.execution, id=execution_id),
            )
        )
    started = time.perf_counter()
    # As the runner does: many deliveries in flight at once (delivery.concurrency).
    semaphore = asyncio.Semaphore(500)

    async def one(event: object) -> None:
        async with semaphore:
            await destination.deliver(event, "")  # type: ignore[arg-type]

    await asyncio.gather(*(one(event) for event in events))
    elapsed = time.perf_counter() - started
    await destination.close()
    return elapsed


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    with tempfile.TemporaryDirectory() as folder, InfluxDB(Path(folder)) as influxdb:
        elapsed = asyncio.run(run(influxdb, count))
        [series] = influxdb.query("SELECT COUNT(execution_id) FROM reload_task_failed", "bench")
        stored = series["values"][0][1]
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{count} points in {elapsed:.2f} s: {count / elapsed:,.0f} points/s written")
    print(f"stored in InfluxDB: {stored}; max RSS of the writer process: {rss_mib:.0f} MiB")


if __name__ == "__main__":
    main()
