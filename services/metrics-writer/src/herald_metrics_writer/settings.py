"""``metrics_writer:`` in herald.yaml: one key per destination module.

``when:`` at the section level applies to every destination that has no ``when:`` of its own.
"""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from herald_metrics_writer.destinations.influxdb import InfluxDbSettings
from herald_metrics_writer.destinations.prometheus import PrometheusSettings
from herald_shared.matcher import MATCH_ALL, When
from herald_shared.settings import DeliverySettings, ServiceSection

_DESTINATION_KEYS = ("influxdb", "prometheus")


class MetricsWriterSettings(ServiceSection):
    influxdb: InfluxDbSettings = InfluxDbSettings()
    prometheus: PrometheusSettings = PrometheusSettings()
    when: When = MATCH_ALL
    # Batches fill from concurrent deliveries, so this is higher than the other services'.
    delivery: DeliverySettings = DeliverySettings(concurrency=256)

    @model_validator(mode="before")
    @classmethod
    def _section_when_for_each_destination(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("when") is None:
            return data
        data = dict(data)
        for key in _DESTINATION_KEYS:
            own = data.get(key)
            own = dict(own) if isinstance(own, dict) else {} if own is None else own
            if isinstance(own, dict):
                own.setdefault("when", data["when"])
            data[key] = own
        return data
