"""The configuration sections every service shares: ``broker``, ``health``, ``logging``, the
``delivery`` block each subscriber section carries, and what every destination's settings have
(:class:`DestinationSettings`)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, model_validator

from herald_shared.config import Duration, Section
from herald_shared.matcher import MATCH_ALL, When

__all__ = [
    "BrokerSettings",
    "DeliverySettings",
    "DestinationSettings",
    "GroupSettings",
    "HealthSettings",
    "LoggingSettings",
    "ServiceSection",
    "TlsSettings",
]


def _protocol_text(value: object) -> object:
    # YAML and environment overrides read `protocol: 5` / HERALD_BROKER__PROTOCOL=5 as a number.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class TlsSettings(Section):
    enabled: bool = False
    ca_file: Path | None = None  # None: the system's trust store
    cert_file: Path | None = None  # client certificate, for brokers that require one
    key_file: Path | None = None
    verify: bool = True  # certificate and host name verification


class BrokerSettings(Section):
    host: str = "localhost"
    port: int = Field(default=1883, ge=1, le=65535)
    # Run an in-process broker (amqtt) for the one-machine mode. It speaks MQTT 3.1.1 only and has
    # no shared subscriptions, so the bus switches to both when it is on.
    embedded: bool = False
    protocol: Annotated[Literal["5", "3.1.1"], BeforeValidator(_protocol_text)] = "5"
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsSettings = TlsSettings()
    topic_prefix: str = Field(default="herald", pattern=r"^[^#+/$][^#+]*$")
    # Stable per replica: the client id is herald-<service>-<instance>, and a persistent session
    # is only found again under the same id (a StatefulSet's pod name is a good choice).
    instance: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9_.-]+$")
    # Replicas of a service split the events through an MQTT v5 shared subscription
    # ($share/herald-<service>/…). Off by default: Mosquitto 2.0 does not restore shared
    # subscriptions from its persistence file, so after a broker restart the events published
    # before the replicas have subscribed again are lost, while a plain subscription in a
    # persistent session keeps them. Turn it on to run more than one replica of a service.
    shared_subscriptions: bool = False
    session_expiry: Duration = 86400.0  # how long the broker keeps a disconnected session
    keepalive: int = Field(default=30, ge=5, le=3600)
    # Messages the broker may send before we acknowledge one (MQTT v5 Receive Maximum). Events
    # are acknowledged once stored, so this bounds memory, not delivery time.
    receive_maximum: int = Field(default=100, ge=1, le=65535)
    reconnect_min: Duration = 0.5
    reconnect_max: Duration = 30.0
    connect_timeout: Duration = 10.0
    publish_timeout: Duration = 10.0

    @model_validator(mode="after")
    def _check_reconnect(self) -> BrokerSettings:
        if self.reconnect_min > self.reconnect_max:
            raise ValueError("reconnect_min must not exceed reconnect_max")
        return self

    @property
    def effective_protocol(self) -> Literal["5", "3.1.1"]:
        return "3.1.1" if self.embedded else self.protocol

    @property
    def effective_shared_subscriptions(self) -> bool:
        return self.shared_subscriptions and not self.embedded


class HealthSettings(Section):
    host: str = "0.0.0.0"  # noqa: S104 - probes come from the kubelet, outside the pod
    port: int = Field(default=9100, ge=0, le=65535)  # 0: any free port
    # /livez fails once the event loop has not run for this long (a hung process is restarted).
    stall_after: Duration = 30.0


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class DeliverySettings(Section):
    """How a subscriber service retries: exponential backoff with jitter, up to a deadline."""

    concurrency: int = Field(default=8, ge=1, le=256)  # deliveries in flight per destination
    initial_backoff: Duration = 1.0
    max_backoff: Duration = 300.0
    # After this long since the first attempt a delivery is dead-lettered. Long enough to ride
    # out a mail-server maintenance window; the dead letter still makes it visible.
    deadline: Duration = 6 * 3600.0
    attempt_timeout: Duration = 30.0  # one attempt; a hung destination is a transient error
    # How long finished deliveries are remembered, so a redelivered event is not sent again.
    ledger_retention: Duration = 7 * 86400.0
    # On SIGTERM, in-flight deliveries get this long to finish (below Kubernetes' 30 s).
    shutdown_grace: Duration = 20.0


class ServiceSection(Section):
    """Keys every service section has."""

    enabled: bool = True  # `herald up` runs a service whose section is present and enabled
    state_dir: Path = Path("var/herald")  # SQLite state: <state_dir>/<service>.sqlite3


#: The name of an entry of the top-level ``time_intervals:`` (checked when the file is loaded).
IntervalName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]


class DestinationSettings(Section):
    """What the settings of every destination have: which events it takes (``when:``) and the
    time intervals (``time_intervals:``) during which it is quiet (``mute_during:``) or outside
    which it is (``active_during:``). A destination takes them with ``Destination.route_by``."""

    when: When = MATCH_ALL
    mute_during: list[IntervalName] = Field(default_factory=list)
    active_during: list[IntervalName] = Field(default_factory=list)


#: What a group of alerts can be keyed by: the app's stream, the app's owner, the outcome
#: (failed, aborted, …), the node that ran the task, the task's type.
GroupBy = Literal["stream", "app_owner", "outcome", "node", "task_type"]


class GroupSettings(Section):
    """``group:`` of a destination people read (e-mail, Slack, Teams): alerts of one group
    (same ``by:`` values, same recipient) within ``interval`` go out as one digest
    (``herald_shared.delivery.grouping``).

    Storm protection: grouping starts once more than ``threshold`` alerts for one recipient
    arrived within a minute (0: every alert is grouped); below it each alert goes out alone.
    """

    enabled: bool = True
    by: list[GroupBy] = Field(default_factory=lambda: list[GroupBy](["stream"]))
    # 0: a group's first alert goes out at once and the digest collects the rest; longer: the
    # first waits this long too, and goes out in the digest.
    wait: Duration = Field(default=0.0, ge=0)
    interval: Duration = Field(default=300.0, gt=0)  # how long a digest collects
    max_items: int = Field(default=50, ge=1, le=1000)  # rows a digest lists; then "and N more"
    threshold: int = Field(default=10, ge=0)  # alerts per minute per recipient before grouping

    @model_validator(mode="after")
    def _unique_keys(self) -> GroupSettings:
        if len(set(self.by)) != len(self.by):
            raise ValueError(f"by: each key once: {self.by}")
        return self
