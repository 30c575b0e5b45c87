"""Child processes that print lines, read by tests without blocking the event loop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence


class Child:
    """A Python child process whose stdout lines are collected as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def python(
        cls, *arguments: str, env: dict[str, str] | None = None, with_stderr: bool = False
    ) -> Child:
        """``with_stderr``: collect its standard error too (where a service logs)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *arguments,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if with_stderr else None,
            env={**os.environ, **(env or {})},
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            self.lines.append(raw.decode().rstrip("\n"))
            self._changed.set()

    async def wait_for_line(self, predicate: object, within: float = 20.0) -> str:
        assert callable(predicate)

        async def until() -> str:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(until(), within)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def hang_up(self) -> None:
        self.process.send_signal(signal.SIGHUP)

    async def wait(self, within: float = 30.0) -> int:
        return await asyncio.wait_for(self.process.wait(), within)

    async def close(self) -> None:
        if self.process.returncode is None:
            self.kill()
            await self.process.wait()
        self._reader.cancel()


async def stop_all(children: Sequence[Child]) -> None:
    for child in children:
        await child.close()


async def herald(*arguments: str, within: float = 60.0) -> tuple[int, str, str]:
    """Run the ``herald`` command to completion: exit status, standard output, standard error."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "herald_shared.cli",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), within)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
