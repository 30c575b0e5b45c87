"""One whole Herald system per test module: destinations in this process, the rest in their own.

Starting Mosquitto, InfluxDB, the QRS stand-in and six services takes several seconds on two
cores, so a module shares one system; every test sends its own executions and counts only the
alerts of its own event ids. Tests that break something put it back before they end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from herald_testkit.pipeline import Pipeline, whole_system


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def system(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pipeline]:
    async with whole_system(tmp_path_factory.mktemp("system")) as pipeline:
        yield pipeline
