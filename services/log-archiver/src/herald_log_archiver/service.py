"""The log archiver: failed reloads' script logs on disk, for post-mortems."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from herald_log_archiver import archive
from herald_log_archiver.settings import LogArchiverSettings
from herald_shared.delivery.destination import Destination, Skipped, Target, TransientError
from herald_shared.events import Event, TaskAborted, TaskFailed
from herald_shared.matcher import When
from herald_shared.runtime import Context, ServiceSpec
from herald_shared.subscriber import SubscriberService

log = logging.getLogger(__name__)

NAME = "log-archiver"
RETENTION_INTERVAL = 3600.0


class ArchiveDestination(Destination):
    name = "archive"

    def __init__(self, settings: LogArchiverSettings) -> None:
        self._directory = settings.directory
        self._retention_days = settings.retention_days
        self._kinds: tuple[type[Event], ...] = (
            (TaskFailed, TaskAborted) if settings.include_aborted else (TaskFailed,)
        )
        self.when: When = settings.when
        self._retention: asyncio.Task[None] | None = None

    def targets(self, event: Event) -> Sequence[Target]:
        return super().targets(event) if isinstance(event, self._kinds) else ()

    async def deliver(self, event: Event, target: str) -> str | None:
        script_log = event.script_log
        if script_log is None or not script_log.full_text:
            reasons = "; ".join(event.enrichment.reasons) or "the event carries no script log"
            raise Skipped(f"no script log to archive ({reasons})")
        path = self._directory / archive.relative_path(event)
        try:
            # A disk write can block for long on a busy volume; keep the event loop free.
            await asyncio.to_thread(
                archive.write_atomically, path, archive.content(script_log.full_text)
            )
        except OSError as error:
            raise TransientError(f"cannot write {path}: {error.strerror or error}") from None
        return str(path)

    async def start(self) -> None:
        if self._retention_days:
            self._retention = asyncio.create_task(self._apply_retention())

    async def close(self) -> None:
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention

    async def _apply_retention(self) -> None:
        while True:
            try:
                removed = await asyncio.to_thread(
                    archive.remove_expired, self._directory, self._retention_days, date.today()
                )
            except OSError as error:
                log.error(
                    "cannot apply the %d-day retention in %s: %s",
                    self._retention_days,
                    self._directory,
                    error,
                )
            else:
                for folder in removed:
                    log.info("removed %s (older than %d days)", folder, self._retention_days)
            await asyncio.sleep(RETENTION_INTERVAL)


def build(settings: LogArchiverSettings, context: Context) -> SubscriberService:
    return SubscriberService(
        name=NAME,
        destinations=[ArchiveDestination(settings)],
        broker=context.broker,
        delivery=settings.delivery,
        state_dir=Path(settings.state_dir),
    )


SERVICE = ServiceSpec(name=NAME, section="log_archiver", settings=LogArchiverSettings, build=build)
