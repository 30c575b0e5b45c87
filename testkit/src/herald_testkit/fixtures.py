"""pytest fixtures shared by Herald's tests (loaded from tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from herald_shared.settings import BrokerSettings
from herald_testkit.mosquitto import Mosquitto


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One broker for the whole run; tests keep apart by their own topic prefix."""
    with Mosquitto(tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker


@pytest.fixture
def private_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of the test's own, for tests that stop or restart it."""
    with Mosquitto(tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def broker_settings_for(broker: Mosquitto, prefix: str, **overrides: object) -> BrokerSettings:
    return BrokerSettings.model_validate(broker_section(broker, prefix, **overrides))


def broker_section(broker: Mosquitto, prefix: str, **overrides: object) -> dict[str, object]:
    """The ``broker:`` section of a test's configuration file (as a dict: JSON is YAML)."""
    values: dict[str, object] = {
        "host": broker.host,
        "port": broker.port,
        "topic_prefix": prefix,
        # The client id (herald-<service>-<instance>) has a persistent session: one per test
        # keeps a test's unacknowledged messages from reaching the next test's service.
        "instance": prefix,
        "reconnect_min": 0.1,
        "reconnect_max": 1.0,
    }
    values.update(overrides)
    return values


@pytest.fixture
def broker_settings(mosquitto: Mosquitto, topic_prefix: str) -> BrokerSettings:
    return broker_settings_for(mosquitto, topic_prefix)
