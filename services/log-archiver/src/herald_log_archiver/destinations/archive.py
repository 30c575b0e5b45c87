"""The archive: each failed (and, as configured, aborted) reload's script log as a file on disk.

Files are written atomically under ``<directory>/<day>/``; day folders older than
``retention_days`` are removed once an hour (0 keeps everything).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from pydantic import Field

from herald_log_archiver import archive
from herald_shared.config import Section
from herald_shared.delivery.destination import (
    Context,
    Destination,
    Skipped,
    Target,
    TransientError,
)
from herald_shared.events import Event, TaskAborted, TaskFailed
from herald_shared.matcher import MATCH_ALL, When

log = logging.getLogger(__name__)

KEY = None  # the archive's settings are the log_archiver section itself
RETENTION_INTERVAL = 3600.0


class ArchiveSettings(Section):
    directory: Path = Path("var/script-logs")
    # Day folders older than this many days are removed; 0 keeps everything.
    retention_days: int = Field(default=90, ge=0)
    include_aborted: bool = False  # Butler archives failed reloads only
    when: When = MATCH_ALL


class ArchiveDestination(Destination):
    name = "archive"
    skips_tests = "test alert: not archived, it is no failed reload"

    def __init__(self, settings: ArchiveSettings) -> None:
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


def destinations(settings: ArchiveSettings, context: Context) -> list[Destination]:
    return [ArchiveDestination(settings)]
