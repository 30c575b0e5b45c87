"""What the commands that follow deliveries (``herald send-test``, ``herald replay``) share: their
connection, which service instances are online with which destinations, and receipt lines.

Who is running comes from the broker's retained messages: each instance's status
(``herald/v1/status/<service>/<instance>``, ``online`` or ``offline``) and the destination names
each subscriber service instance announces (``herald/v1/destinations/<service>/<instance>``,
cleared on a clean stop). A command's connection is ephemeral (a fresh client id, a clean
session, no status of its own), so runs never take each other's connection and the operator's
account needs no status topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TextIO

import msgspec

from herald_shared import topics
from herald_shared.bus import Bus, Handler
from herald_shared.delivery.receipts import Receipt
from herald_shared.settings import BrokerSettings

__all__ = [
    "SETTLE_SECONDS",
    "Follower",
    "Instance",
    "Roster",
    "connect",
    "connection",
    "receipt_line",
    "section_of",
    "settled",
    "wait_until",
    "where",
]

Instance = tuple[str, str]  # service, instance

#: After the subscription, retained messages come at once; this long without one means all came.
SETTLE_SECONDS = 0.5


def connection(broker: BrokerSettings, name: str, families: Iterable[str], handler: Handler) -> Bus:
    """A command's own connection, reading the topic ``families`` (``status``, ``deliveries``…)."""
    return Bus(
        broker,
        name,
        subscriptions=[topics.family_filter(broker.topic_prefix, family) for family in families],
        handler=handler,
        ephemeral=True,
    )


async def connect(bus: Bus) -> bool:
    """Start ``bus`` and wait for it; False (said on stderr, the bus closed) if it cannot."""
    broker = bus.settings
    bus.start()
    try:
        await asyncio.wait_for(bus.wait_connected(), broker.connect_timeout)
    except TimeoutError:
        print(f"herald: cannot reach the broker at {broker.host}:{broker.port}", file=sys.stderr)
        await bus.close()
        return False
    return True


def section_of(prefix: str, topic: str) -> tuple[str, list[str]]:
    """``("deliveries", ["emailer"])`` for ``herald/v1/deliveries/emailer``."""
    section, *rest = topic.removeprefix(f"{prefix}/{topics.VERSION}/").split("/")
    return section, rest


@dataclass
class Roster:
    """The instances the retained statuses and destination lists describe, kept up to date."""

    online: dict[Instance, bool] = field(default_factory=dict)
    announced: dict[Instance, list[str]] = field(default_factory=dict)

    def take(self, section: str, rest: list[str], payload: bytes) -> bool:
        """Take a status or destinations message; False for any other."""
        if len(rest) != 2:
            return False
        instance = (rest[0], rest[1])
        if section == "status":
            self.online[instance] = payload == b"online"
        elif section == "destinations":
            if payload:
                self.announced[instance] = msgspec.json.decode(payload, type=list[str])
            else:
                self.announced.pop(instance, None)  # cleared on a clean stop
        else:
            return False
        return True

    def running(self) -> dict[Instance, list[str]]:
        """Every subscriber service instance that is online, with its destinations."""
        return {
            instance: names
            for instance, names in sorted(self.announced.items())
            if self.online.get(instance)
        }


@dataclass(kw_only=True)
class Follower:
    """What a command has heard so far: the roster, and whatever its subclass takes in
    :meth:`heard`; ``changed`` is set after every message."""

    prefix: str
    out: TextIO
    roster: Roster = field(default_factory=Roster)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set by status and destinations messages only: what :func:`settled` waits on (receipts
    #: of a busy system never settle).
    roster_changed: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, topic: str, payload: bytes) -> None:
        section, rest = section_of(self.prefix, topic)
        if self.roster.take(section, rest, payload):
            self.roster_changed.set()
        else:
            self.heard(section, rest, payload)
        self.changed.set()

    def heard(self, section: str, rest: list[str], payload: bytes) -> None:
        """A message of another family than ``status`` and ``destinations``."""

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)


def where(destination: str, target: str) -> str:
    return destination + (f" ({target})" if target else "")


def receipt_line(receipt: Receipt) -> str:
    """``emailer: email-failed (ops@example.com): delivered``, with the detail if there is one."""
    detail = f": {receipt.detail}" if receipt.detail else ""
    return f"{receipt.service}: {where(receipt.destination, receipt.target)}: {receipt.outcome}{detail}"


async def wait_until(changed: asyncio.Event, done: Callable[[], bool], within: float) -> bool:
    """Wait, woken by ``changed``, until ``done()``; whether it was done within ``within`` s."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while not done():
                changed.clear()
                await changed.wait()
    return done()


async def settled(arrived: asyncio.Event, quiet: float = SETTLE_SECONDS) -> None:
    """Return once ``arrived`` has not been set for ``quiet`` seconds: the retained messages are in."""
    while True:
        arrived.clear()
        try:
            await asyncio.wait_for(arrived.wait(), quiet)
        except TimeoutError:
            return
