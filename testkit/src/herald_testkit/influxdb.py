"""A real InfluxDB 1.x (Debian's 1.6) on free loopback ports, started and stopped by the test.

Configured as docs/testing.md found necessary: every directory in a temp folder,
reporting and the internal monitor off, and the RPC ``bind-address`` moved off its fixed default
(127.0.0.1:8088), which two instances (or two test runs) would otherwise fight over. Data
survives :meth:`stop`/:meth:`start`, so a test can take it down and bring it back.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx

from herald_testkit.ports import free_port
from herald_testkit.servers import stop, wait_until_answering

INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"


class InfluxDB:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = free_port()
        self.rpc_port = free_port()
        self.log_file = workdir / "influxd.log"
        self._process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _write_config(self) -> Path:
        config = f"""
reporting-enabled = false
bind-address = "{self.host}:{self.rpc_port}"
[meta]
  dir = "{self.workdir / "meta"}"
[data]
  dir = "{self.workdir / "data"}"
  wal-dir = "{self.workdir / "wal"}"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "{self.host}:{self.port}"
  auth-enabled = false
  log-enabled = false
[ifql]
  enabled = false
"""
        path = self.workdir / "influxdb.conf"
        path.write_text(config)
        return path

    def start(self) -> None:
        config = self._write_config()
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [INFLUXD, "run", "-config", str(config)], stdout=log, stderr=log
            )
        if wait_until_answering(f"{self.url}/ping", 204, self._process):
            return
        self.stop()
        raise RuntimeError(f"influxd did not start; see {self.log_file}")

    def stop(self) -> None:
        process, self._process = self._process, None
        stop(process)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def query(self, q: str, database: str | None = None) -> list[dict[str, Any]]:
        """Run InfluxQL; the series of the first statement (``[]`` when there is none)."""
        params = {"q": q, "epoch": "ns"}
        if database is not None:
            params["db"] = database
        response = httpx.post(f"{self.url}/query", params=params, timeout=10)
        response.raise_for_status()
        result = response.json()["results"][0]
        if "error" in result:
            raise RuntimeError(f"InfluxQL error: {result['error']}")
        series: list[dict[str, Any]] = result.get("series", [])
        return series

    def rows(self, q: str, database: str) -> list[dict[str, Any]]:
        """Every row of every series as {column: value}, plus the series name under ``_name``."""
        found = []
        for series in self.query(q, database):
            for values in series["values"]:
                row = dict(zip(series["columns"], values, strict=True))
                row["_name"] = series["name"]
                found.append(row)
        return found

    def __enter__(self) -> InfluxDB:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
