"""A small real pipeline for the console's page tests: Mosquitto, the Qlik Sense stand-in,
ingest, the emailer (to a real SMTP server), the log archiver and the console, each a
``herald run`` process of its own, as in production: ``herald_testkit.pipeline`` without the
destinations these tests do not look at."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import msgspec

from herald_testkit.pipeline import (
    SMTP_PASSWORD,
    SMTP_USER,
    Destinations,
    Pipeline,
    Service,
)
from herald_testkit.ports import free_port
from herald_testkit.smtp_server import SmtpServer

from .conftest import OPERATOR, OPERATOR_PASSWORD, VIEWER, VIEWER_PASSWORD, hashed

SUBSCRIBERS = ("emailer", "log-archiver", "console")


class ConsolePipeline(Pipeline):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.services = {
            name: Service(name, free_port(), self.workdir / "logs" / f"{name}.log")
            for name in (*SUBSCRIBERS, "ingest")
        }
        self.console_port = free_port()

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.console_port}"

    async def start(self) -> None:
        await self.start_groundwork()
        await asyncio.gather(*(self.start_service(name) for name in SUBSCRIBERS))
        await self.start_service("ingest")

    def render_config(self) -> str:
        state = self.workdir / "state"
        config: dict[str, Any] = {
            **self.core_sections(),
            "emailer": self.emailer_section(),
            "log_archiver": {
                "state_dir": str(state / "log-archiver"),
                "directory": str(self.archive),
                "delivery": {"initial_backoff": "200ms", "max_backoff": "2s"},
            },
            "console": {
                "state_dir": str(state / "console"),
                "listen": f"127.0.0.1:{self.console_port}",
                "users": {
                    OPERATOR: {"password_hash": hashed(OPERATOR_PASSWORD), "role": "operator"},
                    VIEWER: {"password_hash": hashed(VIEWER_PASSWORD), "role": "viewer"},
                },
            },
        }
        return msgspec.json.encode(config).decode() + "\n"  # JSON is YAML


@contextlib.asynccontextmanager
async def console_system(work: Path) -> AsyncIterator[ConsolePipeline]:
    async with SmtpServer(work / "smtp", users={SMTP_USER: SMTP_PASSWORD}) as smtp:
        # Only the SMTP server is this pipeline's: the other destinations are not configured.
        unused = cast(Any, None)
        destinations = Destinations(smtp, unused, unused, unused, unused, unused)
        system = ConsolePipeline(work / "herald", destinations)
        async with system:
            yield system
