"""``incident_forwarder:`` in herald.yaml: one key per destination module.

Defaults follow Butler's production template (docs/butler-compatibility.md §4d–§4g, §6) where
Butler has one, so a site moving from Butler gets the same payloads, accounts and rate limits
without tuning.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from herald_incident_forwarder.destinations.butler_mqtt import ButlerMqttSettings
from herald_incident_forwarder.destinations.new_relic import NewRelicSettings
from herald_incident_forwarder.destinations.signl4 import Signl4Settings
from herald_incident_forwarder.destinations.webhooks import WebhookSettings
from herald_shared.settings import DeliverySettings, ServiceSection


class IncidentForwarderSettings(ServiceSection):
    new_relic: NewRelicSettings = NewRelicSettings()
    signl4: Signl4Settings = Signl4Settings()
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    butler_mqtt: ButlerMqttSettings = ButlerMqttSettings()
    delivery: DeliverySettings = DeliverySettings()

    @model_validator(mode="after")
    def _check_webhook_names(self) -> IncidentForwarderSettings:
        names = [webhook.name for webhook in self.webhooks]
        if len(set(names)) != len(names):
            raise ValueError("webhooks: every webhook needs its own name")
        return self
