"""SIGHUP and POST /-/reload: a valid file is applied in the running process, a broken one refused.

A real ``herald up`` process with the log archiver against the suite's Mosquitto: what the
archive holds shows which configuration was applied, and the process's own log and health port
say what happened, as an operator would see them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import msgspec

from herald_shared import events, samples, topics
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer, Seen, publisher
from herald_testkit.ports import free_port
from herald_testkit.processes import Child


def _write(path: Path, mosquitto: Mosquitto, prefix: str, port: int, archive: str) -> None:
    path.write_text(
        f"broker: {{host: {mosquitto.host}, port: {mosquitto.port}, topic_prefix: {prefix},"
        " instance: reload-0}\n"
        f"health: {{port: {port}}}\n"
        f"log_archiver:\n  directory: {path.parent / 'archive'}\n"
        f"  state_dir: {path.parent / 'state'}\n"
        "  retention_days: 0\n"  # the samples' day folders are years old
        f"{archive}"
    )


async def _publish(mosquitto: Mosquitto, prefix: str, *published: events.Event) -> None:
    async with publisher(mosquitto.host, mosquitto.port) as client:
        for event in published:
            await client.publish(topics.topic_of(prefix, event), events.encode(event), qos=1)


def _aborted(n: int) -> events.TaskAborted:
    """The n-th abort of the sample task; each archives to a file of its own (by its time)."""
    return msgspec.structs.replace(
        samples.sample_aborted(),
        event_id=f"aborted-{n}",
        log_timestamp=f"2024-10-10 15:3{n}:00,000",
    )


def _failed(n: int) -> events.TaskFailed:
    return msgspec.structs.replace(samples.sample_failed(), event_id=f"failed-{n}")


def _online(times: int) -> Callable[[list[Seen]], bool]:
    return lambda seen: sum(m.payload == b"online" for m in seen) >= times


def _delivered(event_id: str) -> Callable[[list[Seen]], bool]:
    wanted = f'"event_id":"{event_id}"'.encode()
    return lambda seen: any("/deliveries/" in m.topic and wanted in m.payload for m in seen)


def _archived(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "archive").rglob("*") if p.is_file())


async def _get(port: int, path: str, method: str = "GET") -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


async def _ready(port: int) -> None:
    async def answered_200() -> bool:
        try:
            return (await _get(port, "/-/ready"))[0] == 200
        except aiohttp.ClientConnectionError:  # the health server is not listening yet
            return False

    async def until() -> None:
        while not await answered_200():
            await asyncio.sleep(0.1)

    await asyncio.wait_for(until(), 20)


async def test_sighup_applies_a_changed_file_and_keeps_running_on_a_broken_one(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    config, port = tmp_path / "herald.yaml", free_port()
    _write(config, mosquitto, topic_prefix, port, "  include_aborted: false\n")
    async with Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as seen:
        up = await Child.python(
            "-m", "herald_shared.cli", "up", "--config", str(config), with_stderr=True
        )
        try:
            await seen.wait_for(_online(1))
            # An aborted reload is not archived by default; the failure after it shows that
            # the archiver has taken both.
            await _publish(mosquitto, topic_prefix, _aborted(1), _failed(1))
            await seen.wait_for(_delivered("failed-1"))
            assert len(_archived(tmp_path)) == 1

            _write(config, mosquitto, topic_prefix, port, "  include_aborted: true\n")
            up.hang_up()
            await up.wait_for_line(lambda line: "configuration reloaded" in line)
            await seen.wait_for(_online(2))  # the restarted archiver has its session back
            await _publish(mosquitto, topic_prefix, _aborted(2))
            await seen.wait_for(_delivered("aborted-2"))
            assert len(_archived(tmp_path)) == 2

            _write(config, mosquitto, topic_prefix, port, "  include_aborted: sometimes\n")
            up.hang_up()
            refused = await up.wait_for_line(lambda line: "not reloaded" in line)
            assert "include_aborted" in refused
            assert "previous one" in refused
            status, readiness = await _get(port, "/-/ready")
            assert (status, readiness.startswith("ok: log-archiver: connected")) == (200, True)
            await _publish(mosquitto, topic_prefix, _aborted(3))
            await seen.wait_for(_delivered("aborted-3"))
            assert len(_archived(tmp_path)) == 3  # still on the file it last applied
        finally:
            up.terminate()
            assert await up.wait() == 0


async def test_post_reload_answers_what_happened_and_the_prometheus_style_aliases_answer(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    config, port = tmp_path / "herald.yaml", free_port()
    _write(config, mosquitto, topic_prefix, port, "")
    up = await Child.python(
        "-m", "herald_shared.cli", "up", "--config", str(config), with_stderr=True
    )
    try:
        await _ready(port)  # started and connected
        assert (await _get(port, "/-/healthy"))[0] == 200
        assert (await _get(port, "/-/reload"))[0] == 405  # a GET never reloads

        config.write_text(config.read_text().replace(f"port: {mosquitto.port}", "port: nine"))
        status, text = await _get(port, "/-/reload", "POST")
        assert status == 400
        assert "broker.port" in text
        assert (await _get(port, "/-/ready"))[0] == 200

        _write(config, mosquitto, topic_prefix, port, "")
        status, text = await _get(port, "/-/reload", "POST")
        assert (status, text) == (
            200,
            f"configuration reloaded from {config}: running log-archiver\n",
        )
        await _ready(port)  # the restarted archiver reconnects
    finally:
        up.terminate()
        assert await up.wait() == 0
