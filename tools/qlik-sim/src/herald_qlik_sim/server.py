"""``QlikSim``: the whole stand-in in one object, for tests, demos and ``herald qlik-sim serve``.

::

    async with QlikSim(tmp_path / "certs") as sim:          # port=0: a free port
        sim.faults.script_log_not_ready = 1
        client_tls = sim.certs.client_context()
        ...GET f"{sim.url}task?filter=id eq {TASK_FAILED_ID}&xrfkey=..." ...
        await sim.emit("failed", to=("127.0.0.1", 9998))    # new execution + datagram
        assert sim.calls["task_full"] == 1
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

from aiohttp import web

from herald_qlik_sim import emitter
from herald_qlik_sim.certs import CertPaths, ensure_certs
from herald_qlik_sim.data import TASK_FOR_OUTCOME, default_site
from herald_qlik_sim.executions import SCHEDULER_USER, record_outcome
from herald_qlik_sim.faults import CallLog, Faults
from herald_qlik_sim.model import Execution, Outcome, Site, Task
from herald_qlik_sim.qrs import Qrs


@dataclass(frozen=True)
class Emission:
    """One datagram sent, and the execution result it reports."""

    datagram: emitter.Datagram
    execution: Execution


class QlikSim:
    def __init__(
        self,
        certs_dir: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        site: Site | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.certs = CertPaths(Path(certs_dir).resolve())
        self.faults = faults or Faults()
        self.calls = CallLog()
        self.site = site or default_site()
        self._qrs = Qrs(self.site, self.faults, self.calls)
        self._runner: web.AppRunner | None = None

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The QRS base URL, ending in ``/qrs/``."""
        return f"{self.origin}/qrs/"

    @property
    def control_url(self) -> str:
        return f"{self.origin}/control"

    async def start(self) -> None:
        self.certs = await asyncio.to_thread(ensure_certs, self.certs.folder)
        runner = web.AppRunner(self._qrs.application(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self.certs.server_context())
        await site.start()
        self._runner = runner
        if self.port == 0:
            self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        self._qrs.release_hung()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> QlikSim:
        await self.start()
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def release_hung(self) -> None:
        """Answer (503) the calls held by the ``hang`` faults."""
        self._qrs.release_hung()

    def task(self, outcome: Outcome, task: str | None = None) -> Task:
        """The task by id or name; by default the sim's task for that outcome."""
        found = self.site.task(task or TASK_FOR_OUTCOME[outcome])
        if found is None:
            raise KeyError(f"no task {task!r} in the sim")
        return found

    def record(
        self,
        outcome: Outcome,
        task: str | None = None,
        *,
        execution_id: str | None = None,
        node: str | None = None,
        user: str = SCHEDULER_USER,
        start: datetime | None = None,
    ) -> Execution:
        """A fresh execution result for the task (its new last execution), without a datagram:
        a run whose datagram was lost, which only the repository knows about."""
        return record_outcome(
            self.site,
            self.task(outcome, task),
            outcome,
            execution_id=execution_id,
            node=node,
            user=user,
            start=start,
        )

    async def emit(
        self,
        outcome: Outcome,
        task: str | None = None,
        *,
        to: tuple[str, int] | str,
        count: int = 1,
        rate: float | None = None,
        user: str = SCHEDULER_USER,
        host_name: str | None = None,
    ) -> list[Emission]:
        """Per datagram: record a fresh execution, then send the scheduler's datagram about it.

        ``to`` is ``(host, port)`` or ``"HOST:PORT"``; ``rate`` caps datagrams per second.
        """
        address = emitter.parse_address(to) if isinstance(to, str) else to
        chosen = self.task(outcome, task)
        node = host_name or socket.gethostname()
        sent: list[Emission] = []
        async with emitter.UdpSender(address) as sender:
            async for _ in emitter.paced(count, rate):
                execution = record_outcome(self.site, chosen, outcome, node=node, user=user)
                item = emitter.datagram(
                    outcome,
                    chosen,
                    self.site.app_of(chosen),
                    execution_id=execution.execution_id,
                    host_name=node,
                    user=user,
                )
                await sender.send(item)
                sent.append(Emission(item, execution))
        return sent
