"""InfluxDB: every failed and (as configured) successful reload as a point in Butler's schema.

Points go out in batches (:mod:`herald_metrics_writer.batch_writer`); a delivery is done once its
point is stored. Aborts are never written, as in Butler.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, Field, SecretStr, model_validator

from herald_metrics_writer import butler_schema
from herald_metrics_writer.batch_writer import BatchWriter
from herald_shared.butler_fields import TimeZoneName, zone
from herald_shared.config import Duration, Section
from herald_shared.delivery.destination import SINGLE_TARGET, Context, Destination, Target
from herald_shared.events import Event, TaskAborted, TaskSucceeded
from herald_shared.matcher import MATCH_ALL, When
from herald_shared.settings import DestinationSettings

KEY = "influxdb"


class InfluxV1Settings(Section):
    database: str = "butler"
    retention_policy: str | None = None  # None: the database's default policy
    username: str | None = None  # basic auth when set
    password: SecretStr | None = None
    create_database: bool = True  # Butler creates its database at start-up


class InfluxV2Settings(Section):
    org: str = ""
    bucket: str = ""
    token: SecretStr | None = None


class InfluxV3Settings(Section):
    database: str = ""
    token: SecretStr | None = None


class CustomPropertyValue(Section):
    name: str = "Butler_SuccessReloadTask_InfluxDB"
    value: str = "Yes"


class SuccessMetricsSettings(Section):
    """Which successful reloads are written (Butler's reloadTaskSuccess.allReloadTasks /
    byCustomProperty); failures are always written."""

    enabled: bool = True
    mode: Literal["all_reload_tasks", "by_custom_property"] = "all_reload_tasks"
    custom_property: CustomPropertyValue = CustomPropertyValue()


class InfluxDbSettings(DestinationSettings):
    enabled: bool = True
    version: Literal[1, 2, 3] = 1
    url: AnyHttpUrl = AnyHttpUrl("http://localhost:8086")
    v1: InfluxV1Settings = InfluxV1Settings()
    v2: InfluxV2Settings = InfluxV2Settings()
    v3: InfluxV3Settings = InfluxV3Settings()
    ca_file: Path | None = None  # https: None means the system's trust store
    verify: bool = True
    timeout: Duration = 10.0  # one write request
    # A batch is written when it has batch_size points or flush_interval after its first point.
    # Points in flight are bounded by delivery.concurrency, so raise both together.
    batch_size: int = Field(default=200, ge=1, le=100_000)
    flush_interval: Duration = 1.0
    # Points waiting for a write; above it new points are refused (and retried by the runner).
    max_buffered: int = Field(default=10_000, ge=1)
    static_tags: dict[str, str] = Field(default_factory=dict)  # on every point
    # measurement name -> tags on that measurement's points (override the global ones)
    measurement_tags: dict[str, dict[str, str]] = Field(default_factory=dict)
    use_task_tags: bool = True  # taskTag_<tag>="true"
    use_app_tags: bool = True  # appTag_<tag>="true"
    failed_tail_lines: int = Field(default=20, ge=0)  # Butler's InfluxDB defaults
    success_head_lines: int = Field(default=15, ge=0)
    success_tail_lines: int = Field(default=25, ge=0)
    success: SuccessMetricsSettings = SuccessMetricsSettings()
    when: When = MATCH_ALL  # metrics_writer.when unless set here
    # The zone of task_execution{Start,Stop}Time_json's Local1..5 (Butler: its host's); null:
    # qlik.timezone, else UTC (herald_shared.butler_fields.site_zone).
    timezone: TimeZoneName = None

    @model_validator(mode="after")
    def _check_version_keys(self) -> InfluxDbSettings:
        if not self.enabled:
            return self
        if self.version == 2 and not (self.v2.org and self.v2.bucket and self.v2.token):
            raise ValueError("version 2 needs v2.org, v2.bucket and v2.token (or v2.token_file)")
        if self.version == 3 and not (self.v3.database and self.v3.token):
            raise ValueError("version 3 needs v3.database and v3.token (or v3.token_file)")
        if self.v1.password is not None and self.v1.username is None:
            raise ValueError("v1.password needs v1.username")
        return self


class InfluxDestination(Destination):
    name = "influxdb"
    skips_tests = "test alert: not counted in the reload dashboards"

    def __init__(self, settings: InfluxDbSettings, service: str) -> None:
        self.route_by(settings)
        self._settings = settings
        self._options = butler_schema.SchemaOptions(
            static_tags=settings.static_tags,
            measurement_tags=settings.measurement_tags,
            use_task_tags=settings.use_task_tags,
            use_app_tags=settings.use_app_tags,
            failed_tail_lines=settings.failed_tail_lines,
            success_head_lines=settings.success_head_lines,
            success_tail_lines=settings.success_tail_lines,
            zone=zone(settings.timezone) or UTC,
        )
        self.writer = BatchWriter(settings, service)

    def targets(self, event: Event) -> Sequence[Target]:
        if isinstance(event, TaskAborted):
            return ()  # Butler never writes aborts
        if isinstance(event, TaskSucceeded) and not self._wants_success(event):
            return ()
        return SINGLE_TARGET

    def _wants_success(self, event: TaskSucceeded) -> bool:
        success = self._settings.success
        if not success.enabled:
            return False
        if success.mode == "all_reload_tasks":
            return True
        wanted = success.custom_property
        return wanted.value in event.task.custom_properties.get(wanted.name, ())

    async def deliver(self, event: Event, target: str) -> str | None:
        point = butler_schema.point(event, self._options)
        assert point is not None, "targets() leaves out what has no measurement"
        await self.writer.write(point.to_line())
        return f"{point.measurement} → {self.writer.describe}"

    async def start(self) -> None:
        await self.writer.start()

    async def close(self) -> None:
        await self.writer.close()


def destinations(settings: InfluxDbSettings, context: Context) -> list[Destination]:
    return [InfluxDestination(settings, context.service)] if settings.enabled else []
