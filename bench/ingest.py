"""Benchmark: scheduler datagrams through ingest, enriched from the QRS stand-in, to the broker.

A real Mosquitto, ``herald qlik-sim serve`` (the QRS over HTTPS with client certificates) and
``herald run ingest`` each in their own process; this script sends failed-reload datagrams over
UDP and times each one until its event arrives from the broker (so after ingest's PUBACK).
Every event is enriched: task, app and owner (cached briefly), the execution result, the script
log reference and the script log download (never cached).

Every run is first recorded in the sim (as the scheduler writes its execution result before the
datagram goes out), since enrichment reads the execution the datagram names.

Prints: the worst-case time to parse one datagram (hostile datagrams built within the size cap,
parsed in this process), datagrams lost in a burst, enriched events/s for that burst, p50/p99
latency at a steady rate, the same with a hostile stream mixed in (the slowest-parsing datagram
every 0.5 s besides the valid alerts; target: no valid alert lost, p99 under 1 s), and ingest's
idle and peak RSS. Then the reconciliation sweep (run in this process, so its CPU is measured
with ``time.process_time``): QRS requests and CPU of an idle sweep, and of a sweep that finds
1,000 runs no datagram reported, spread over its minute or over the hour of a first start's
lookback.

    uv run python bench/ingest.py [--burst 10000] [--rate 100] [--seconds 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import msgspec

from herald_ingest import datagram as datagrams
from herald_ingest.service import IngestConfig, IngestService
from herald_ingest.settings import IngestSettings, QlikSettings
from herald_qlik_sim import CertPaths, emitter, scriptlogs
from herald_qlik_sim import data as sim_data
from herald_shared.settings import BrokerSettings
from herald_testkit.bench import RssSampler, megabytes, run
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.ports import free_port, wait_for_port
from herald_testkit.services import started

PREFIX = "bench"
RUN_LENGTH = scriptlogs.elapsed("failed") + timedelta(seconds=1)


class Arrivals:
    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.partial = 0
        self.changed = asyncio.Event()

    async def listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            event = msgspec.json.decode(message.payload)
            self.at.setdefault(event["execution"]["id"], time.perf_counter())
            if event["enrichment"]["status"] == "partial":
                self.partial += 1
            self.changed.set()

    async def wait_for(self, ids: list[str], within: float) -> None:
        deadline = time.perf_counter() + within
        while not all(i in self.at for i in ids) and time.perf_counter() < deadline:
            self.changed.clear()
            try:
                await asyncio.wait_for(
                    self.changed.wait(), max(0.0, deadline - time.perf_counter())
                )
            except TimeoutError:
                break


def _template() -> str:
    site = sim_data.default_site()
    task = site.tasks[sim_data.TASK_FAILED_ID]
    app = site.apps[task.app_id] if task.app_id else None
    return emitter.datagram("failed", task, app, execution_id="{execution_id}").text


_TEMPLATE = _template()  # building the site for every datagram would load the benchmark, not ingest


def datagram_for(execution_id: str) -> bytes:
    return _TEMPLATE.replace("{execution_id}", execution_id).encode()


class SimControl:
    """The running sim's ``/control``: record runs (without datagrams), read its call counts."""

    def __init__(self, origin: str, certs: CertPaths) -> None:
        self._origin = origin
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=certs.client_context())
        )

    async def record(self, count: int, *, spread: float = 0.0) -> list[str]:
        """``count`` failed runs of the failed task, the last ending now, ``spread`` s apart."""
        ids = [str(uuid.uuid4()) for _ in range(count)]
        now = datetime.now(UTC)
        for offset in range(0, count, 1000):
            chunk = ids[offset : offset + 1000]
            body: dict[str, Any] = {"task": sim_data.TASK_FAILED_ID, "outcome": "failed"}
            if spread:
                # One call records runs with one start: a call per run keeps them apart.
                for n, execution_id in enumerate(chunk):
                    # Started this long before now plus the run's length: it has ended by now.
                    ago = timedelta(seconds=spread * (count - offset - n - 1)) + RUN_LENGTH
                    await self._post(
                        body | {"execution_id": execution_id, "start": (now - ago).isoformat()}
                    )
                continue
            await self._post(body | {"execution_ids": chunk})
        return ids

    async def _post(self, body: dict[str, Any]) -> None:
        async with self._session.post(f"{self._origin}/control/executions", json=body) as answer:
            if answer.status != 201:
                raise RuntimeError(
                    f"the sim refused the runs: {answer.status} {await answer.text()}"
                )

    async def calls(self) -> dict[str, int]:
        async with self._session.get(f"{self._origin}/control") as answer:
            calls: dict[str, int] = (await answer.json())["calls"]
            return calls

    async def close(self) -> None:
        await self._session.close()


# --- hostile datagrams: each as large as the cap allows, aimed at one step of the parser ----------

