"""A console of the test's own, in this process, on a free port, fed by the session's Mosquitto
under the test's topic prefix; its accounts: ``olivia`` (operator) and ``victor`` (viewer)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest_asyncio

from herald_console.service import ConsoleService
from herald_console.settings import ConsoleSettings
from herald_shared.settings import BrokerSettings
from herald_testkit.waiting import wait_until

OPERATOR, OPERATOR_PASSWORD = "olivia", "operator-secret-password"
VIEWER, VIEWER_PASSWORD = "victor", "viewer-secret-password"


def hashed(password: str) -> str:
    # The lowest cost bcrypt allows: the tests check the hash, not its strength.
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def console_settings(state_dir: Path, **overrides: Any) -> ConsoleSettings:
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "state_dir": str(state_dir),
        "users": {
            OPERATOR: {"password_hash": hashed(OPERATOR_PASSWORD), "role": "operator"},
            VIEWER: {"password_hash": hashed(VIEWER_PASSWORD), "role": "viewer"},
        },
    }
    values.update(overrides)
    return ConsoleSettings.model_validate(values)


@pytest_asyncio.fixture
async def console(broker_settings: BrokerSettings, tmp_path: Path) -> AsyncIterator[ConsoleService]:
    service = ConsoleService(console_settings(tmp_path / "console"), broker_settings)
    await service.start()
    try:
        await wait_until(lambda: service.bus.connected, within=20)
        yield service
    finally:
        await service.stop()


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(name, password)}


def url(console: ConsoleService, path: str = "/") -> str:
    return f"http://127.0.0.1:{console.port}{path}"


@pytest_asyncio.fixture
async def operator() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=basic(OPERATOR, OPERATOR_PASSWORD)) as session:
        yield session


@pytest_asyncio.fixture
async def viewer() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=basic(VIEWER, VIEWER_PASSWORD)) as session:
        yield session
