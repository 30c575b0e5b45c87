"""``log_archiver:`` in herald.yaml: the archive's settings and the delivery settings."""

from __future__ import annotations

from herald_log_archiver.destinations.archive import ArchiveSettings
from herald_shared.settings import DeliverySettings, ServiceSection


class LogArchiverSettings(ServiceSection, ArchiveSettings):
    delivery: DeliverySettings = DeliverySettings()
