"""New Relic: Butler's custom events (Event API) and script-log entries (Log API).

Two destinations, ``new-relic-event`` and ``new-relic-log``; their targets are account names.
A task goes to the accounts its custom property names (Butler's
``Butler_FailedTask_Event_NewRelicAccount`` and friends) plus the ``always_accounts``, each once.
A name that is not a configured account is logged and skipped, as Butler does.

Attributes keep Butler's names (docs/butler-compatibility.md §4f), including the misspelt
``qs_exeuctionStatusText`` that existing dashboards query, next to the correct spelling. New
Relic stores only strings and numbers, so nested values are flattened into dotted names
(``qs_taskMetadata.operational.nextExecution``, ``qs_appCustomProperties.0.value``), booleans
become ``"true"``/``"false"``, and nulls and empty lists are left out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from importlib.metadata import version
from typing import Any, Final, Literal, TypeAlias

import msgspec
from pydantic import Field, SecretStr, model_validator

from herald_incident_forwarder import butler
from herald_shared.config import Duration, Section, reveal
from herald_shared.delivery.destination import Context, Destination, Skipped, Target
from herald_shared.delivery.http import CONNECTIONS, Request, send
from herald_shared.events import Event, TaskAborted, TaskFailed
from herald_shared.http_client import HttpClient
from herald_shared.matcher import MATCH_ALL, When
from herald_shared.outcomes import Problem, outcome_of, problems

log = logging.getLogger(__name__)

KEY = "new_relic"

EVENT_URLS: Final = {
    "eu": "https://insights-collector.eu01.nr-data.net",
    "us": "https://insights-collector.newrelic.com",
}
LOG_URLS: Final = {
    "eu": "https://log-api.eu.newrelic.com/log/v1",
    "us": "https://log-api.newrelic.com/log/v1",
}
EVENT_TYPES: Final = {
    "task_failed": "qs_reloadTaskFailedEvent",
    "task_aborted": "qs_reloadTaskAbortedEvent",
}
LOG_TYPES: Final = {
    "task_failed": "qs_reloadTaskFailedLog",
    "task_aborted": "qs_reloadTaskAbortedLog",
}
LOG_SEPARATOR: Final = "\r\n-------------------------------\r\n\r\n"
NO_SCRIPT_LOG: Final = "Script log not available for this reload task."

# New Relic's limits for custom events (data requirements and limits for custom event data).
MAX_ATTRIBUTES: Final = 254
MAX_VALUE_LENGTH: Final = 4096

_VERSION: Final = version("herald-incident-forwarder")


#: New Relic attribute values are strings or numbers (the Event API rejects anything else).
AttributeValue: TypeAlias = str | int | float


class NewRelicAccount(Section):
    name: str = Field(min_length=1)  # what custom property values and always_accounts name
    account_id: str = Field(pattern=r"^\d+$")
    insert_key: SecretStr  # or insert_key_file


class _NewRelicApi(Section):
    enabled: bool = False
    outcomes: list[Problem] = Field(default_factory=problems, min_length=1)
    # Accounts every matching task goes to, besides those its custom property names.
    always_accounts: list[str] = Field(default_factory=list)
    # The task custom property whose values name the accounts a failed / aborted task goes to.
    failed_account_property: str
    aborted_account_property: str
    static_attributes: dict[str, AttributeValue] = Field(default_factory=dict)
    use_task_tags: bool = True  # qs_taskTag_<tag>: "true"
    use_app_tags: bool = True  # qs_appTag_<tag>: "true"
    when: When = MATCH_ALL
    # Seconds between two sends for one task, outcome and account; None: no limit.
    rate_limit: Duration | None = 15.0


class NewRelicEventSettings(_NewRelicApi):
    failed_account_property: str = "Butler_FailedTask_Event_NewRelicAccount"
    aborted_account_property: str = "Butler_AbortedTask_Event_NewRelicAccount"


class NewRelicLogSettings(_NewRelicApi):
    failed_account_property: str = "Butler_FailedTask_Log_NewRelicAccount"
    aborted_account_property: str = "Butler_AbortedTask_Log_NewRelicAccount"
    tail_lines: int = Field(default=20, ge=0)  # script-log lines at the end of the message


class NewRelicSettings(Section):
    accounts: list[NewRelicAccount] = Field(default_factory=list)
    region: Literal["us", "eu"] = "eu"  # Butler's default endpoints are New Relic's EU ones
    # Explicit endpoints win over the region (a proxy, FedRAMP): the Event API base URL, to
    # which /v1/accounts/<id>/events is appended, and the Log API URL, used as it is.
    event_url: str | None = None
    log_url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)  # extra headers on every request
    static_attributes: dict[str, AttributeValue] = Field(default_factory=dict)  # both APIs
    timeout: Duration = 10.0
    event: NewRelicEventSettings = NewRelicEventSettings()
    log: NewRelicLogSettings = NewRelicLogSettings()

    @model_validator(mode="after")
    def _check_accounts(self) -> NewRelicSettings:
        names = [account.name for account in self.accounts]
        if len(set(names)) != len(names):
            raise ValueError("accounts: every account needs its own name")
        for api in ("event", "log"):
            unknown = sorted(set(getattr(self, api).always_accounts) - set(names))
            if unknown:
                raise ValueError(f"{api}.always_accounts: no such account: {', '.join(unknown)}")
        return self


def flatten(prefix: str, value: Any) -> Iterator[tuple[str, AttributeValue]]:
    """Primitive attributes for ``value``: nested names joined with dots, list items indexed."""
    if value is None:
        return
    if isinstance(value, bool):
        yield prefix, "true" if value else "false"
    elif isinstance(value, int | float):
        yield prefix, value
    elif isinstance(value, str):
        yield prefix, value[:MAX_VALUE_LENGTH]
    elif isinstance(value, datetime):
        yield prefix, butler.qrs_time(value) or ""
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from flatten(f"{prefix}.{key}", item)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from flatten(f"{prefix}.{index}", item)
    else:
        yield prefix, str(value)[:MAX_VALUE_LENGTH]


class _NewRelicDestination(Destination):
    """What the event and log destinations share: accounts, attributes and the HTTP client."""

    def __init__(
        self, settings: NewRelicSettings, api: NewRelicEventSettings | NewRelicLogSettings
    ) -> None:
        self._settings = settings
        self._api = api
        self._accounts: dict[str, NewRelicAccount] = {a.name: a for a in settings.accounts}
        self._outcomes = frozenset(api.outcomes)
        self.when = api.when
        self.rate_limit = api.rate_limit
        # One client for all accounts: they share the endpoint; the key goes with each request.
        keys = [reveal(account.insert_key) or "" for account in settings.accounts]
        self._client = HttpClient(timeout=settings.timeout, connections=CONNECTIONS, secrets=keys)

    def targets(self, event: Event) -> Sequence[Target]:
        if not isinstance(event, TaskFailed | TaskAborted) or not outcome_of(event, self._outcomes):
            return ()
        prop = (
            self._api.failed_account_property
            if isinstance(event, TaskFailed)
            else self._api.aborted_account_property
        )
        # A test goes to the configured accounts only, not to those the sample task names.
        chosen = [] if event.test else event.task.custom_properties.get(prop, [])
        if event.test and not self._api.always_accounts:
            raise Skipped(
                f"test alert: {self.name} has no always_accounts, and a test is not sent to"
                " accounts named by custom properties"
            )
        # dict.fromkeys: in order, each account once however many times it is named.
        named = dict.fromkeys([*chosen, *self._api.always_accounts])
        unknown = [name for name in named if name not in self._accounts]
        for name in unknown:
            log.error(
                "task %r names New Relic account %r in %s, but no such account is configured; skipped",
                event.task.name,
                name,
                prop,
            )
        return [
            # Butler limits each account's sends per task and outcome; so does Herald.
            Target(id=name, rate_key=f"{event.kind}|{event.task.id}|{name}")
            for name in named
            if name in self._accounts
        ]

    async def close(self) -> None:
        await self._client.close()

    def _attributes(self, event: TaskFailed | TaskAborted) -> dict[str, AttributeValue]:
        """Butler's attributes in Butler's order: static, version, qs_*, tag flags."""
        attributes: dict[str, AttributeValue] = {
            **self._settings.static_attributes,
            **self._api.static_attributes,
            "version": _VERSION,
            # A test alert says so, first, so that no cap removes it and no alert policy fires.
            **({"herald_test": "true"} if event.test else {}),
            "qs_hostName": event.sense_host,
            "qs_user": butler.user_slashed(event.user),
            "qs_taskName": event.task.name,
            "qs_taskId": event.task.id,
            "qs_appName": butler.app_name(event),
            "qs_appId": butler.app_id(event),
            "qs_logTimeStamp": event.log_timestamp,
            "qs_logLevel": event.log_level,
            "qs_executionId": event.execution.id,
            "qs_logMessage": event.log_message,
        }
        attributes.update(flatten("qs_appCustomProperties", butler.app_custom_properties(event)))
        attributes.update(
            flatten(
                "qs_taskCustomProperties", butler.custom_properties(event.task.custom_properties)
            )
        )
        attributes.update(flatten("qs_appMetadata", butler.app_metadata(event)))
        attributes.update(flatten("qs_taskMetadata", butler.task_metadata(event)))
        if self._api.use_task_tags:
            attributes.update({f"qs_taskTag_{tag}": "true" for tag in event.task.tags})
        if self._api.use_app_tags:
            attributes.update({f"qs_appTag_{tag}": "true" for tag in butler.app_tags(event)})
        return attributes

    async def _post(self, account: NewRelicAccount, url: str, body: object) -> str:
        key = reveal(account.insert_key) or ""
        request = Request(
            "POST",
            url,
            headers={
                **self._settings.headers,
                "Content-Type": "application/json; charset=utf-8",
                "Api-Key": key,
            },
            body=msgspec.json.encode(body),
        )
        answer = await send(
            self._client, request, what=f"New Relic account {account.name}", secrets=[key]
        )
        return f"New Relic account {account.name} ({account.account_id}) answered {answer.status}"

    def _account(self, target: str) -> NewRelicAccount:
        account = self._accounts.get(target)
        if account is None:  # the configuration changed while the delivery was pending
            raise Skipped(f"New Relic account {target!r} is no longer configured")
        return account


def _capped(attributes: dict[str, AttributeValue], reserved: int) -> dict[str, AttributeValue]:
    """At most New Relic's attribute count; the metadata, added last, gives way first."""
    limit = MAX_ATTRIBUTES - reserved
    if len(attributes) <= limit:
        return attributes
    return dict(list(attributes.items())[:limit])


