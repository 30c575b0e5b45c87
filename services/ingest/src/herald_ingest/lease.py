"""The sweep's lease: when two ingests run (two appenders, two replicas), one of them sweeps.

A site with two ingests gets every datagram twice and publishes every event twice under one id
(the subscribers' ledgers drop the second); the reconciliation sweep must not also double the
QRS's load. A retained message on ``herald/v1/lease/ingest/reconcile`` says which instance
sweeps, until when, and how far its checkpoint is::

    {"holder": "ingest-a", "expires_at": 1764669600.0, "checkpoint_ms": 1764669480000}

Before each sweep an ingest looks at the last lease it heard:

- held by another instance and not expired: it does not sweep, and takes the holder's checkpoint
  as its own, so that if it takes over it continues from there instead of catching up on what
  the holder already did;
- otherwise it claims the lease (``expires_at`` three intervals ahead), sweeps, and publishes the
  lease again with its new checkpoint. A clean stop releases the lease at once; a killed holder's
  lease runs out after three intervals, and the other ingest takes over.

Retained messages are the broker's own memory, so no other store is needed. Two ingests that
claim in the same instant both sweep that once (the same event ids: nothing is alerted twice)
and agree afterwards, since both hear the last claim. When the broker is away, or its ACL refuses
the topic, each ingest sweeps on its own: twice the QRS's load, never a missed run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

import msgspec

from herald_shared.bus import Bus, BusError, Message

log = logging.getLogger(__name__)

HELD_FOR_INTERVALS: Final = 3


class Claim(msgspec.Struct, frozen=True):
    holder: str
    expires_at: float
    checkpoint_ms: int | None = None


class Lease:
    def __init__(
        self,
        bus: Bus,
        topic: str,
        instance: str,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.topic = topic
        self._instance = instance
        self._interval = interval
        self._clock = clock
        self.heard: Claim | None = None

    async def on_message(self, message: Message) -> None:
        """The bus's handler for the lease topic (retained: the last claim comes at connect)."""
        if not message.payload:
            self.heard = None
            return
        try:
            self.heard = msgspec.json.decode(message.payload, type=Claim)
        except msgspec.DecodeError as error:
            log.warning("ignoring a malformed sweep lease on %s: %s", message.topic, error)

    def held_elsewhere(self) -> Claim | None:
        """The claim of another instance that still holds the lease, or None."""
        heard = self.heard
        if heard is None or heard.holder == self._instance or heard.expires_at <= self._clock():
            return None
        return heard

    async def claim(self, checkpoint_ms: int | None) -> None:
        expires_at = self._clock() + HELD_FOR_INTERVALS * max(self._interval, 1.0)
        await self._publish(Claim(self._instance, expires_at, checkpoint_ms))

    async def release(self, checkpoint_ms: int | None) -> None:
        """On a clean stop: let another ingest sweep from the next interval on."""
        heard = self.heard
        if heard is not None and heard.holder == self._instance:
            await self._publish(Claim(self._instance, 0.0, checkpoint_ms))

    async def _publish(self, claim: Claim) -> None:
        self.heard = claim
        if not self.bus.connected:
            return  # sweeping alone until the broker is back
        try:
            await self.bus.publish(self.topic, msgspec.json.encode(claim), retain=True)
        except BusError as error:
            log.warning(
                "cannot publish the sweep lease on %s (%s); with two ingests, both sweep the QRS "
                "(grant ingest readwrite on it in the broker's ACL)",
                self.topic,
                error,
            )
