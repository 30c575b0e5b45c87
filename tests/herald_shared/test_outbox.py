"""The durable outbox on a real SQLite file, publishing to an in-memory bus.

No broker is needed for what the outbox promises itself (order, delete after success, replay
after a restart, keeping what is refused); the refusal by a real Mosquitto's ACL is in
``test_bus_refused.py``. Faults are injected into the publisher (an error it raises) or into
SQLite itself (a trigger that makes a statement fail).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from herald_shared.bus import BusError, PublishRefused
from herald_shared.db import Database
from herald_shared.outbox import Outbox
from herald_shared.supervision import Supervisor
from herald_testkit.memory_bus import MemoryBus
from herald_testkit.waiting import wait_until


class Faulty(MemoryBus):
    """Raises the given errors for its first publishes, then publishes."""

    def __init__(self, service: str, *errors: BaseException) -> None:
        super().__init__(service)
        self.errors = list(errors)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        if self.errors:
            raise self.errors.pop(0)
        await super().publish(topic, payload, retain=retain)


class Refusing(MemoryBus):
    """A broker whose ACL denies every topic under ``denied/``."""

    def __init__(self, service: str) -> None:
        super().__init__(service)
        self.refusals = 0

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        if topic.startswith("denied/"):
            self.refusals += 1
            raise PublishRefused(topic, "Not authorized", 0x87)
        await super().publish(topic, payload, retain=retain)


class Held(MemoryBus):
    """Each publish waits for the broker's PUBACK until the test releases it."""

    def __init__(self, service: str) -> None:
        super().__init__(service)
        self.started = asyncio.Event()
        self.puback = asyncio.Event()

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.started.set()
        await self.puback.wait()
        await super().publish(topic, payload, retain=retain)


class Away(MemoryBus):
    """A broker that never answers: the bus never connects."""

    async def wait_connected(self) -> None:
        await asyncio.Event().wait()


@pytest.fixture
def service(request: pytest.FixtureRequest) -> str:
    """A service name of the test's own, so the outbox gauge is the test's alone."""
    return f"outbox-{request.node.name}"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    opened = Database(tmp_path / "outbox.sqlite3")
    yield opened
    opened.close()


def gauge(service: str) -> float | None:
    return REGISTRY.get_sample_value("herald_outbox_messages", {"service": service})


def stored(path: Path) -> list[tuple[str, bytes]]:
    """What a process starting now would find in the file."""
    with contextlib.closing(sqlite3.connect(path)) as sql:
        return [(t, bytes(p)) for t, p in sql.execute("SELECT topic, payload FROM outbox")]


@contextlib.asynccontextmanager
async def publishing(outbox: Outbox) -> AsyncIterator[asyncio.Task[None]]:
    """The outbox loop for the test's duration; it must not have ended on its own."""
    loop = asyncio.create_task(outbox.run())
    try:
        yield loop
    finally:
        ended = loop.done()
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    assert not ended, "the outbox loop ended on its own"


async def test_messages_are_published_in_the_order_they_were_stored(
    db: Database, service: str
) -> None:
    bus = MemoryBus(service)
    outbox = Outbox(db, bus, batch=50)
    sent = [(f"herald/v1/events/task_failed/reload/t{n % 7}", f"{n}".encode()) for n in range(230)]
    async with publishing(outbox):
        for topic, payload in sent:
            outbox.add(topic, payload)
        outbox.add("herald/v1/status/ingest/a", b"online", retain=True)
        await asyncio.wait_for(outbox.wait_empty(), 30)
    assert [(m.topic, m.payload) for m in bus.seen[:-1]] == sent
    assert bus.seen[-1].retain
    assert not any(m.retain for m in bus.seen[:-1])
    assert outbox.depth() == 0
    assert stored(db.path) == []
    assert gauge(service) == 0


async def test_a_message_is_deleted_only_once_the_broker_acknowledged_it(
    db: Database, service: str
) -> None:
    bus = Held(service)
    outbox = Outbox(db, bus)
    async with publishing(outbox):
        outbox.add("herald/v1/events/task_failed/reload/t1", b"alert")
        await asyncio.wait_for(bus.started.wait(), 10)
        # Published, not yet acknowledged: a process killed now finds it and publishes it again.
        assert stored(db.path) == [("herald/v1/events/task_failed/reload/t1", b"alert")]
        assert gauge(service) == 1
        bus.puback.set()
        await asyncio.wait_for(outbox.wait_empty(), 10)
    assert stored(db.path) == []
    assert [m.payload for m in bus.seen] == [b"alert"]


