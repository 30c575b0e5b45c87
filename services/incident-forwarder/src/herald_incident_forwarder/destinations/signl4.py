"""Signl4: a new alert when a task fails or is aborted, resolved when it succeeds again.

Butler's body (docs/butler-compatibility.md §4g): ``Title``, ``Message``, ``Severity``, ``X-S4-Service``,
``X-S4-ExternalID`` (the task id) and ``X-S4-Status``. Butler only ever sends ``new``; Herald
also sends ``resolved`` with the same external id when a success carries ``recovers`` (Butler's
issue #283), so the alert the failure opened is the one that closes. The team webhook URL holds
the team secret: it never appears in a reason or a log line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec
from pydantic import Field, SecretStr, model_validator

from herald_shared import events
from herald_shared.config import Duration, Section, reveal
from herald_shared.delivery.destination import Context, Destination, Target
from herald_shared.delivery.http import CONNECTIONS, EVENT_ID_HEADER, Request, send, url_secrets
from herald_shared.events import Event, TaskAborted, TaskFailed, TaskSucceeded
from herald_shared.http_client import HttpClient
from herald_shared.outcomes import Problem, outcome_of, problems, recovered_from, task_type_text
from herald_shared.settings import DestinationSettings

KEY = "signl4"

TITLES: Final[dict[Problem, str]] = {
    "failed": "Qlik Sense reload task failed",
    "aborted": "Qlik Sense task aborted",
}
RESOLVED_TITLE: Final = "Qlik Sense reload task succeeded"


def _title(event: Event, butlers: str, verb: str) -> str:
    """Butler's title for a reload task; for another type, that type's (Butler sent none)."""
    if event.task.type == "reload":
        return butlers
    return f"Qlik Sense {task_type_text(event)} task {verb}"


class Signl4Severity(Section):
    """Severity per outcome; a resolution has its failure's or abort's."""

    failed: int = 1
    aborted: int = 10


class Signl4Settings(DestinationSettings):
    enabled: bool = False
    # The team webhook, https://connect.signl4.com/webhook/<team secret>: a secret (or url_file).
    url: SecretStr | None = None
    severity: Signl4Severity = Signl4Severity()
    service_name: str = "Qlik Sense"  # X-S4-Service
    # A later success of the task resolves its alert (X-S4-Status: resolved, same external id).
    resolve_on_recovery: bool = True
    outcomes: list[Problem] = Field(default_factory=problems, min_length=1)
    rate_limit: Duration | None = 15.0  # per task and outcome; resolutions are never limited
    timeout: Duration = 10.0

    @model_validator(mode="after")
    def _check_url(self) -> Signl4Settings:
        if self.enabled and self.url is None:
            raise ValueError("url (or url_file) is required when signl4 is enabled")
        return self


class Signl4Destination(Destination):
    name = "signl4"

    def __init__(self, settings: Signl4Settings) -> None:
        assert settings.url is not None, "validated by Signl4Settings"
        self._settings = settings
        self._url = reveal(settings.url) or ""
        self._secrets = url_secrets(self._url)  # the team secret alone, too
        self._outcomes = frozenset(settings.outcomes)
        self.route_by(settings)
        self.rate_limit = settings.rate_limit
        self._client = HttpClient(
            timeout=settings.timeout, connections=CONNECTIONS, secrets=self._secrets
        )

    def targets(self, event: Event) -> Sequence[Target]:
        if isinstance(event, TaskFailed | TaskAborted) and outcome_of(event, self._outcomes):
            # The event kind keeps the rate keys already in the ledger valid across upgrades.
            return [Target(rate_key=f"{event.kind}|{event.task.id}")]
        if (
            isinstance(event, TaskSucceeded)
            and self._settings.resolve_on_recovery
            and event.recovers is not None
            and recovered_from(event.recovers) in self._outcomes
        ):
            return [Target()]  # no rate key: a resolution is never suppressed
        return ()

    def payload(self, event: Event) -> dict[str, Any]:
        severity = self._settings.severity
        if isinstance(event, TaskSucceeded):
            assert event.recovers is not None
            title, status = _title(event, RESOLVED_TITLE, "succeeded"), "resolved"
            level = getattr(severity, recovered_from(event.recovers))
        else:
            outcome: Problem = "failed" if isinstance(event, TaskFailed) else "aborted"
            title, status = _title(event, TITLES[outcome], outcome), "new"
            level = getattr(severity, outcome)
        body = {
            "Title": events.labelled(event, title),
            "Message": f"Task: {event.task.name}",
            "Severity": level,
            "X-S4-Service": self._settings.service_name,
            "X-S4-ExternalID": event.task.id,
            "X-S4-Status": status,
        }
        if event.test:
            body["Test"] = "true"  # a Signl4 custom parameter: rules can ignore test alerts
        return body

    async def close(self) -> None:
        await self._client.close()

    async def deliver(self, event: Event, target: str) -> str | None:
        body = self.payload(event)
        request = Request(
            "POST",
            self._url,
            headers={"Content-Type": "application/json", EVENT_ID_HEADER: event.event_id},
            body=msgspec.json.encode(body),
        )
        answer = await send(self._client, request, what="Signl4", secrets=self._secrets)
        return f"Signl4 {body['X-S4-Status']} alert for task {event.task.id} ({answer.status})"


def destinations(settings: Signl4Settings, context: Context) -> list[Destination]:
    return [Signl4Destination(settings)] if settings.enabled else []
