"""A subscriber service acknowledges to ingest every event it stored, duplicates again, and
what it recorded before a crash at its next start.

The probe (the real subscriber frame around one HTTP destination) runs against the shared
Mosquitto; an observer reads ``<prefix>/v1/acks/probe/<instance>``.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from herald_shared import samples, topics
from herald_shared.db import database_for
from herald_shared.delivery.acks import Acknowledgements
from herald_shared.outbox import Outbox
from herald_shared.settings import BrokerSettings, DeliverySettings
from herald_testkit.http import HttpReceiver
from herald_testkit.memory_bus import MemoryBus
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer, Seen
from herald_testkit.probe import ProbeSettings, build
from herald_testkit.subscribers import publish_events, running


def acknowledged(seen: list[Seen]) -> list[str]:
    return [i for m in seen for i in msgspec.json.decode(m.payload, type=list[str])]


async def test_every_stored_event_is_acknowledged_and_a_redelivered_one_again(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    failed, aborted = samples.sample_failed(), samples.sample_aborted()
    acks = topics.acks_topic(topic_prefix, "probe", broker_settings.instance)
    async with HttpReceiver() as receiver, Observer(mosquitto.host, mosquitto.port, acks) as seen:
        settings = ProbeSettings(
            url=receiver.url, state_dir=tmp_path, delivery=DeliverySettings(initial_backoff=0.1)
        )
        async with running(build, settings, broker_settings):
            await publish_events(mosquitto, topic_prefix, failed, aborted)
            await seen.wait_for(lambda s: len(acknowledged(s)) == 2)
            await publish_events(mosquitto, topic_prefix, failed)  # ingest resends it
            await seen.wait_for(lambda s: len(acknowledged(s)) == 3)
            await receiver.wait_for(lambda r: len(r.accepted) == 2)
    ids = acknowledged(seen.seen)
    assert sorted(ids) == sorted([failed.event_id, aborted.event_id, failed.event_id])
    assert ids[-1] == failed.event_id
    assert len(receiver.accepted) == 2  # the duplicate was acknowledged, not delivered again


async def test_ids_recorded_before_a_crash_are_acknowledged_at_the_next_start(
    mosquitto: Mosquitto, topic_prefix: str, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    # What the intake's last commit recorded when the process died before sending it.
    db = database_for(tmp_path, "probe")
    acks = topics.acks_topic(topic_prefix, "probe", broker_settings.instance)
    recorder = Acknowledgements(db, Outbox(db, MemoryBus("probe")), acks)
    with db.transaction():
        recorder.record(["left-over"])
    db.close()
    async with HttpReceiver() as receiver, Observer(mosquitto.host, mosquitto.port, acks) as seen:
        settings = ProbeSettings(url=receiver.url, state_dir=tmp_path)
        async with running(build, settings, broker_settings):
            await seen.wait_for(lambda s: acknowledged(s) == ["left-over"])
