"""Supervised background work: periodic work that fails goes on, pools stop with a grace period,
and a vital task that ends is seen on /readyz and /livez as a kubelet probes them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from herald_shared.health import HealthServer
from herald_shared.settings import HealthSettings
from herald_shared.supervision import Supervisor, WorkerPool, every
from herald_testkit.waiting import wait_until

# --- every() --------------------------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_periodic_work_that_fails_is_logged_and_runs_again(
    asynchronous: bool, caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[int] = []

    def once() -> None:
        runs.append(len(runs))
        if len(runs) <= 2:
            raise OSError(f"run {len(runs)}: the disk is gone")

    async def once_async() -> None:
        once()

    work = once_async if asynchronous else once
    periodic = asyncio.create_task(every(0.01, work, what="purging the ledger"))
    await wait_until(lambda: len(runs) >= 4)
    assert not periodic.done()  # still running after two failures
    periodic.cancel()
    await asyncio.gather(periodic, return_exceptions=True)
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failures] == [
        "purging the ledger failed; trying again in 0.01 s"
    ] * 2
    assert all(r.exc_info is not None for r in failures)  # with the traceback


# --- WorkerPool -----------------------------------------------------------------------------


class Blocking:
    """A handler whose items finish when the test says so (or never)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []
        self.release = asyncio.Event()

    async def __call__(self, item: str) -> None:
        self.started.append(item)
        await self.release.wait()
        self.finished.append(item)


async def test_stopping_a_pool_lets_the_item_in_hand_finish_within_the_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = Blocking()
    pool = WorkerPool("relay", handler, size=3, supervisor=Supervisor("svc"))
    pool.start()
    pool.put("alert-1")
    await wait_until(lambda: handler.started == ["alert-1"])
    caplog.set_level(logging.INFO, logger="herald_shared.supervision")
    stopping = asyncio.create_task(pool.stop(600.0, what="deliveries"))
    await wait_until(
        lambda: any("1 deliveries in flight" in r.getMessage() for r in caplog.records)
    )
    pool.put("alert-2")  # arrives during the stop: no worker takes it any more
    handler.release.set()
    await asyncio.wait_for(stopping, 30)  # once the item is done, not after all of the grace
    assert handler.finished == ["alert-1"]
    assert all(worker.done() for worker in pool.workers)
    assert pool.queue.qsize() == 1  # still queued (and still pending in the ledger)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_an_item_that_outlasts_the_grace_is_cancelled_and_said_to_resume(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = Blocking()  # never released
    supervisor = Supervisor("svc")
    pool = WorkerPool("relay", handler, size=2, supervisor=supervisor)
    pool.start()
    pool.put("alert-1")
    await wait_until(lambda: handler.started == ["alert-1"])
    await pool.stop(0.05, what="deliveries")
    assert handler.finished == []
    assert all(worker.cancelled() for worker in pool.workers)
    assert supervisor.health() == (True, "every vital task is running")  # stopped, not failed
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == (
        "1 deliveries did not finish within the grace period; they resume at the next start"
    )


# --- Supervisor, seen from the health endpoints ------------------------------------------------


@pytest.fixture
async def probed() -> AsyncIterator[tuple[Supervisor, HealthServer]]:
    supervisor = Supervisor("chat-notifier")
    health = HealthServer(HealthSettings(host="127.0.0.1", port=0))
    health.add_check("chat-notifier", supervisor.health, liveness=supervisor.health)
    health.start()
    health.mark_started()
    yield supervisor, health
    health.stop()
    await supervisor.stop()


async def probe(health: HealthServer, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{health.port}{path}") as answer,
    ):
        return answer.status, await answer.text()


async def test_a_vital_task_that_raises_fails_readyz_with_the_reason_and_livez(
    probed: tuple[Supervisor, HealthServer], caplog: pytest.LogCaptureFixture
) -> None:
    supervisor, health = probed
    crash = asyncio.Event()

    async def outbox_loop() -> None:
        await crash.wait()
        raise KeyError("seq")

    supervisor.spawn(outbox_loop(), "the outbox loop")
    assert (await probe(health, "/readyz"))[0] == 200
    assert (await probe(health, "/livez"))[0] == 200
    crash.set()
    await wait_until(lambda: supervisor.failure is not None)
    reason = "the outbox loop ended unexpectedly (KeyError: 'seq'); restart the process"
    assert await probe(health, "/readyz") == (503, f"not ready: chat-notifier: {reason}\n")
    assert await probe(health, "/livez") == (503, f"not alive: chat-notifier: {reason}\n")
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.getMessage() == f"chat-notifier: {reason}"
    assert error.exc_info is not None


async def test_a_vital_task_that_returns_is_a_failure_too_and_the_first_one_is_kept(
    probed: tuple[Supervisor, HealthServer],
) -> None:
    supervisor, health = probed

    async def returns() -> None:
        return None

    async def raises() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("later")

    await asyncio.wait({supervisor.spawn(returns(), "the broker connection loop")})
    await asyncio.wait({supervisor.spawn(raises(), "relay worker 0")})
    status, body = await probe(health, "/livez")
    assert status == 503
    assert "the broker connection loop ended unexpectedly (it returned)" in body


async def test_a_vital_task_cancelled_by_its_owner_is_no_failure(
    probed: tuple[Supervisor, HealthServer],
) -> None:
    supervisor, health = probed
    task = supervisor.spawn(asyncio.Event().wait(), "the outbox loop")
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await probe(health, "/livez") == (
        200,
        "ok: chat-notifier: every vital task is running\n",
    )
