"""What the benchmark scripts under bench/ share: their command line and memory sampling."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiomqtt
import psutil

Figures = dict[str, float]


def run(
    description: str | None,
    main: Callable[[argparse.Namespace], Coroutine[Any, Any, Figures]],
    show: Callable[[Figures], None],
    *,
    burst: int | None = None,
    rate: float | None = None,
    seconds: float | None = None,
    **options: int,
) -> None:
    """Parse ``--burst --rate --seconds`` (those given a default), ``--<option>`` for each other
    keyword (a whole number) and ``--json``; run ``main``, print its figures (and save them)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name, kind, default in (
        ("burst", int, burst),
        ("rate", float, rate),
        ("seconds", float, seconds),
        *((name, int, value) for name, value in options.items()),
    ):
        if default is not None:
            parser.add_argument(f"--{name}", type=kind, default=default)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments))
    show(figures)
    if arguments.json:
        arguments.json.write_text(json.dumps(figures, indent=2) + "\n")


def report(figures: Figures, json_path: Path | None, width: int = 45) -> None:
    """Print one figure a line (and write them all to ``json_path`` when given)."""
    for name, value in figures.items():
        print(f"{name:<{width}} {value:10.1f}")
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2) + "\n")


class RssSampler:
    """A process's resident memory: now, and the peak while :meth:`run` samples it."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = 0

    def now(self) -> int:
        rss = int(self._process.memory_info().rss)
        self.peak = max(self.peak, rss)
        return rss

    async def run(self) -> None:
        while True:
            self.now()
            await asyncio.sleep(0.05)


def megabytes(size: int) -> float:
    return round(size / 2**20, 1)


@contextlib.asynccontextmanager
async def fast_client(host: str, port: int) -> AsyncIterator[aiomqtt.Client]:
    """An MQTT client for a benchmark's own traffic: no Nagle delay, and room for thousands of
    messages in flight, so the benchmark is never what holds Herald back."""
    async with aiomqtt.Client(
        host,
        port,
        protocol=aiomqtt.ProtocolVersion.V5,
        max_inflight_messages=1000,
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    ) as client:
        client.pending_calls_threshold = 1_000_000
        yield client
