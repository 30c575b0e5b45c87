"""The console: a web UI and JSON API over what the broker carries, with its own history.

It follows events, receipts, pending deliveries, dead letters, replay answers, the services'
retained status and destination lists, and the silences (``herald_console.feed``); keeps the
history in ``<state_dir>/console.sqlite3`` (``herald_console.store``), pruned every minute to
``console.retention`` and ``console.max_events``; and serves the pages on ``console.listen``.

Its connection is persistent (``herald-console-<instance>``), so events published while it is
down wait in the broker; like every subscriber service it acknowledges each event it stored to
ingest (``herald/v1/acks/console/<instance>``), so ingest, which sees its ``online`` status, does
not resend to it forever. With the embedded broker (the one-machine demo) the connection is
ephemeral instead: amqtt holds a subscription's SUBACK until its retained messages are
acknowledged, which a persistent session's handler only does after subscribing; the console then
keeps what arrives while it runs, publishes no status, and so owes ingest no acknowledgement.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Final

from aiohttp import web

from herald_console.actions import Actions
from herald_console.auth import Access
from herald_console.feed import Announcements, Feed, subscriptions
from herald_console.settings import ConsoleSettings
from herald_console.store import Store
from herald_console.web import Web
from herald_shared import topics
from herald_shared.bus import Bus, Message
from herald_shared.delivery.acks import Acknowledgements
from herald_shared.outbox import Outbox
from herald_shared.preflight import Preflight
from herald_shared.runtime import Context, ServiceSpec
from herald_shared.settings import BrokerSettings
from herald_shared.supervision import Supervisor, every

__all__ = ["NAME", "SERVICE", "ConsoleService"]

log = logging.getLogger(__name__)

NAME: Final = "console"
PRUNE_EVERY: Final = 60.0  # seconds


class ConsoleService:
    name = NAME

    def __init__(self, settings: ConsoleSettings, broker: BrokerSettings) -> None:
        self.settings = settings
        self.broker = broker
        self.store = Store(
            Path(settings.state_dir) / f"{NAME}.sqlite3",
            retention=settings.retention,
            max_events=settings.max_events,
        )
        self.announcements = Announcements()
        self.feed = Feed(self.store, broker.topic_prefix, self.announcements)
        persistent = not broker.embedded
        self.bus = Bus(
            broker,
            NAME,
            subscriptions=subscriptions(broker.topic_prefix),
            handler=self._take,
            ephemeral=not persistent,
        )
        self.outbox = Outbox(self.store.db, self.bus)
        self.acks = Acknowledgements(
            self.store.db,
            self.outbox,
            topics.acks_topic(broker.topic_prefix, NAME, broker.instance) if persistent else None,
        )
        self.feed.on_event = self._stored
        self.web = Web(
            self.feed, Actions(broker, self.bus, self.store), Access(settings), settings.page_size
        )
        self.supervisor = Supervisor(NAME)
        self._runner: web.AppRunner | None = None
        self.port = settings.port  # the bound one once started (listen may say 0)

    async def _take(self, message: Message) -> None:
        self.feed.take(message.topic, message.payload)

    def _stored(self, event_id: str) -> None:
        with self.store.db.transaction():
            self.acks.record([event_id])
        self.acks.send_soon()

    async def start(self) -> None:
        self.store.prune()
        self._runner = web.AppRunner(self.web.app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.settings.host, self.settings.port, ssl_context=self._tls()
        )
        await site.start()
        sockets = getattr(site._server, "sockets", None)
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self.supervisor.watch(self.bus.start(), "the broker connection")
        self.supervisor.spawn(self.outbox.run(), "the outbox")
        self.supervisor.spawn(
            every(PRUNE_EVERY, self._prune, what="pruning the history"), "pruning"
        )
        scheme = "https" if self.settings.tls.enabled else "http"
        log.info("console on %s://%s:%d/", scheme, self.settings.host, self.port)

    def _tls(self) -> ssl.SSLContext | None:
        tls = self.settings.tls
        if tls.cert_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        return context

    def _prune(self) -> None:
        dropped = self.store.prune()
        if dropped:
            log.info("forgot %d events beyond console.retention or console.max_events", dropped)

    async def stop(self) -> None:
        self.web.closing.set()  # live pages end their streams
        if self._runner is not None:
            await self._runner.cleanup()
        self.acks.send()
        await self.bus.close()
        await self.supervisor.stop()
        self.store.close()

    def readiness(self) -> tuple[bool, str]:
        ok, why = self.supervisor.health()
        if not ok:
            return ok, why
        if not self.bus.connected:
            return False, "not connected to the broker"
        return True, f"{self.store.count()} events in the history"

    def liveness(self) -> tuple[bool, str]:
        return self.supervisor.health()


def preflight(settings: ConsoleSettings, check: Preflight) -> None:
    unsafe = settings.unsafe()
    if unsafe is not None:
        check.fail("console.users" if settings.auth == "basic" else "console.auth", unsafe)
    check.port_free("console.listen", settings.host, settings.port)
    tls = settings.tls
    if tls.enabled:
        check.client_certificate(
            "console.tls.cert_file", tls.cert_file, "console.tls.key_file", tls.key_file
        )
    check.state_database("console.state_dir", Path(settings.state_dir), NAME)


def build(settings: ConsoleSettings, context: Context) -> ConsoleService:
    return ConsoleService(settings, context.broker)


SERVICE = ServiceSpec(
    name=NAME, section="console", settings=ConsoleSettings, build=build, preflight=preflight
)
