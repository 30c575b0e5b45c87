"""A real Mosquitto broker on a free loopback port, started and stopped by the test itself.

Configured as docs/testing.md found necessary: ``user root`` when run as root
(otherwise it drops to ``mosquitto`` and cannot write its persistence folder), a raised
``max_queued_messages`` (the default 1000 silently drops QoS 1 messages to slow subscribers),
persistence on with a one-second autosave (both can be set, e.g. to the production values, which
:func:`shipped_setting` reads), and logging to a file (stdout is block-buffered).
:func:`with_accounts` adds a password file and an ACL (what the refusal and security tests need);
:class:`ShippedMosquitto` runs the production configuration (deploy/mosquitto) instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Self

from herald_testkit.ports import free_port, wait_for_port
from herald_testkit.servers import stop
from herald_testkit.tls import Certificates

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Mosquitto:
    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        extra: str = "",
        autosave_interval: int = 1,
        max_queued_messages: int = 100_000,
    ) -> None:
        self.workdir = workdir
        self.autosave_interval = autosave_interval
        self.max_queued_messages = max_queued_messages
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
            f"max_queued_messages {self.max_queued_messages}",
            "max_inflight_messages 100",
            "set_tcp_nodelay true",
            "persistence true",
            f"persistence_location {self.workdir / 'data'}/",
            f"autosave_interval {self.autosave_interval}",
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

    def kill(self) -> None:
        """SIGKILL: a crash, so only what the last autosave wrote survives."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()

    def restart(self, downtime: float = 0.0) -> None:
        self.stop()
        time.sleep(downtime)
        self.start()

    def saves(self) -> int:
        """How often the broker wrote its persistence database (needs ``log_type information``)."""
        if not self.log_file.exists():
            return 0
        return self.log_file.read_text(errors="replace").count("Saving in-memory database")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def write_passwords(path: Path, accounts: dict[str, str]) -> Path:
    """A Mosquitto password file at ``path`` with ``accounts`` (name -> password) added."""
    path.touch()
    for account, password in accounts.items():
        subprocess.run(
            ["mosquitto_passwd", "-b", str(path), account, password],
            check=True,
            capture_output=True,
        )
    return path


def with_accounts(
    workdir: Path, accounts: dict[str, str], *, acl: str | None = None, extra: str = ""
) -> Mosquitto:
    """A (not yet started) Mosquitto that lets in only ``accounts``, and, given ``acl`` (the
    text of a Mosquitto ACL file), lets each do only what it grants."""
    workdir.mkdir(parents=True, exist_ok=True)
    lines = [f"password_file {write_passwords(workdir / 'passwords', accounts)}"]
    if acl is not None:
        (workdir / "acl").write_text(acl)
        lines.append(f"acl_file {workdir / 'acl'}")
    return Mosquitto(workdir, extra="\n".join([*lines, extra]))


DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "mosquitto"


def shipped_setting(key: str) -> str:
    """The value of ``key`` in ``deploy/mosquitto/mosquitto.conf``, as production runs it."""
    for line in (DEPLOY / "mosquitto.conf").read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return value.strip()
    raise KeyError(f"{key} is not set in {DEPLOY / 'mosquitto.conf'}")


class ShippedMosquitto(Mosquitto):
    """Mosquitto with ``deploy/mosquitto/mosquitto.conf`` as shipped, moved onto loopback.

    Only what cannot work on a test machine changes: each listener gets a free loopback port
    (:attr:`ports` maps the file's port to it; :attr:`port` is 1883's), the mounted files become
    the repository's ACLs, password files made from ``accounts`` (``herald-…`` accounts in
    ``passwd``, the others in ``passwd-consumers``, as deploy/mosquitto/compose-start.sh does)
    and ``certificates``, the log goes to a file, and ``user root`` is added when run as root.
    """

    def __init__(
        self, workdir: Path, deploy: Path, accounts: dict[str, str], certificates: Certificates
    ) -> None:
        super().__init__(workdir)
        self.deploy = deploy
        self.certificates = certificates
        self.source = (deploy / "mosquitto.conf").read_text()
        self.ports = {int(line.split()[1]): free_port() for line in self._listeners()}
        self.port = self.ports[1883]
        services = {a: p for a, p in accounts.items() if a.startswith("herald-")}
        consumers = {a: p for a, p in accounts.items() if a not in services}
        write_passwords(workdir / "passwd", services)
        write_passwords(workdir / "passwd-consumers", consumers)

    def _listeners(self) -> list[str]:
        return [line for line in self.source.splitlines() if line.startswith("listener ")]

    def _write_config(self) -> Path:
        lines = ["user root"] if os.geteuid() == 0 else []
        lines += [self._moved(line) for line in self.source.splitlines()]
        path = self.workdir / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _moved(self, line: str) -> str:
        key, _, value = line.partition(" ")
        if key == "listener":
            return f"listener {self.ports[int(value)]} {self.host}"
        if key == "log_dest":
            return f"log_dest file {self.log_file}"
        if key in ("certfile", "keyfile"):
            return f"{key} {self.certificates.cert if key == 'certfile' else self.certificates.key}"
        if value.startswith("/mosquitto/data/"):
            return f"{key} {self.workdir / 'data'}/"
        if value.startswith("/mosquitto/config/"):
            name = value.removeprefix("/mosquitto/config/")
            folder = self.workdir if name.startswith("passwd") else self.deploy
            return f"{key} {folder / name}"
        return line
