"""A real service process (the probe: the runtime around one HTTP destination) killed and stopped."""

from __future__ import annotations

from pathlib import Path

from herald_shared import events, samples, topics
from herald_testkit.http import Answer, HttpReceiver
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer, publisher
from herald_testkit.processes import Child


def _config(tmp_path: Path, mosquitto: Mosquitto, prefix: str) -> Path:
    path = tmp_path / "herald.yaml"
    path.write_text(
        f"broker: {{host: {mosquitto.host}, port: {mosquitto.port}, topic_prefix: {prefix},"
        " instance: probe-0, reconnect_max: 1}\n"
        "health: {port: 0}\n"
    )
    return path


async def _probe(config: Path, receiver: HttpReceiver, state: Path, grace: float = 10) -> Child:
    return await Child.python(
        "-m",
        "herald_testkit.probe",
        "--config",
        str(config),
        "--url",
        receiver.url,
        "--state-dir",
        str(state),
        "--grace",
        str(grace),
    )


async def _publish_failed(mosquitto: Mosquitto, prefix: str) -> events.TaskFailed:
    event = samples.sample_failed()
    async with publisher(mosquitto.host, mosquitto.port) as client:
        await client.publish(topics.topic_of(prefix, event), events.encode(event), qos=1)
    return event


async def test_a_service_killed_mid_delivery_delivers_the_event_exactly_once_after_restart(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, mosquitto, topic_prefix)
    async with (
        HttpReceiver() as receiver,
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as seen,
    ):
        receiver.respond_with(Answer(hang=True))  # the destination takes the request and dies
        first = await _probe(config, receiver, tmp_path / "state")
        await seen.wait_for(lambda s: any(m.payload == b"online" for m in s))
        event = await _publish_failed(mosquitto, topic_prefix)
        await receiver.wait_for(lambda r: len(r.requests) == 1)
        first.kill()
        assert await first.wait() == -9
        receiver.release_hung()

        second = await _probe(config, receiver, tmp_path / "state")
        try:
            await receiver.wait_for(lambda r: len(r.accepted) == 1)
            delivered = await seen.wait_for(
                lambda s: any(b'"outcome":"delivered"' in m.payload for m in s)
            )
        finally:
            second.terminate()
            assert await second.wait() == 0
    assert [r.headers["Idempotency-Key"] for r in receiver.accepted] == [event.event_id]
    receipts = [m for m in delivered if "/v1/deliveries/" in m.topic]
    assert len(receipts) == 1


async def test_sigterm_during_a_slow_delivery_lets_it_finish_and_exits_zero(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, mosquitto, topic_prefix)
    async with (
        HttpReceiver() as receiver,
        Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/#") as seen,
    ):
        receiver.respond_with(Answer(delay=3.0))
        child = await _probe(config, receiver, tmp_path / "state", grace=15)
        await seen.wait_for(lambda s: any(m.payload == b"online" for m in s))
        await _publish_failed(mosquitto, topic_prefix)
        await receiver.wait_for(lambda r: len(r.requests) == 1)
        child.terminate()
        assert await child.wait() == 0
        # Finished, receipted, and the status says offline (a clean stop, not the will).
        assert len(receiver.accepted) == 1
        await seen.wait_for(lambda s: any(b'"outcome":"delivered"' in m.payload for m in s))
        await seen.wait_for(lambda s: s[-1].payload == b"offline")


async def test_a_delivery_longer_than_the_grace_period_resumes_at_the_next_start(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, mosquitto, topic_prefix)
    async with HttpReceiver() as receiver:
        receiver.respond_with(Answer(hang=True))
        child = await _probe(config, receiver, tmp_path / "state", grace=1)
        async with Observer(mosquitto.host, mosquitto.port, f"{topic_prefix}/v1/status/#") as seen:
            await seen.wait_for(lambda s: any(m.payload == b"online" for m in s))
        event = await _publish_failed(mosquitto, topic_prefix)
        await receiver.wait_for(lambda r: len(r.requests) == 1)
        child.terminate()
        assert await child.wait() == 0  # within its grace, not killed
        receiver.release_hung()

        again = await _probe(config, receiver, tmp_path / "state")
        try:
            await receiver.wait_for(lambda r: len(r.accepted) == 1)
        finally:
            again.terminate()
            await again.wait()
    assert receiver.accepted[0].headers["Idempotency-Key"] == event.event_id
