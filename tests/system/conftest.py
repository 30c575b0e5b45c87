"""One whole Herald system per test module: destinations in this process, the rest in their own.

Starting Mosquitto, InfluxDB, the QRS stand-in and six services takes several seconds on two
cores, so a module shares one system; every test sends its own executions and counts only the
alerts of its own event ids. Tests that break something put it back before they end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from herald_testkit.chat_standins import ChatStandins
from herald_testkit.http import HttpReceiver
from herald_testkit.incident_standins import NewRelicStandIn, Signl4StandIn
from herald_testkit.influxdb import InfluxDB
from herald_testkit.pipeline import (
    NEW_RELIC_ACCOUNT,
    NEW_RELIC_KEY,
    SMTP_PASSWORD,
    SMTP_USER,
    Destinations,
    Pipeline,
)
from herald_testkit.smtp_server import SmtpServer


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def system(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pipeline]:
    work: Path = tmp_path_factory.mktemp("system")
    influx = InfluxDB(work / "influxdb")
    influx.start()
    try:
        async with (
            SmtpServer(work / "smtp", users={SMTP_USER: SMTP_PASSWORD}) as smtp,
            ChatStandins() as chat,
            NewRelicStandIn({NEW_RELIC_ACCOUNT: NEW_RELIC_KEY}) as new_relic,
            Signl4StandIn("signl4-team-secret") as signl4,
            HttpReceiver() as webhook,
        ):
            destinations = Destinations(smtp, chat, new_relic, signl4, webhook, influx)
            async with Pipeline(work / "herald", destinations) as pipeline:
                yield pipeline
    finally:
        influx.stop()
