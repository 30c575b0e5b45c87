"""Butler's MQTT topics, for the IoT consumers that listen to Butler today (docs/butler-compatibility.md §4e).

A failed reload publishes the task name as plain text on ``qliksense/task_failure`` and, with
``task_failure_send_full``, Butler's JSON on ``qliksense/task_failure_full``; an abort does the
same on the aborted pair, whose JSON also has ``qs_appMetadata``. The bytes match Butler's:
compact JSON (``JSON.stringify``), UTF-8, keys in Butler's order. Successes publish nothing.
Each time the connection is made, Butler's notice goes to ``qliksense/butler/mqtt/status``
(``status_topic``).

Each topic is its own target, so a full payload that did not make it is retried on its own. The
broker is Herald's or another one; either way a connection of its own (client id
``herald-incident-forwarder-butler-mqtt-<instance>``, no persistent session).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BeforeValidator, Field, SecretStr

from herald_incident_forwarder import butler
from herald_shared.bus import Bus, BusError, PublishRefused
from herald_shared.config import Section
from herald_shared.delivery.destination import (
    Context,
    Destination,
    PermanentError,
    Skipped,
    Target,
    TransientError,
)
from herald_shared.events import Event, TaskAborted, TaskFailed
from herald_shared.matcher import When
from herald_shared.settings import BrokerSettings, DestinationSettings, TlsSettings

KEY = "butler_mqtt"
CLIENT_NAME = "incident-forwarder-butler-mqtt"
BASIC, FULL = "basic", "full"


def _protocol_text(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


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


class ButlerMqttSettings(DestinationSettings):
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
    # Butler's connect notice: "Connected to MQTT broker <host>:<port> with client ID <id>",
    # published (QoS 0, not retained) each time the connection is made. None: none.
    status_topic: str | None = Field(default="qliksense/butler/mqtt/status", min_length=1)
    # Butler publishes reload tasks only; widen this to hear about other task types too.
    when: When = When(task_types=["reload"])


def full_payload(event: TaskFailed | TaskAborted) -> dict[str, Any]:
    """Butler's full JSON object, keys in Butler's order."""
    payload: dict[str, Any] = {
        "hostName": event.sense_host,
        "user": butler.user_collapsed(event.user),
        "taskName": event.task.name,
        "taskId": event.task.id,
        "appName": butler.app_name(event),
        "appId": butler.app_id(event),
        "logTimeStamp": event.log_timestamp,
        "logLevel": event.log_level,
        "executionId": event.execution.id,
        "logMessage": event.log_message,
        "qs_appTags": butler.app_tags(event),
        "qs_appCustomProperties": butler.app_custom_properties(event),
        "qs_taskTags": list(event.task.tags),
        "qs_taskCustomProperties": butler.custom_properties(event.task.custom_properties),
    }
    if isinstance(event, TaskAborted):  # Butler's failed payload has no qs_appMetadata
        payload["qs_appMetadata"] = butler.app_object(event)
    payload["qs_taskMetadata"] = butler.task_object(event)
    return payload


def broker_settings(settings: ButlerMqttSettings, herald: BrokerSettings) -> BrokerSettings:
    """The connection's settings: Herald's broker, or the configured one."""
    if settings.broker == "herald":
        return herald
    other = settings.broker
    return BrokerSettings(
        host=other.host,
        port=other.port,
        protocol=other.protocol,
        username=other.username,
        password=other.password,
        tls=other.tls,
        keepalive=other.keepalive,
        topic_prefix=herald.topic_prefix,
        instance=herald.instance,
        shared_subscriptions=False,
        reconnect_min=herald.reconnect_min,
        reconnect_max=herald.reconnect_max,
        connect_timeout=herald.connect_timeout,
        publish_timeout=herald.publish_timeout,
    )


class ButlerMqttDestination(Destination):
    name = "butler-mqtt"
    # Butler's payloads have no field that could say "test", and the devices on these topics
    # (lamps, PLCs) would act on it.
    skips_tests = "test alert: Butler's MQTT topics cannot mark a test, so none is published"

    def __init__(self, settings: ButlerMqttSettings, herald_broker: BrokerSettings) -> None:
        self._settings = settings
        self.route_by(settings)
        self._broker = broker_settings(settings, herald_broker)
        self.bus = Bus(self._broker, CLIENT_NAME, persistent=False)
        if settings.status_topic is not None:
            where = f"{self._broker.host}:{self._broker.port}"
            notice = f"Connected to MQTT broker {where} with client ID {self.bus.client_id}"
            self.bus.announce_on_connect(settings.status_topic, notice.encode())

    def topic(self, event: TaskFailed | TaskAborted, target: str) -> str:
        settings = self._settings
        if isinstance(event, TaskFailed):
            return (
                settings.task_failure_topic if target == BASIC else settings.task_failure_full_topic
            )
        return settings.task_aborted_topic if target == BASIC else settings.task_aborted_full_topic

    def targets(self, event: Event) -> Sequence[Target]:
        if isinstance(event, TaskFailed):
            full = self._settings.task_failure_send_full
        elif isinstance(event, TaskAborted):
            full = self._settings.task_aborted_send_full
        else:
            return ()
        return [Target(BASIC), *([Target(FULL)] if full else [])]

    @staticmethod
    def payload(event: TaskFailed | TaskAborted, target: str) -> bytes:
        if target == BASIC:
            return event.task.name.encode()
        return msgspec.json.encode(full_payload(event))

    async def start(self) -> None:
        self.bus.start()

    async def close(self) -> None:
        await self.bus.close()

    @property
    def ready(self) -> bool:
        return self.bus.connected

    async def deliver(self, event: Event, target: str) -> str | None:
        if not isinstance(event, TaskFailed | TaskAborted) or target not in (BASIC, FULL):
            raise Skipped("Butler publishes only failed and aborted tasks")
        topic = self.topic(event, target)
        where = f"{self._broker.host}:{self._broker.port}"
        try:
            await self.bus.publish(
                topic,
                self.payload(event, target),
                qos=self._settings.qos,
                retain=self._settings.retain,
            )
        except PublishRefused as error:
            # The broker's ACL refusing the topic stays refused: a dead letter, not retries.
            failure = PermanentError if error.permanent else TransientError
            raise failure(f"Butler MQTT broker {where} refused {topic}: {error.reason}") from None
        except BusError as error:
            raise TransientError(f"Butler MQTT broker {where}: {error}") from None
        return f"published on {topic}"


def destinations(settings: ButlerMqttSettings, context: Context) -> list[Destination]:
    return [ButlerMqttDestination(settings, context.broker)] if settings.enabled else []
