"""What a service instance says of itself on the broker: version, readiness, queue, last event.

Retained on ``herald/v1/status/<service>/<instance>/health`` (:class:`SelfReport`, JSON), under
the instance's own status topic, so the broker account that may publish its status may publish
this too, and the ``status/+/+`` subscriptions (ingest's, ``herald send-test``'s) do not see it.
The console's services page reads it; ``/readyz`` stays the probe Kubernetes uses.

It is published when it changes (looked at every :data:`INTERVAL` seconds) and at least every
:data:`REFRESH` seconds, so a broker that lost its retained messages has it again soon, and
cleared on a clean stop. After a crash the last report stays with its ``at``, while the status
topic says ``offline`` (the will).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Final

import msgspec

from herald_shared import topics
from herald_shared.bus import Bus, BusError

__all__ = [
    "INTERVAL",
    "REFRESH",
    "SelfReport",
    "SelfReporter",
    "decode",
    "encode",
    "herald_version",
]

log = logging.getLogger(__name__)

INTERVAL: Final = 5.0  # seconds between looks at what the instance would say
REFRESH: Final = 60.0  # seconds after which an unchanged report is published again


class SelfReport(msgspec.Struct, kw_only=True, frozen=True):
    """One instance's word about itself."""

    version: str
    ready: bool
    why: str  # what ``/readyz`` would say
    queued: int  # deliveries taken and not yet ended (pending or to be retried)
    last_event_at: datetime | None  # when it last took an event; None: not since it started
    started_at: datetime


def herald_version() -> str:
    try:
        return version("herald-shared")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


encode = msgspec.json.Encoder().encode
_decoder = msgspec.json.Decoder(SelfReport)


def decode(payload: bytes) -> SelfReport:
    """A report from its JSON; raises ValueError with a readable reason."""
    try:
        return _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise ValueError(f"not a Herald self-report: {error}") from None


class SelfReporter:
    """Publishes one instance's :class:`SelfReport` retained, when it changed or went stale."""

    def __init__(self, bus: Bus, report: Callable[[], SelfReport]) -> None:
        self._bus = bus
        self._report = report
        self._topic = topics.self_report_topic(
            bus.settings.topic_prefix, bus.service, bus.settings.instance
        )

    async def run(self) -> None:
        """Until cancelled: a broker that is away only delays the next report."""
        said: bytes | None = None
        said_at = 0.0
        while True:
            payload = encode(self._report())
            stale = time.monotonic() - said_at >= REFRESH
            if self._bus.connected and (payload != said or stale):
                try:
                    await self._bus.publish(self._topic, payload, retain=True)
                    said, said_at = payload, time.monotonic()
                except BusError as error:
                    log.debug("self-report not published, next look soon: %s", error)
            await asyncio.sleep(INTERVAL)  # read each time: tests shorten it

    async def clear(self) -> None:
        """On a clean stop: the instance is gone, not silent. After a crash the last report
        stays with its time, and the status topic says ``offline`` (the will)."""
        if self._bus.connected:
            try:
                await self._bus.publish(self._topic, b"", retain=True)
            except BusError as error:
                log.debug("self-report not cleared: %s", error)