CAP = datagrams.MAX_DATAGRAM_BYTES
HOSTILE_EVERY = 0.5  # seconds between two hostile datagrams in the mixed stream
GUID = "dec2a02a-1680-44ef-8dc2-e2bfb180af87"
STAMP = "2021-02-16 09:24:59,099"
ANCHOR = f"{GUID};{GUID};{STAMP};INFO;{GUID}"


def _fill(head: str, tail: str, unit: str) -> str:
    """``head`` + as many ``unit`` as fit under the cap + ``tail``."""
    room = CAP - len(head.encode()) - len(tail.encode())
    return head + unit * (room // len(unit.encode())) + tail


def _fields(task: str, app: str, user: str, message: str, execution_id: str) -> str:
    return (
        f"/scheduler-task-failed/;node;{task};{app};{user};{GUID};{GUID};{STAMP};INFO;"
        f"{execution_id};{message}"
    )


def _hostile_cases() -> dict[str, Callable[[str], bytes]]:
    """Name -> a builder of that datagram for an execution id (each send is a new execution)."""

    def semicolons(e: str) -> bytes:  # ';' in the task name: ~65,000 segments to anchor
        head = "/scheduler-task-failed/;node;"
        return _fill(head, f"app;LAB\\u;{GUID};{GUID};{STAMP};INFO;{e};m", ";").encode()

    def repeated(e: str) -> bytes:  # task name "a;a;a;…": the task/app split's repeated tail
        head = "/scheduler-task-failed/;node;"
        return _fill(head, f"a;LAB\\u;{GUID};{GUID};{STAMP};INFO;{e};m", "a;").encode()

    def fake_anchors(e: str) -> bytes:  # anchor-shaped runs everywhere, no backslash user
        head = "/scheduler-task-failed/;node;t;a;user;"
        return _fill(head, f";{ANCHOR[:-36]}{e};m", f"{ANCHOR};").encode()

    def timestamps(e: str) -> bytes:  # no anchor at all: every segment a timestamp (rejected)
        return _fill("/scheduler-task-failed/;", f";{e}", f"{STAMP};").encode()

    def control(e: str) -> bytes:  # control characters to delete
        return _fields("t", "a", "LAB\\u", _fill("", "", "\x01")[: CAP - 200], e).encode()[:CAP]

    def long_fields(e: str) -> bytes:  # every free-text field as long as the others allow
        long = "x" * 16_200
        return _fields(long, long, "LAB\\" + long, long, e).encode()[:CAP]

    def many_fields(e: str) -> bytes:  # 32,000 one-character fields (rejected)
        return _fill("/scheduler-task-failed/;", f";{e}", "x;").encode()

    return {
        "';' in the task name": semicolons,
        "repeated task name segments": repeated,
        "anchor-shaped runs": fake_anchors,
        "timestamps, no anchor": timestamps,
        "control characters": control,
        "long fields": long_fields,
        "many one-character fields": many_fields,
    }


def worst_parse() -> tuple[str, float, Callable[[str], bytes]]:
    """The slowest case, its slowest parse of 20 in seconds, and its builder."""
    worst: tuple[str, float, Callable[[str], bytes]] = ("", 0.0, datagram_for)
    for name, build in _hostile_cases().items():
        data = build(str(uuid.uuid4()))
        assert len(data) <= CAP, (name, len(data))
        slowest = 0.0
        for _ in range(20):
            started = time.perf_counter()
            datagrams.parse(data)
            slowest = max(slowest, time.perf_counter() - started)
        print(f"  parse {name:<30} {len(data):>6} bytes  {slowest * 1000:7.2f} ms", file=sys.stderr)
        if slowest > worst[1]:
            worst = (name, slowest, build)
    return worst


async def steady(
    sender: socket.socket,
    target: tuple[str, int],
    arrivals: Arrivals,
    arguments: argparse.Namespace,
    hostile: Callable[[str], bytes] | None,
    control: SimControl,
) -> list[float]:
    """Valid alerts at ``--rate`` for ``--seconds`` (plus ``hostile`` every 0.5 s): the latency,
    sorted, from each alert sent to its event on the broker, of those that arrived."""
    count = int(arguments.rate * arguments.seconds)
    alerts = await control.record(count)  # the runs the datagrams name
    sent: dict[str, float] = {}
    start = time.perf_counter()
    next_hostile = start
    for n, execution_id in enumerate(alerts):
        delay = start + n / arguments.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if hostile is not None and time.perf_counter() >= next_hostile:
            sender.sendto(hostile(str(uuid.uuid4())), target)
            next_hostile += HOSTILE_EVERY
        sent[execution_id] = time.perf_counter()
        sender.sendto(datagram_for(execution_id), target)
    await arrivals.wait_for(alerts, 60)
    return sorted(arrivals.at[e] - t for e, t in sent.items() if e in arrivals.at)


def _p99(latencies: list[float]) -> float:
    return round(latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000, 1)


async def start_sim(work: Path) -> tuple[asyncio.subprocess.Process, int]:
    """``herald qlik-sim serve`` in its own process, its certificates under ``work``, and its port."""
    qrs_port = free_port()
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "herald_shared.cli", "qlik-sim", "serve",
        "--port", str(qrs_port), "--certs", str(work / "certs"),
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_port("127.0.0.1", qrs_port, timeout=30)
    return sim, qrs_port


async def main(arguments: argparse.Namespace) -> dict[str, float]:
    worst_case, worst_seconds, hostile = worst_parse()
    work = Path(tempfile.mkdtemp(prefix="herald-bench-ingest-"))
    udp_port = free_port(kind=socket.SOCK_DGRAM)
    sim, qrs_port = await start_sim(work)
    control = SimControl(f"https://127.0.0.1:{qrs_port}", CertPaths(work / "certs"))
    with Mosquitto(work / "mosquitto") as broker:
        config = work / "herald.yaml"
        config.write_text(
            f"broker: {{host: {broker.host}, port: {broker.port}, topic_prefix: {PREFIX}, instance: bench}}\n"
            "health: {host: 127.0.0.1, port: 0}\n"
            "logging: {level: WARNING}\n"
            f"qlik: {{qrs: {{url: 'https://127.0.0.1:{qrs_port}', client_cert: {work}/certs/client.pem,"
            f" client_key: {work}/certs/client_key.pem, ca_cert: {work}/certs/root.pem}}}}\n"
            f"ingest: {{state_dir: {work}/state, udp: {{host: 127.0.0.1, port: {udp_port}}},"
            " reconcile: {enabled: false}}\n"  # measured on its own below
        )
        ingest = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "herald_shared.cli", "run", "ingest", "--config", str(config)
        )
        arrivals = Arrivals()
        try:
            async with aiomqtt.Client(
                broker.host,
                broker.port,
                protocol=aiomqtt.ProtocolVersion.V5,
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            ) as client:
                await client.subscribe(f"{PREFIX}/v1/events/#", qos=1)
                listener = asyncio.create_task(arrivals.listen(client))
                sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                target = ("127.0.0.1", udp_port)
                # Warm up (and wait until ingest listens and is connected).
                warm = await control.record(50)
                for _attempt in range(100):
                    for execution_id in warm:
                        if execution_id not in arrivals.at:
                            sender.sendto(datagram_for(execution_id), target)
                    await arrivals.wait_for(warm, 1.0)
                    if all(e in arrivals.at for e in warm):
                        break
                await asyncio.sleep(1.0)
                sampler = RssSampler(ingest.pid)
                idle_rss = sampler.now()
                sampling = asyncio.create_task(sampler.run())

                # Burst: every datagram at once, as fast as one socket sends.
                burst = await control.record(arguments.burst)
                started = time.perf_counter()
                for execution_id in burst:
                    sender.sendto(datagram_for(execution_id), target)
                await arrivals.wait_for(burst, 300)
                arrived = [arrivals.at[e] for e in burst if e in arrivals.at]
                lost = len(burst) - len(arrived)
                burst_seconds = max(arrived) - started

                partial = arrivals.partial  # hostile datagrams make partial events of their own

                # Steady rate: latency from datagram sent to event on the broker.
                count = int(arguments.rate * arguments.seconds)
                latencies = await steady(sender, target, arrivals, arguments, None, control)
                # The same with the slowest-parsing datagram every 0.5 s mixed in.
                hostile_latencies = await steady(
                    sender, target, arrivals, arguments, hostile, control
                )
                sampling.cancel()
                listener.cancel()
        finally:
            ingest.terminate()
            await ingest.wait()
            await control.close()
            sim.terminate()
            await sim.wait()
        sweeps = await sweep_figures(work, broker)
    return sweeps | {
        "worst_parse_ms": round(worst_seconds * 1000, 2),
        "worst_parse_case": list(_hostile_cases()).index(worst_case),
        "burst_datagrams": arguments.burst,
        "burst_lost": lost,
        "enriched_events_per_second": round(len(arrived) / burst_seconds, 1),
        "partial_events": partial,
        "steady_rate": arguments.rate,
        "steady_lost": count - len(latencies),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": _p99(latencies),
        "hostile_lost": count - len(hostile_latencies),
        "hostile_p50_ms": round(statistics.median(hostile_latencies) * 1000, 1),
        "hostile_p99_ms": _p99(hostile_latencies),
        "idle_rss_mb": megabytes(idle_rss),
        "peak_rss_mb": megabytes(sampler.peak),
    }


