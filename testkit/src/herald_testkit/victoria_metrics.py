"""A real VictoriaMetrics on a free loopback port: it accepts InfluxDB line protocol on
``/api/v2/write`` (the InfluxDB v2 write path), so it stands in for InfluxDB 2.

As docs/testing.md found: keep ``-search.latencyOffset=0s`` (otherwise queries
hide the last 30 s), ``POST /internal/force_flush`` before reading, and read back with PromQL:
each field becomes a metric ``<measurement>_<field>``, and string fields are stored as 0.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx

from herald_testkit.ports import free_port
from herald_testkit.servers import stop, wait_until_answering

VICTORIA_METRICS = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"


class VictoriaMetrics:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = free_port()
        self.log_file = workdir / "victoria-metrics.log"
        self._process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    VICTORIA_METRICS,
                    f"-httpListenAddr={self.host}:{self.port}",
                    f"-storageDataPath={self.workdir / 'data'}",
                    "-retentionPeriod=100y",  # sample events are from 2021
                    "-search.latencyOffset=0s",
                    "-loggerLevel=WARN",
                ],
                stdout=log,
                stderr=log,
            )
        if wait_until_answering(f"{self.url}/health", 200, self._process):
            return
        self.stop()
        raise RuntimeError(f"victoria-metrics did not start; see {self.log_file}")

    def stop(self) -> None:
        process, self._process = self._process, None
        stop(process)

    def export(self, match: str) -> list[dict[str, Any]]:
        """Every stored series matching the PromQL selector, with its raw samples."""
        httpx.post(f"{self.url}/internal/force_flush", timeout=10).raise_for_status()
        response = httpx.post(f"{self.url}/api/v1/export", data={"match[]": match}, timeout=10)
        response.raise_for_status()
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]

    def __enter__(self) -> VictoriaMetrics:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