class NewRelicEventDestination(_NewRelicDestination):
    name = "new-relic-event"

    def __init__(self, settings: NewRelicSettings) -> None:
        super().__init__(settings, settings.event)
        base = settings.event_url or EVENT_URLS[settings.region]
        self._base = base if base.endswith("/") else base + "/"

    def payload(self, event: TaskFailed | TaskAborted) -> list[dict[str, AttributeValue]]:
        """The Event API body: an array with one event."""
        return [{**_capped(self._attributes(event), 1), "eventType": EVENT_TYPES[event.kind]}]

    async def deliver(self, event: Event, target: str) -> str | None:
        assert isinstance(event, TaskFailed | TaskAborted)
        account = self._account(target)
        url = f"{self._base}v1/accounts/{account.account_id}/events"
        return await self._post(account, url, self.payload(event))


class NewRelicLogDestination(_NewRelicDestination):
    name = "new-relic-log"

    def __init__(self, settings: NewRelicSettings) -> None:
        super().__init__(settings, settings.log)
        self._url = settings.log_url or LOG_URLS[settings.region]
        self._tail_lines = settings.log.tail_lines

    def payload(self, event: TaskFailed | TaskAborted) -> list[dict[str, Any]]:
        """The Log API body: Butler's attributes as common attributes, one log entry."""
        execution = event.execution
        script_log = event.script_log
        lines = butler.script_lines(event)
        tail = lines[-self._tail_lines :] if self._tail_lines else []
        extra: dict[str, AttributeValue] = {
            "qs_executingNodeName": execution.node or "",
            "qs_executionStatusNum": execution.status_code
            if execution.status_code is not None
            else -1,
            "qs_executionStatusText": execution.status or "",
            # sic: Butler's misspelling, on the wire and in dashboards (docs/butler-compatibility.md §4f, §8 #23)
            "qs_exeuctionStatusText": execution.status or "",
            "qs_scriptLogSize": script_log.size_bytes if script_log is not None else 0,
            "qs_scriptLogTailCount": len(tail),
            "logtype": LOG_TYPES[event.kind],
        }
        extra.update(
            flatten(
                "qs_executionStartTime", {"startTimeUTC": butler.qrs_time(execution.started_at)}
            )
        )
        extra.update(
            flatten("qs_executionStopTime", {"stopTimeUTC": butler.qrs_time(execution.stopped_at)})
        )
        extra.update(flatten("qs_executionDuration", butler.execution_duration(event)))
        attributes = {**_capped(self._attributes(event), len(extra)), **extra}
        if script_log is None:
            message = NO_SCRIPT_LOG
        else:
            message = (
                butler.execution_details_concatenated(event) + LOG_SEPARATOR + "\r\n".join(tail)
            )
        return [{"common": {"attributes": attributes}, "logs": [{"message": message}]}]

    async def deliver(self, event: Event, target: str) -> str | None:
        assert isinstance(event, TaskFailed | TaskAborted)
        account = self._account(target)
        return await self._post(account, self._url, self.payload(event))


def destinations(settings: NewRelicSettings, context: Context) -> list[Destination]:
    """The Event API and the Log API destinations, each when enabled."""
    built: list[Destination] = []
    if settings.event.enabled:
        built.append(NewRelicEventDestination(settings))
    if settings.log.enabled:
        built.append(NewRelicLogDestination(settings))
    return built
