"""``metrics_writer:`` in herald.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, Field, SecretStr, model_validator

from herald_shared.config import Duration, Section
from herald_shared.matcher import MATCH_ALL, When
from herald_shared.settings import DeliverySettings, ServiceSection


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


class InfluxDbSettings(Section):
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


PrometheusLabel = Literal["task_name", "task_id", "app_name", "stream"]


def _default_labels() -> list[PrometheusLabel]:
    return ["task_name"]


class PrometheusSettings(Section):
    enabled: bool = True
    # Every label multiplies the series; task_id is unique per task, app_name/stream group them.
    labels: list[PrometheusLabel] = Field(default_factory=_default_labels)
    # Label combinations beyond this are not tracked; herald_reload_series_dropped_total counts them.
    max_series: int = Field(default=1000, ge=1)
    duration_buckets: list[float] = Field(
        default_factory=lambda: [10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0]
    )

    @model_validator(mode="after")
    def _check(self) -> PrometheusSettings:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels: each label at most once")
        if sorted(self.duration_buckets) != self.duration_buckets or not self.duration_buckets:
            raise ValueError("duration_buckets: ascending seconds, at least one")
        return self


class MetricsWriterSettings(ServiceSection):
    influxdb: InfluxDbSettings = InfluxDbSettings()
    prometheus: PrometheusSettings = PrometheusSettings()
    when: When = MATCH_ALL
    # Batches fill from concurrent deliveries, so this is higher than the other services'.
    delivery: DeliverySettings = DeliverySettings(concurrency=256)
