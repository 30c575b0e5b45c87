"""An in-process MQTT broker (amqtt) for the one-machine mode, ``herald up`` with
``broker.embedded: true``.

It is a convenience, not a production broker: MQTT 3.1.1 only, no shared subscriptions, no
persistence, and it does not redeliver unacknowledged messages on reconnect. The bus adapts
(3.1.1, plain subscriptions, a user name so sessions queue while offline); the local SQLite
ledgers and outboxes still keep events across a restart of the process. Production runs Mosquitto
(deploy/mosquitto/mosquitto.conf).
"""

from __future__ import annotations

import logging

from amqtt.broker import Broker

from herald_shared.settings import BrokerSettings

log = logging.getLogger(__name__)


class EmbeddedBroker:
    def __init__(self, settings: BrokerSettings) -> None:
        self._address = f"{settings.host}:{settings.port}"
        self._broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": self._address}},
                # Herald's services connect with a user name, which makes their sessions the
                # named ones amqtt queues for while offline. Anonymous clients are let in too:
                # the README's `mosquitto_sub -V mqttv311 -p 1884 -t 'herald/#'` beside the
                # demo is the first external consumer a new user tries. No password is checked
                # either way: the embedded broker is for one machine, on loopback.
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
                },
            }
        )

    async def start(self) -> None:
        await self._broker.start()
        log.info("embedded MQTT broker listening on %s (MQTT 3.1.1)", self._address)

    async def stop(self) -> None:
        await self._broker.shutdown()