async def sweep_figures(work: Path, broker: Mosquitto) -> dict[str, float]:
    """The reconciliation sweep's QRS requests and CPU: idle, and finding 1,000 missed runs.

    A sim of its own, so that the runs of the datagram benchmark are not in the sweep's window.
    """
    sim, qrs_port = await start_sim(work)
    certs = CertPaths(work / "certs")
    control = SimControl(f"https://127.0.0.1:{qrs_port}", certs)
    try:
        return await _sweeps(work, broker, qrs_port, control)
    finally:
        await control.close()
        sim.terminate()
        await sim.wait()


async def _sweeps(
    work: Path, broker: Mosquitto, qrs_port: int, control: SimControl
) -> dict[str, float]:
    certs = CertPaths(work / "certs")
    qlik = QlikSettings.model_validate(
        {
            "qrs": {
                "url": f"https://127.0.0.1:{qrs_port}",
                "client_cert": str(certs.client),
                "client_key": str(certs.client_key),
                "ca_cert": str(certs.root),
            }
        }
    )
    bus = BrokerSettings(host=broker.host, port=broker.port, topic_prefix=PREFIX, instance="sweep")
    figures: dict[str, float] = {}

    async def measure(name: str, state: str) -> None:
        settings = IngestSettings.model_validate(
            {
                "state_dir": str(work / state),
                "udp": {"host": "127.0.0.1", "port": 0},
                "reconcile": {"enabled": False},  # swept by hand below
            }
        )
        async with started(IngestService(IngestConfig(ingest=settings, qlik=qlik), bus)) as ingest:
            if name != "hour":
                await ingest.sweep.once()  # a checkpoint: the runs below are new since it
            if name == "minute":
                await control.record(1000, spread=0.06)
            before, cpu = await control.calls(), time.process_time()
            report = await ingest.sweep.once()
            cpu = time.process_time() - cpu
            after = await control.calls()
        lists = sum(
            after.get(k, 0) - before.get(k, 0)
            for k in ("executionresult_count", "executionresult_full")
        )
        figures[f"sweep_{name}_list_requests"] = lists
        figures[f"sweep_{name}_qrs_requests"] = sum(after.values()) - sum(before.values())
        figures[f"sweep_{name}_cpu_ms"] = round(cpu * 1000, 1)
        figures[f"sweep_{name}_published"] = report.published
        figures[f"sweep_{name}_largest_page"] = max(report.pages, default=0)

    await measure("idle", "sweep-idle")
    await measure("minute", "sweep-minute")
    # A first start looks back an hour: the 1,000 runs above, with 1,000 more spread over it.
    await control.record(1000, spread=3.4)
    await measure("hour", "sweep-hour")
    return figures


