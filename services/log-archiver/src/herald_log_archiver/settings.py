"""``log_archiver:`` in herald.yaml."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from herald_shared.matcher import MATCH_ALL, When
from herald_shared.settings import DeliverySettings, ServiceSection


class LogArchiverSettings(ServiceSection):
    directory: Path = Path("var/script-logs")
    # Day folders older than this many days are removed; 0 keeps everything.
    retention_days: int = Field(default=90, ge=0)
    include_aborted: bool = False  # Butler archives failed reloads only
    when: When = MATCH_ALL
    delivery: DeliverySettings = DeliverySettings()
