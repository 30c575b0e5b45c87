"""``incident_forwarder:`` in herald.yaml.

Defaults follow Butler's production template (docs/butler-compatibility.md §4d–§4g, §6) where Butler has one, so
a site moving from Butler gets the same payloads, accounts and rate limits without tuning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeAlias

from pydantic import BeforeValidator, Field, SecretStr, model_validator

from herald_shared.config import Duration, Section
from herald_shared.events import Kind
from herald_shared.matcher import MATCH_ALL, When
from herald_shared.settings import DeliverySettings, ServiceSection, TlsSettings

#: The outcomes Butler alerts on; a success only ever resolves (Signl4) or is opted into.
Problem: TypeAlias = Literal["task_failed", "task_aborted"]
PROBLEMS: list[Problem] = ["task_failed", "task_aborted"]

#: New Relic attribute values are strings or numbers (the Event API rejects anything else).
AttributeValue: TypeAlias = str | int | float

_NAME = r"^[A-Za-z0-9_.-]+$"


def _problem_kinds() -> list[Kind]:
    return ["task_failed", "task_aborted"]


def _upper(value: object) -> object:
    # Butler accepts the method in any case (docs/butler-compatibility.md §4d).
    return value.upper() if isinstance(value, str) else value


def _protocol_text(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


# --- New Relic -------------------------------------------------------------------------------


class NewRelicAccount(Section):
    name: str = Field(min_length=1)  # what custom property values and always_accounts name
    account_id: str = Field(pattern=r"^\d+$")
    insert_key: SecretStr  # or insert_key_file


class _NewRelicApi(Section):
    enabled: bool = False
    outcomes: list[Problem] = Field(default_factory=lambda: list(PROBLEMS), min_length=1)
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


# --- Signl4 ----------------------------------------------------------------------------------


class Signl4Severity(Section):
    task_failed: int = 1
    task_aborted: int = 10


class Signl4Settings(Section):
    enabled: bool = False
    # The team webhook, https://connect.signl4.com/webhook/<team secret>: a secret (or url_file).
    url: SecretStr | None = None
    severity: Signl4Severity = Signl4Severity()
    service_name: str = "Qlik Sense"  # X-S4-Service
    # A later success of the task resolves its alert (X-S4-Status: resolved, same external id).
    resolve_on_recovery: bool = True
    outcomes: list[Problem] = Field(default_factory=lambda: list(PROBLEMS), min_length=1)
    when: When = MATCH_ALL
    rate_limit: Duration | None = 15.0  # per task and outcome; resolutions are never limited
    timeout: Duration = 10.0

    @model_validator(mode="after")
    def _check_url(self) -> Signl4Settings:
        if self.enabled and self.url is None:
            raise ValueError("url (or url_file) is required when signl4 is enabled")
        return self


# --- outgoing webhooks -----------------------------------------------------------------------


class WebhookSettings(Section):
    name: str = Field(pattern=_NAME)  # the destination is webhook:<name>
    url: SecretStr  # a URL can carry a token, so it is treated as a secret (or url_file)
    method: Annotated[Literal["GET", "POST", "PUT"], BeforeValidator(_upper)] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)  # extra request headers, not secret
    # Sent as the Authorization header (e.g. "Bearer …"): a secret (or authorization_file).
    authorization: SecretStr | None = None
    outcomes: list[Kind] = Field(default_factory=_problem_kinds, min_length=1)
    when: When = MATCH_ALL
    ca_file: Path | None = None  # None: the system's trust store
    verify: bool = True
    timeout: Duration = 10.0
    # With a secret, <signature_header>: sha256=<hex HMAC-SHA256 of the body (GET: the query)>.
    hmac_secret: SecretStr | None = None
    signature_header: str = "X-Herald-Signature-256"
    rate_limit: Duration | None = 300.0  # per task and outcome


# --- Butler-compatible MQTT topics -----------------------------------------------------------


class ButlerBrokerSettings(Section):
    """Another broker than Herald's (the one Butler's IoT consumers listen on)."""

    host: str = "localhost"
    port: int = Field(default=1883, ge=1, le=65535)
    # Butler speaks MQTT 3.1.1; older IoT brokers may speak nothing else.
    protocol: Annotated[Literal["5", "3.1.1"], BeforeValidator(_protocol_text)] = "3.1.1"
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsSettings = TlsSettings()
    keepalive: int = Field(default=60, ge=5, le=3600)


class ButlerMqttSettings(Section):
    enabled: bool = False
    # "herald": Herald's own broker (the broker: section); or another broker's settings.
    broker: Literal["herald"] | ButlerBrokerSettings = "herald"
    task_failure_topic: str = "qliksense/task_failure"
    task_failure_full_topic: str = "qliksense/task_failure_full"
    task_aborted_topic: str = "qliksense/task_aborted"
    task_aborted_full_topic: str = "qliksense/task_aborted_full"
    task_failure_send_full: bool = True
    task_aborted_send_full: bool = True
    # Butler publishes at QoS 0; 1 lets Herald know the broker has it (and retry until it does).
    qos: Literal[0, 1, 2] = 1
    retain: bool = False
    # Butler publishes reload tasks only; widen this to hear about other task types too.
    when: When = When(task_types=["reload"])


# --- the section -----------------------------------------------------------------------------


class IncidentForwarderSettings(ServiceSection):
    new_relic: NewRelicSettings = NewRelicSettings()
    signl4: Signl4Settings = Signl4Settings()
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    butler_mqtt: ButlerMqttSettings = ButlerMqttSettings()
    delivery: DeliverySettings = DeliverySettings()

    @model_validator(mode="after")
    def _check_webhook_names(self) -> IncidentForwarderSettings:
        names = [webhook.name for webhook in self.webhooks]
        if len(set(names)) != len(names):
            raise ValueError("webhooks: every webhook needs its own name")
        return self