def _print(result: dict[str, float]) -> None:
    print("Herald ingest: datagram -> QRS enrichment (HTTPS, client certificates) -> broker")
    worst = list(_hostile_cases())[int(result["worst_parse_case"])]
    print(
        f"  worst-case parse           {result['worst_parse_ms']:.2f} ms for one datagram"
        f" ({worst}, within {CAP} bytes)"
    )
    print(
        f"  burst of {result['burst_datagrams']:.0f} datagrams  lost {result['burst_lost']:.0f}"
        f"   {result['enriched_events_per_second']:.1f} enriched events/s"
        f"   ({result['partial_events']:.0f} partial)"
    )
    print(
        f"  latency at {result['steady_rate']:.0f}/s          p50 {result['p50_ms']:.1f} ms"
        f"   p99 {result['p99_ms']:.1f} ms   (lost {result['steady_lost']:.0f})"
    )
    print(
        f"  with a hostile datagram every {HOSTILE_EVERY:g} s  p50 {result['hostile_p50_ms']:.1f} ms"
        f"   p99 {result['hostile_p99_ms']:.1f} ms   (valid alerts lost {result['hostile_lost']:.0f})"
    )
    print(
        f"  ingest RSS                 idle {result['idle_rss_mb']:.1f} MB   peak {result['peak_rss_mb']:.1f} MB"
    )
    print("Reconciliation sweep (QRS list requests / all QRS requests incl. enrichment, CPU)")
    for name, what in (
        ("idle", "idle sweep"),
        ("minute", "1,000 new runs in its minute"),
        ("hour", "first start, 2,000 in the hour"),
    ):
        print(
            f"  {what:<31}{result[f'sweep_{name}_list_requests']:>5.0f} list"
            f" / {result[f'sweep_{name}_qrs_requests']:.0f} all requests"
            f"   CPU {result[f'sweep_{name}_cpu_ms']:.0f} ms"
            f"   published {result[f'sweep_{name}_published']:.0f}"
            f"   largest answer {result[f'sweep_{name}_largest_page']:.0f}"
        )


if __name__ == "__main__":
    run(__doc__, main, _print, burst=10_000, rate=100.0, seconds=10.0)
