"""Herald's connection to the MQTT broker: QoS 1, persistent sessions, acknowledgement after handling.

This is the only module that knows aiomqtt and paho. aiomqtt 2.x acknowledges every message
as it arrives, before the application has seen it; Herald must acknowledge only once a
message is handled, so the bus turns paho's manual acknowledgement on through aiomqtt's private
``_client`` (aiomqtt is pinned for this; ``tests/herald_shared/test_bus.py`` proves the redelivery).

One connection per service instance, under the stable client id ``herald-<service>-<instance>``
with a persistent session (clean start off, a session expiry), so messages published while the
service is down or reconnecting wait in the broker. The connection is retried forever with
exponential backoff and jitter; subscriptions are renewed on every connect. A retained
``online``/``offline`` status is published on the status topic, with ``offline`` as the will;
a service's other retained announcements (its destination list) come just before ``online`` on
every connect and are cleared on a clean stop.

A command's connection (``herald send-test``, ``herald tail``) is ephemeral: a fresh client id
per run, so two runs never take each other's connection, a clean session acknowledged on
arrival, and no status or will, which the operator's account may not publish
(``deploy/mosquitto/acl``). No one-shot client (``persistent=False``, e.g. the Butler MQTT
destination's) publishes status either: it holds no session, and ingest takes every status it
sees for a subscriber service that acknowledges events (``herald_ingest.redelivery``).

A publish the broker refuses is an error (:class:`PublishRefused`), not a success: aiomqtt 2.5
drops the PUBACK's reason code, so the bus's client keeps the code paho reports for each message
id (MQTT 5; an MQTT 3.1.1 PUBACK has no reason code, and Mosquitto acknowledges a publish its
ACL denies like any other, so there a refused publish cannot be told from a delivered one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiomqtt
import paho.mqtt.client as mqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from herald_shared import metrics, topics
from herald_shared.config import reveal
from herald_shared.settings import BrokerSettings
from herald_shared.tls import client_context

__all__ = ["OFFLINE", "ONLINE", "Bus", "BusError", "Handler", "Message", "PublishRefused"]

log = logging.getLogger(__name__)

ONLINE: Final = b"online"
OFFLINE: Final = b"offline"


class BusError(Exception):
    """A publish did not reach the broker (not connected, timed out, refused)."""


# Refusals that a retry cannot cure: the same publish will be refused again.
_PERMANENT_REFUSALS: Final = frozenset(
    {"Not authorized", "Topic Name invalid", "Packet too large", "Payload format invalid"}
)


class PublishRefused(BusError):
    """The broker answered the publish with a failure reason code (MQTT 5 PUBACK >= 0x80)."""

    def __init__(self, topic: str, reason: str, code: int) -> None:
        super().__init__(
            f"the broker refused the publish to {topic}: {reason} (reason code {code:#04x})"
        )
        self.topic = topic
        self.reason = reason
        self.code = code

    @property
    def permanent(self) -> bool:
        return self.reason in _PERMANENT_REFUSALS


@dataclass(eq=False)
class Message:
    """One received message; :meth:`ack` sends the PUBACK that the broker waits for."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    _client: aiomqtt.Client = field(repr=False)
    _acked: bool = field(default=False, repr=False)

    def ack(self) -> None:
        # The acknowledgement belongs to the connection that delivered the message. If that
        # connection is gone the broker redelivers on the next one, and the ledger recognises it.
        if self._acked or self.qos == 0:
            return
        self._acked = True
        self._client._client.ack(self.mid, self.qos)


Handler = Callable[[Message], Awaitable[None]]


