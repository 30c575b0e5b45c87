"""``chat_notifier:`` in herald.yaml: lists of Slack and Teams targets, one key per module."""

from __future__ import annotations

from pydantic import Field, model_validator

from herald_chat_notifier.destinations.slack import SlackTarget
from herald_chat_notifier.destinations.teams import TeamsTarget
from herald_shared.settings import DeliverySettings, ServiceSection


class ChatNotifierSettings(ServiceSection):
    slack: list[SlackTarget] = Field(default_factory=list)
    teams: list[TeamsTarget] = Field(default_factory=list)
    delivery: DeliverySettings = DeliverySettings()

    @model_validator(mode="after")
    def _unique_names(self) -> ChatNotifierSettings:
        for platform, targets in (("slack", self.slack), ("teams", self.teams)):
            names = [target.name for target in targets]
            duplicates = sorted({name for name in names if names.count(name) > 1})
            if duplicates:
                raise ValueError(f"{platform}: target names must be unique: {duplicates}")
        return self
