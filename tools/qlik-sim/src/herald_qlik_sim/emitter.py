"""Scheduler datagrams: what the log4net UdpAppender of a Sense node sends (docs/butler-compatibility.md §1.2–1.4).

One UTF-8 datagram per event, 11 fields joined by ``;`` with no quoting::

    /scheduler-task-failed/;<host>;<task name>;<app name>;<DIR\\user>;<task id>;<app id>;
    2024-10-10 15:35:25,412;INFO;<execution id>;Max retries reached

Success uses the type ``/scheduler-task-success//`` (two slashes) exactly as the shipped
appender XML does. A task name containing ``;`` yields more than 11 fields, as it does for real.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

from herald_qlik_sim.executions import SCHEDULER_USER
from herald_qlik_sim.model import App, Outcome, Task

MESSAGE_TYPE: dict[Outcome, str] = {
    "failed": "/scheduler-task-failed/",
    "aborted": "/scheduler-task-aborted/",
    "succeeded": "/scheduler-task-success//",
}
MESSAGE: dict[Outcome, str] = {
    "failed": "Max retries reached",
    "aborted": "Execution State Change to Aborting",
    "succeeded": "Execution State Change to FinishedSuccess",
}


@dataclass(frozen=True)
class Datagram:
    outcome: Outcome
    host_name: str
    task_name: str
    app_name: str
    user: str
    task_id: str
    app_id: str
    timestamp: str
    level: str
    execution_id: str
    message: str

    def fields(self) -> list[str]:
        return [
            MESSAGE_TYPE[self.outcome],
            self.host_name,
            self.task_name,
            self.app_name,
            self.user,
            self.task_id,
            self.app_id,
            self.timestamp,
            self.level,
            self.execution_id,
            self.message,
        ]

    @property
    def text(self) -> str:
        return ";".join(self.fields())

    def encode(self) -> bytes:
        return self.text.encode()


def log4net_time(moment: datetime | None = None) -> str:
    """``2024-10-10 15:35:25,412``: local time, comma before the milliseconds."""
    local = (moment or datetime.now()).astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S,") + f"{local.microsecond // 1000:03d}"


def datagram(
    outcome: Outcome,
    task: Task,
    app: App | None,
    *,
    execution_id: str | None = None,
    host_name: str | None = None,
    user: str = SCHEDULER_USER,
    level: str = "INFO",
    when: datetime | None = None,
) -> Datagram:
    return Datagram(
        outcome=outcome,
        host_name=host_name or socket.gethostname(),
        task_name=task.name,
        app_name=app.name if app else "",
        user=user,
        task_id=task.id,
        app_id=app.id if app else "",
        timestamp=log4net_time(when),
        level=level,
        execution_id=execution_id or str(uuid.uuid4()),
        message=MESSAGE[outcome],
    )


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9998`` for IPv6) → (host, port)."""
    host, separator, port = text.rpartition(":")
    if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


async def paced(count: int, rate: float | None) -> AsyncIterator[int]:
    """0 … count-1, at most ``rate`` per second (None: as fast as possible)."""
    started = time.monotonic()
    for index in range(count):
        if rate and index:
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        yield index


class UdpSender:
    """A UDP socket aimed at one receiver (the host name is resolved once)."""

    def __init__(self, to: tuple[str, int]) -> None:
        self.to = to
        self._socket: socket.socket | None = None
        self._address: tuple[Any, ...] | None = None

    async def __aenter__(self) -> UdpSender:
        loop = asyncio.get_running_loop()
        family, kind, protocol, _, address = (
            await loop.getaddrinfo(*self.to, type=socket.SOCK_DGRAM)
        )[0]
        self._socket = socket.socket(family, kind, protocol)
        self._socket.setblocking(False)
        self._address = address
        return self

    async def send(self, item: Datagram) -> None:
        if self._socket is None or self._address is None:
            raise RuntimeError("UdpSender.send outside `async with`")
        await asyncio.get_running_loop().sock_sendto(self._socket, item.encode(), self._address)

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