async def test_what_was_stored_while_the_broker_was_away_is_published_after_a_restart(
    tmp_path: Path, service: str
) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Database(path)
    outbox = Outbox(first, Away(service))
    async with publishing(outbox):
        for n in range(3):
            outbox.add(f"herald/v1/events/task_failed/reload/t{n}", f"{n}".encode())
        await asyncio.sleep(0)  # the loop runs, and waits for a connection
    first.close()

    again = Database(path)
    bus = MemoryBus(service)
    outbox = Outbox(again, bus)
    assert gauge(service) == 3  # counted from the file at start
    async with publishing(outbox):
        await asyncio.wait_for(outbox.wait_empty(), 10)
    assert [m.payload for m in bus.seen] == [b"0", b"1", b"2"]
    assert outbox.depth() == 0
    assert gauge(service) == 0
    again.close()


async def test_a_refused_message_stays_stored_and_counted_while_the_others_go_out(
    db: Database, service: str, caplog: pytest.LogCaptureFixture
) -> None:
    bus = Refusing(service)
    outbox = Outbox(db, bus)
    with caplog.at_level(logging.ERROR, logger="herald_shared.outbox"):
        async with publishing(outbox):
            outbox.add("denied/v1/events/task_failed/reload/t1", b"refused")
            outbox.add("herald/v1/events/task_failed/reload/t2", b"accepted")
            await wait_until(lambda: any(r.levelno == logging.ERROR for r in caplog.records))
            assert bus.refusals == 1
    assert stored(db.path) == [("denied/v1/events/task_failed/reload/t1", b"refused")]
    assert [m.payload for m in bus.seen] == [b"accepted"]
    assert gauge(service) == 1  # herald_outbox_messages still counts it
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "denied/v1/events/task_failed/reload/t1" in error
    assert "Not authorized" in error


def add_then_fail(db: Database, outbox: Outbox) -> None:
    """A caller's transaction that stores a receipt, then fails on its own work."""
    with db.transaction() as sql:
        outbox.add("herald/v1/deliveries/emailer/e1", b"receipt of a write that failed")
        sql.execute("INSERT INTO no_such_table VALUES (1)")


async def test_a_message_whose_transaction_rolled_back_is_neither_published_nor_counted(
    db: Database, service: str
) -> None:
    bus = MemoryBus(service)
    outbox = Outbox(db, bus)
    async with publishing(outbox):
        with pytest.raises(sqlite3.OperationalError):
            add_then_fail(db, outbox)
        outbox.add("herald/v1/deliveries/emailer/e2", b"receipt")
        await asyncio.wait_for(outbox.wait_empty(), 10)
    assert [m.payload for m in bus.seen] == [b"receipt"]
    assert gauge(service) == 0  # the gauge says what is stored, not what was attempted


# --- faults ------------------------------------------------------------------------------


async def test_an_unexpected_publish_error_is_logged_with_its_traceback_and_the_loop_goes_on(
    db: Database, service: str, caplog: pytest.LogCaptureFixture
) -> None:
    bus = Faulty(service, RuntimeError("a bug in the bus"), BusError("not connected"))
    outbox = Outbox(db, bus)
    with caplog.at_level(logging.ERROR, logger="herald_shared.outbox"):
        async with publishing(outbox):
            outbox.add("herald/v1/events/task_failed/reload/t1", b"first")
            outbox.add("herald/v1/events/task_failed/reload/t2", b"second")
            await asyncio.wait_for(outbox.wait_empty(), 20)
    assert sorted(m.payload for m in bus.seen) == [b"first", b"second"]
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "a bug in the bus" in error.getMessage()
    assert error.exc_info is not None  # the traceback, for the bug report


async def test_the_outbox_loop_ending_makes_the_service_unready_naming_it(
    db: Database, service: str
) -> None:
    bus = MemoryBus(service)
    outbox = Outbox(db, bus)
    # A real SQLite failure after the PUBACK: the message cannot be deleted.
    db.connection.execute(
        "CREATE TRIGGER injected BEFORE DELETE ON outbox"
        " BEGIN SELECT RAISE(ABORT, 'injected: cannot delete'); END"
    )
    supervisor = Supervisor(service)
    loop = supervisor.spawn(outbox.run(), "the outbox loop")
    outbox.add("herald/v1/events/task_failed/reload/t1", b"alert")
    await asyncio.wait({loop}, timeout=10)
    healthy, why = supervisor.health()
    assert not healthy
    assert why.startswith("the outbox loop ended unexpectedly (IntegrityError: injected")
    # Published but not forgotten: the next process publishes it again rather than lose it.
    assert stored(db.path) == [("herald/v1/events/task_failed/reload/t1", b"alert")]
    await supervisor.stop()
