"""The event contract: what ingest publishes is what every subscriber reads."""

from __future__ import annotations

import msgspec
import pytest

from herald_shared import events, samples, topics
from herald_shared.events import TaskAborted, TaskFailed, TaskSucceeded


@pytest.mark.parametrize(
    "event", samples.sample_events(), ids=lambda e: f"{e.kind}-{e.enrichment.status}"
)
def test_each_kind_round_trips_to_an_equal_struct(event: events.Event) -> None:
    decoded = events.decode(events.encode(event))
    assert decoded == event
    assert type(decoded) is type(event)


def test_the_kind_is_the_tag_on_the_wire() -> None:
    wire = msgspec.json.decode(events.encode(samples.sample_aborted()))
    assert wire["kind"] == "task_aborted"
    assert isinstance(events.decode(events.encode(samples.sample_aborted())), TaskAborted)


def test_a_recovery_names_the_failure_it_ends() -> None:
    failed = samples.sample_failed()
    recovered = events.decode(events.encode(samples.sample_succeeded(recovers=failed)))
    assert isinstance(recovered, TaskSucceeded)
    assert recovered.recovers is not None
    assert recovered.recovers.event_id == failed.event_id
    assert recovered.recovers.kind == "task_failed"


def test_fields_added_by_a_newer_sender_are_ignored() -> None:
    wire = msgspec.json.decode(events.encode(samples.sample_failed()))
    wire["some_future_field"] = {"nested": [1, 2]}
    wire["task"]["another_future_field"] = True
    assert events.decode(msgspec.json.encode(wire)) == samples.sample_failed()


def test_a_payload_that_is_not_an_event_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError):
        events.decode(b'{"kind": "task_exploded", "event_id": "x"}')
    with pytest.raises(msgspec.DecodeError):
        events.decode(b"Qlik Sense reload failed")


def test_event_ids_are_deterministic_per_kind_and_execution() -> None:
    execution = "14A81BF5-F81C-4047-B1A1-193B0920DE28"
    assert events.event_id_for("task_failed", execution) == events.event_id_for(
        "task_failed", execution.lower()
    )
    assert events.event_id_for("task_failed", execution) != events.event_id_for(
        "task_aborted", execution
    )


def test_topics_follow_the_architecture_table() -> None:
    failed = samples.sample_failed()
    assert topics.topic_of("herald", failed) == (
        "herald/v1/events/task_failed/reload/dec2a02a-1680-44ef-8dc2-e2bfb180af87"
    )
    assert topics.events_subscription("herald", "emailer", shared=True) == (
        "$share/herald-emailer/herald/v1/events/#"
    )
    assert topics.events_subscription("herald", "emailer", shared=False) == "herald/v1/events/#"
    assert topics.status_topic("herald", "ingest", "pod-0") == "herald/v1/status/ingest/pod-0"
    assert topics.deliveries_topic("herald", "emailer") == "herald/v1/deliveries/emailer"
    assert topics.dead_letter_topic("herald", "emailer") == "herald/v1/dead-letter/emailer"


def test_samples_are_realistic() -> None:
    failed = samples.sample_failed()
    assert isinstance(failed, TaskFailed)
    assert failed.app is not None
    assert failed.app.owner is not None
    assert failed.app.owner.emails == ["goran@example.com"]
    assert failed.script_log is not None
    assert failed.script_log.full_text
    assert "\r\n" in failed.script_log.full_text  # QRS serves CRLF
    assert samples.sample_partial().enrichment.status == "partial"
