"""The log archiver: failed reloads' script logs on disk, for post-mortems."""

from __future__ import annotations

from pathlib import Path

from herald_log_archiver.destinations import archive
from herald_log_archiver.settings import LogArchiverSettings
from herald_shared.delivery import destination
from herald_shared.runtime import Context, ServiceSpec
from herald_shared.subscriber import SubscriberService

NAME = "log-archiver"

#: The destination modules, in the order their destinations are built.
DESTINATIONS: tuple[destination.DestinationModule, ...] = (archive,)


def build(settings: LogArchiverSettings, context: Context) -> SubscriberService:
    return SubscriberService(
        name=NAME,
        destinations=destination.build(
            DESTINATIONS, settings, destination.Context(NAME, context.broker)
        ),
        broker=context.broker,
        delivery=settings.delivery,
        state_dir=Path(settings.state_dir),
        time_intervals=context.time_intervals,
    )


SERVICE = ServiceSpec(name=NAME, section="log_archiver", settings=LogArchiverSettings, build=build)
