"""`outcomes:` on the incident forwarder's destinations: the shared vocabulary and its meaning.

``failed``, ``aborted``, ``succeeded``, ``recovered``: a destination that lists ``recovered``
hears a success that ends a failure as recovered; one that lists only ``succeeded`` hears it as a
success; one that lists only ``recovered`` does not hear plain successes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from herald_incident_forwarder.destinations.signl4 import Signl4Destination
from herald_incident_forwarder.destinations.webhooks import WebhookDestination
from herald_incident_forwarder.settings import IncidentForwarderSettings
from herald_shared.delivery.destination import Destination
from herald_shared.events import Event
from herald_shared.samples import sample_aborted, sample_failed, sample_succeeded

EVENTS: dict[str, Callable[[], Event]] = {
    "failed": sample_failed,
    "aborted": sample_aborted,
    "success": sample_succeeded,
    "success after a failure": lambda: sample_succeeded(recovers=sample_failed()),
    "success after an abort": lambda: sample_succeeded(recovers=sample_aborted()),
}


@pytest.fixture
async def built() -> AsyncIterator[list[Destination]]:
    """Destinations a test builds, closed afterwards."""
    destinations: list[Destination] = []
    yield destinations
    for destination in destinations:
        await destination.close()


def _heard(destination: Destination) -> list[str]:
    return [name for name, event in EVENTS.items() if destination.targets(event())]


def _webhook(built: list[Destination], **settings: Any) -> WebhookDestination:
    section = IncidentForwarderSettings.model_validate(
        {"webhooks": [{"name": "ops", "url": "https://hooks.example/h", **settings}]}
    )
    destination = WebhookDestination(section.webhooks[0])
    built.append(destination)
    return destination


@pytest.mark.parametrize(
    ("outcomes", "heard"),
    [
        (None, ["failed", "aborted"]),  # the default: the problems
        (["succeeded"], ["success", "success after a failure", "success after an abort"]),
        (["recovered"], ["success after a failure", "success after an abort"]),
        (["failed", "recovered"], ["failed", "success after a failure", "success after an abort"]),
    ],
)
async def test_a_webhook_hears_the_outcomes_it_lists(
    built: list[Destination], outcomes: list[str] | None, heard: list[str]
) -> None:
    settings = {} if outcomes is None else {"outcomes": outcomes}
    assert _heard(_webhook(built, **settings)) == heard


def _signl4(built: list[Destination], **settings: Any) -> Signl4Destination:
    section = IncidentForwarderSettings.model_validate(
        {"signl4": {"enabled": True, "url": "https://connect.signl4.example/webhook/t", **settings}}
    )
    destination = Signl4Destination(section.signl4)
    built.append(destination)
    return destination


async def test_signl4_opens_and_resolves_only_the_outcomes_it_lists(
    built: list[Destination],
) -> None:
    signl4 = _signl4(built, outcomes=["aborted"], severity={"failed": 2, "aborted": 7})
    assert _heard(signl4) == ["aborted", "success after an abort"]
    assert signl4.payload(sample_aborted())["Severity"] == 7
    resolution = signl4.payload(sample_succeeded(recovers=sample_aborted()))
    assert (resolution["X-S4-Status"], resolution["Severity"]) == ("resolved", 7)


def test_a_destination_that_only_sends_problems_refuses_a_success_outcome() -> None:
    with pytest.raises(ValueError, match=r"signl4\.outcomes\.0") as caught:
        IncidentForwarderSettings.model_validate({"signl4": {"outcomes": ["succeeded"]}})
    assert "'failed' or 'aborted'" in str(caught.value)