class Bus:
    """A resilient MQTT connection for one service instance.

    ``handler`` is awaited for every message of ``subscriptions`` (at most
    ``broker.receive_maximum`` at once); the message is acknowledged when it returns. If it
    raises, the message is not acknowledged and the connection is renewed, so the broker
    delivers it again.
    """

    def __init__(
        self,
        settings: BrokerSettings,
        service: str,
        *,
        subscriptions: Sequence[str] = (),
        handler: Handler | None = None,
        persistent: bool = True,
        ephemeral: bool = False,
        retained: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        if subscriptions and handler is None:
            raise ValueError("subscriptions need a handler")
        self.settings = settings
        self.service = service
        self.client_id = f"herald-{service}-{settings.instance}"
        if ephemeral:
            self.client_id += f"-{uuid.uuid4().hex[:12]}"
        self.status_topic = topics.status_topic(settings.topic_prefix, service, settings.instance)
        # A one-shot client must not leave a session behind collecting messages for a day.
        self._persistent = persistent and not ephemeral
        self._ephemeral = ephemeral
        self._retained = tuple(retained)
        self._announce: list[tuple[str, bytes]] = []
        self._subscriptions = tuple(subscriptions)
        self._handler = handler
        self._client: _Client | None = None
        self._connected = asyncio.Event()
        self._consuming = True
        self._stopping = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.receive_maximum)
        self._runner: asyncio.Task[None] | None = None
        self._metric_connected = metrics.BROKER_CONNECTED.labels(service=service)
        self._metric_connected.set(0)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Connect in the background; :meth:`wait_connected` waits for the first connection."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=f"bus-{self.service}")
        return self._runner  # the caller supervises the connection loop

    def announce_on_connect(self, topic: str, payload: bytes) -> None:
        """Publish ``payload`` (QoS 0, not retained) each time the connection is made, as
        Butler's MQTT client announces itself."""
        self._announce.append((topic, payload))

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    def stop_consuming(self) -> None:
        """Take no more messages; those not yet handled stay with the broker for later."""
        self._consuming = False

    async def drain(self) -> None:
        """Wait for the handlers already running."""
        while self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def close(self) -> None:
        """Publish ``offline``, disconnect cleanly (the will does not fire) and stop reconnecting."""
        self._consuming = False
        self._stopping = True
        client = self._client
        if client is not None and self.connected and self._persistent:
            with contextlib.suppress(aiomqtt.MqttError, asyncio.TimeoutError):
                for topic, _ in self._retained:
                    await client.publish(topic, b"", qos=1, retain=True, timeout=2)
                await client.publish(self.status_topic, OFFLINE, qos=1, retain=True, timeout=2)
        if self._runner is not None:
            # Python 3.11's wait_for can swallow a cancellation that races with the connection
            # completing (aiomqtt waits for CONNACK with it), so cancel until the task is gone.
            while not self._runner.done():
                self._runner.cancel()
                await asyncio.wait({self._runner}, timeout=0.5)
            if not self._runner.cancelled() and (error := self._runner.exception()) is not None:
                # A supervised bus has been reported already; this line is for one that is not.
                log.warning("the broker connection loop of %s had ended: %r", self.client_id, error)
        self._metric_connected.set(0)

    # --- publishing ----------------------------------------------------------------------

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish and, for QoS 1, wait for the broker's PUBACK; raises :class:`BusError`."""
        client = self._client
        if client is None or not self.connected:
            raise BusError("not connected to the broker")
        try:
            refusal = await client.publish_acknowledged(
                topic, payload, qos=qos, retain=retain, within=self.settings.publish_timeout
            )
        except aiomqtt.MqttError as error:
            raise BusError(f"publish to {topic} failed: {error}") from None
        if refusal is not None:
            metrics.PUBLISHES_REFUSED.labels(service=self.service, reason=str(refusal)).inc()
            raise PublishRefused(topic, str(refusal), refusal.value)

    # --- the connection loop -------------------------------------------------------------

    async def _run(self) -> None:
        delay = self.settings.reconnect_min
        while not self._stopping:
            try:
                # Inside the try: a TLS file that went missing after the start is logged and
                # retried, never a silent end of the loop.
                client = self._new_client()
                async with client:
                    self._client = client
                    await self._on_connect(client)
                    delay = self.settings.reconnect_min
                    await self._consume(client)
            except aiomqtt.MqttError as error:
                if self._stopping:
                    break
                if self.connected:
                    log.warning("lost the broker connection: %s", error)
                elif (refusal := _account_refused(error)) is not None:
                    log.error(
                        "cannot connect to the broker at %s:%s: it refuses the account %s "
                        "(%s); check broker.username and broker.password; retrying",
                        self.settings.host,
                        self.settings.port,
                        _account(self.settings),
                        refusal,
                    )
                else:
                    log.warning(
                        "cannot connect to the broker at %s:%s: %s",
                        self.settings.host,
                        self.settings.port,
                        error,
                    )
            except _RenewConnection:
                log.warning("renewing the broker connection so unhandled messages come again")
            except Exception:
                # Never let the connection loop die: a service without its bus is silent.
                log.exception("unexpected error in the broker connection; reconnecting")
            finally:
                self._connected.clear()
                self._metric_connected.set(0)
            if self._stopping:
                break
            # Full jitter: replicas that lost the broker together do not return together.
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, self.settings.reconnect_max)

    def _new_client(self) -> _Client:
        settings = self.settings
        v5 = settings.effective_protocol == "5"
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = (
                int(settings.session_expiry) if self._persistent else 0
            )
            properties.ReceiveMaximum = settings.receive_maximum
        username = settings.username
        if username is None and settings.embedded:
            # amqtt queues messages for offline sessions only when the client names a user.
            username = self.client_id
        client = _Client(
            settings.host,
            settings.port,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else not self._persistent,
            # paho refuses a clean-start setting on 3.1.1; there clean_session carries it.
            clean_start=(not self._persistent) if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
            username=username,
            password=reveal(settings.password),
            keepalive=settings.keepalive,
            timeout=settings.connect_timeout,
            will=aiomqtt.Will(self.status_topic, OFFLINE, qos=1, retain=True)
            if self._persistent
            else None,
            tls_context=_tls_context(settings),
            max_inflight_messages=max(20, settings.receive_maximum),
            # Nagle's algorithm holds a small PUBLISH or PUBACK back until the previous one is
            # acknowledged, which with delayed ACKs costs up to 40 ms per hop.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        # Publishing many receipts at once is normal here, not a sign of trouble.
        client.pending_calls_threshold = 100_000
        # An ephemeral client has no session to redeliver into, so it acknowledges on arrival;
        # it also must: amqtt holds the SUBACK until retained messages are acknowledged, which a
        # handler that runs after the subscription could never do.
        client._client.manual_ack_set(not self._ephemeral)
        return client

    async def _on_connect(self, client: aiomqtt.Client) -> None:
        for subscription in self._subscriptions:
            await client.subscribe(subscription, qos=1)
        if self._persistent:
            # Before `online`, so that whoever sees the instance online also sees these.
            for topic, payload in self._retained:
                await client.publish(topic, payload, qos=1, retain=True)
            await client.publish(self.status_topic, ONLINE, qos=1, retain=True)
        for topic, payload in self._announce:
            await client.publish(topic, payload, qos=0)
        self._connected.set()
        self._metric_connected.set(1)
        log.info(
            "connected to the broker at %s:%s as %s (MQTT %s)",
            self.settings.host,
            self.settings.port,
            self.client_id,
            self.settings.effective_protocol,
        )

    async def _consume(self, client: aiomqtt.Client) -> None:
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        reader = asyncio.create_task(self._read(client, failed))
        try:
            await asyncio.wait({reader, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if failed.done():
            raise _RenewConnection
        reader.result()

    async def _read(self, client: aiomqtt.Client, failed: asyncio.Future[None]) -> None:
        async for received in client.messages:
            handler = self._handler
            if not self._consuming or handler is None:
                continue  # not acknowledged: the broker keeps it for the next session
            await self._slots.acquire()
            message = Message(
                topic=received.topic.value,
                payload=received.payload,
                qos=received.qos,
                mid=received.mid,
                _client=client,
            )
            task = asyncio.create_task(self._handle(handler, message, failed))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _handle(
        self, handler: Handler, message: Message, failed: asyncio.Future[None]
    ) -> None:
        try:
            await handler(message)
        except Exception:
            log.exception(
                "handling a message from %s failed; it will be delivered again", message.topic
            )
            if not failed.done():
                failed.set_result(None)
        else:
            message.ack()
        finally:
            self._slots.release()


# CONNACK codes for a refused account: MQTT 3.1.1 (4, 5) and MQTT 5 (0x86, 0x87).
_ACCOUNT_REFUSED: Final = frozenset({4, 5, 0x86, 0x87})


def _account_refused(error: aiomqtt.MqttError) -> str | None:
    """The broker's words if ``error`` is a refused user name or password, else None."""
    if not isinstance(error, MqttConnectError):
        return None
    code = error.rc.value if isinstance(error.rc, ReasonCode) else error.rc
    if code not in _ACCOUNT_REFUSED:
        return None
    return str(error.rc) if isinstance(error.rc, ReasonCode) else "not authorised"


def _account(settings: BrokerSettings) -> str:
    return repr(settings.username) if settings.username else "anonymous (no broker.username)"


async def account_refusal(settings: BrokerSettings, service: str) -> str | None:
    """Why the broker refuses the configured account, or None if it takes it or cannot be reached.

    One short connection before a service starts, under a client id of its own, without a session
    or a will: a refused account is a configuration mistake to stop at, while a broker that is
    down is what the connection loop rides out. The sentence names the account, never the password.
    """
    v5 = settings.effective_protocol == "5"
    client = aiomqtt.Client(
        settings.host,
        settings.port,
        identifier=f"herald-{service}-{settings.instance}-check",
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        clean_session=None if v5 else True,
        username=settings.username,
        password=reveal(settings.password),
        timeout=min(settings.connect_timeout, 5.0),
        tls_context=_tls_context(settings),
    )
    try:
        async with client:
            return None
    except aiomqtt.MqttError as error:
        refusal = _account_refused(error)
        if refusal is None:
            return None
        return (
            f"the broker at {settings.host}:{settings.port} refuses the account "
            f"{_account(settings)} ({refusal}): is the password right, and does the broker "
            "know the account?"
        )


def _tls_context(settings: BrokerSettings) -> ssl.SSLContext | None:
    tls = settings.tls
    if not tls.enabled:
        return None
    return client_context(
        ca_file=tls.ca_file, verify=tls.verify, cert_file=tls.cert_file, key_file=tls.key_file
    )


class _RenewConnection(Exception):
    """A handler failed: reconnect so that the broker redelivers what was not acknowledged."""


class _Client(aiomqtt.Client):
    """aiomqtt's client, keeping the reason code of each PUBACK, which aiomqtt drops.

    ``publish_acknowledged`` is aiomqtt 2.5's ``publish`` (whose private helpers it uses; aiomqtt
    is pinned) with the message id kept, so the PUBACK's reason code can be looked up.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reasons: dict[int, ReasonCode] = {}

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        self._reasons[mid] = reason_code
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish_acknowledged(
        self, topic: str, payload: bytes, *, qos: int, retain: bool, within: float
    ) -> ReasonCode | None:
        """Publish and wait for the broker's PUBACK (QoS 1); the failure reason, if it refused."""
        info = self._client.publish(topic, payload, qos, retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        try:
            if not info.is_published():
                confirmation = asyncio.Event()
                with self._pending_call(info.mid, confirmation, self._pending_publishes):
                    await self._wait_for(confirmation.wait(), timeout=within)
            reason = self._reasons.get(info.mid)
        finally:
            # Message ids are reused: a code must not outlive its publish.
            self._reasons.pop(info.mid, None)
        return reason if reason is not None and reason.is_failure else None
