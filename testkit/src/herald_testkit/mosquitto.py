"""A real Mosquitto broker on a free loopback port, started and stopped by the test itself.

Configured as docs/testing.md found necessary: ``user root`` when run as root
(otherwise it drops to ``mosquitto`` and cannot write its persistence folder), a raised
``max_queued_messages`` (the default 1000 silently drops QoS 1 messages to slow subscribers),
persistence on with a one-second autosave, and logging to a file (stdout is block-buffered).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from herald_testkit.ports import free_port, wait_for_port
from herald_testkit.servers import stop

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Mosquitto:
    def __init__(self, workdir: Path, *, port: int | None = None, extra: str = "") -> None:
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.extra = extra
        self.log_file = workdir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "data").mkdir(exist_ok=True)

    def _write_config(self) -> Path:
        lines = [
            "user root" if os.geteuid() == 0 else "",
            f"listener {self.port} {self.host}",
            "allow_anonymous true" if "password_file" not in self.extra else "",
            "max_queued_messages 100000",
            "max_inflight_messages 100",
            "set_tcp_nodelay true",
            "persistence true",
            f"persistence_location {self.workdir / 'data'}/",
            "autosave_interval 1",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            self.extra,
        ]
        path = self.workdir / "mosquitto.conf"
        path.write_text("\n".join(line for line in lines if line) + "\n")
        return path

    def start(self) -> None:
        config = self._write_config()
        self._process = subprocess.Popen(
            [MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_for_port(self.host, self.port, timeout=10)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start; see {self.log_file}") from None

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its persistence database on the way out."""
        process, self._process = self._process, None
        stop(process, within=10)

    def restart(self, downtime: float = 0.0) -> None:
        self.stop()
        time.sleep(downtime)
        self.start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
