"""``herald tail``: readable lines, ``--json`` for scripts, and filters an operator can narrow with."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from herald_shared import events, replay, samples, self_report, tail, topics
from herald_shared.delivery import receipts
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import publisher
from herald_testkit.processes import Child

PREFIX = "herald"


def _receipt(event: events.Event, service: str = "emailer") -> tuple[str, bytes]:
    receipt = receipts.Receipt(
        event_id=event.event_id,
        kind=event.kind,
        task_id=event.task.id,
        task_name=event.task.name,
        service=service,
        destination="email",
        target="ops@example.com",
        outcome="delivered",
        attempts=1,
        at=datetime(2026, 12, 2, tzinfo=UTC),
    )
    return topics.deliveries_topic(PREFIX, service), receipts.encode(receipt)


def _event(event: events.Event) -> tuple[str, bytes]:
    return topics.topic_of(PREFIX, event), events.encode(event)


def test_a_recovery_says_what_it_recovers_from_in_words() -> None:
    failed, aborted = samples.sample_failed(), samples.sample_aborted()
    after_failure = tail.describe(*_event(samples.sample_succeeded(recovers=failed)))
    after_abort = tail.describe(*_event(samples.sample_succeeded(recovers=aborted)))
    assert "[recovers from the failure of 2021-02-16 08:24]" in after_failure
    assert "[recovers from the abort of 2024-10-10 13:35]" in after_abort


def test_an_event_the_sweep_found_says_so_and_a_datagrams_event_says_nothing() -> None:
    failed = samples.sample_failed()
    found = tail.describe(*_event(msgspec.structs.replace(failed, source="reconcile")))
    assert found.endswith("[found by the reconciliation sweep: its datagram never arrived]")
    assert "[" not in tail.describe(*_event(failed))
    other = tail.describe(*_event(msgspec.structs.replace(failed, source="test")))
    assert other.endswith("[source: test]")


def test_the_sweep_lease_says_who_sweeps_until_when() -> None:
    claim = b'{"holder":"ingest-a","expires_at":1796212800.0,"checkpoint_ms":1796212620000}'
    line = tail.describe(f"{PREFIX}/v1/lease/ingest/reconcile", claim)
    assert line == "LEASE      ingest/reconcile held by ingest-a until 2026-12-02 12:00:00 UTC"


def test_filters_keep_only_the_service_kind_and_task_asked_for() -> None:
    failed, aborted = samples.sample_failed(), samples.sample_aborted()
    status = (topics.status_topic(PREFIX, "emailer", "a"), b"online")
    messages = [
        _event(failed),
        _event(aborted),
        _receipt(failed),
        _receipt(aborted, "chat-notifier"),
        status,
    ]

    def shown(only: tail.Only) -> list[int]:
        return [i for i, message in enumerate(messages) if only.admits(*message)]

    assert shown(tail.Only()) == [0, 1, 2, 3, 4]
    assert shown(tail.Only(service="emailer")) == [2, 4]
    assert shown(tail.Only(kind="task_aborted")) == [1, 3]
    assert shown(tail.Only(task="MANUALLY triggered*")) == [0, 1, 2, 3]  # both are that task
    assert shown(tail.Only(task="Finance*")) == []
    assert shown(tail.Only(service="chat-notifier", kind="task_aborted")) == [3]


def test_a_dead_letter_is_filtered_by_the_event_it_carries() -> None:
    failed = samples.sample_failed()
    letter = receipts.DeadLetter(
        service="emailer",
        destination="email",
        target="ops@example.com",
        reason="550 no such user",
        attempts=1,
        at=datetime(2026, 12, 2, tzinfo=UTC),
        event=failed,
    )
    message = (topics.dead_letter_topic(PREFIX, "emailer"), receipts.encode(letter))
    assert tail.Only(kind="task_failed", task="manually*").admits(*message)
    assert not tail.Only(kind="task_aborted").admits(*message)


def test_json_lines_carry_the_topic_and_the_payload_as_sent() -> None:
    failed = samples.sample_failed()
    received = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    line = json.loads(tail.as_json(*_event(failed), received))
    assert line["topic"] == topics.topic_of(PREFIX, failed)
    assert line["received"] == "2026-12-02T09:30:00.000+00:00"
    assert msgspec.json.decode(json.dumps(line["payload"]), type=events.Event) == failed
    status = json.loads(
        tail.as_json(topics.status_topic(PREFIX, "emailer", "a"), b"online", received)
    )
    assert status["payload"] == "online"


async def test_the_tail_command_prints_only_what_its_filters_ask_for_as_json(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    config = tmp_path / "herald.yaml"
    config.write_text(
        f"broker: {{host: {mosquitto.host}, port: {mosquitto.port}, topic_prefix: {topic_prefix}}}\n"
    )
    command = ["-m", "herald_shared.cli", "tail", "--config", str(config), "--json"]
    watching = await Child.python(*command, "--kind", "task_aborted", "--task", "manually*")
    try:
        failed, aborted = samples.sample_failed(), samples.sample_aborted()
        # The tail has subscribed once it prints something; until then, publish again.
        async with publisher(mosquitto.host, mosquitto.port) as client:
            for _ in range(100):
                for event in (failed, aborted):
                    await client.publish(topics.topic_of(topic_prefix, event), events.encode(event))
                if watching.lines:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)  # the last round's lines, if any, arrive too
        printed = [json.loads(line) for line in watching.lines]
    finally:
        await watching.close()
    assert printed, "the tail printed nothing"
    assert {line["payload"]["event_id"] for line in printed} == {aborted.event_id}


def test_a_test_alerts_pending_delivery_counts_its_attempts_in_words() -> None:
    pending = msgspec.json.encode(
        {"service": "emailer", "destination": "email-failed", "target": "ops@example.com",
         "attempts": 1, "reason": "cannot reach the SMTP server"}
    )  # fmt: skip
    line = tail.describe(topics.pending_topic(PREFIX, "emailer"), pending)
    assert line == (
        "PENDING    emailer/email-failed to ops@example.com (test alert) after 1 attempt:"
        " cannot reach the SMTP server"
    )


def test_a_replay_request_and_its_answer_say_what_was_asked_and_done() -> None:
    asked = replay.ReplayRequest(
        id="r1",
        event_ids=["e1", "e2"],
        destination="email-failed",
        requested_by="ops",
        requested_at=datetime(2026, 12, 3, tzinfo=UTC),
    )
    line = tail.describe(topics.replay_topic(PREFIX, "emailer"), replay.encode(asked))
    assert line == "REPLAY     emailer: the dead letters of e1, e2 to email-failed, asked by ops"
    answer = replay.ReplayAnswer(
        id="r1",
        service="emailer",
        instance="host-1",
        replayed=[replay.ReplayedDelivery("e1", "email-failed", "ops@example.com")],
        not_found=["e2"],
    )
    line = tail.describe(topics.replayed_topic(PREFIX, "emailer", "host-1"), replay.encode(answer))
    assert line == "REPLAYED   emailer/host-1: 1 back to pending; no dead letter of e2"
    hostile = tail.describe(topics.replay_topic(PREFIX, "emailer"), b'{"id": 1}')
    assert hostile.startswith("?          ")


def test_a_self_report_is_shown_when_readiness_or_version_changes_not_each_minute() -> None:
    topic = topics.self_report_topic(PREFIX, "emailer", "mail-1")
    started = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)

    def report(ready: bool, queued: int, version: str = "1.0") -> bytes:
        why = "connected, destinations ready" if ready else "not connected to the broker"
        return self_report.encode(
            self_report.SelfReport(
                version=version,
                ready=ready,
                why=why,
                queued=queued,
                last_event_at=None,
                started_at=started,
            )
        )

    changes = tail.ReadinessChanges()
    shown = [
        changes.news(topic, payload)
        for payload in (
            report(True, 0),  # first word: shown
            report(True, 5),  # only its queue changed
            report(True, 5),  # the minute's refresh
            report(False, 5),  # not ready: shown
            report(True, 0),  # ready again: shown
            report(True, 0, version="1.1"),  # a new version: shown
            b"",  # stopped: shown
        )
    ]
    assert shown == [True, False, False, True, True, True, True]
    # Every other message is shown as before.
    assert changes.news(topics.status_topic(PREFIX, "emailer", "mail-1"), b"online")
    assert changes.news(topic.replace("mail-1", "mail-2"), b"not json")
