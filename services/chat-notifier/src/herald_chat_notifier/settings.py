"""``chat_notifier:`` in herald.yaml: lists of Slack and Teams targets."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeAlias

from pydantic import Field, SecretStr, model_validator

from herald_shared.config import Duration, Section
from herald_shared.matcher import MATCH_ALL, When
from herald_shared.settings import DeliverySettings, ServiceSection

Outcome: TypeAlias = Literal["failed", "aborted", "succeeded", "recovered"]


def _failures() -> list[Outcome]:
    return ["failed", "aborted"]


class ChatTarget(Section):
    """What every chat target has, whatever the platform."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")  # part of the destination name: keep stable
    webhook_url: SecretStr  # a secret: whoever has it can post to the channel
    # `recovered` is a success that ends an earlier failure or abort ("running again").
    outcomes: list[Outcome] = Field(default_factory=_failures, min_length=1)
    when: When = MATCH_ALL
    # At most one message per task and outcome within this window (Butler: 300 s); 0 turns it off.
    rate_limit: Duration = 300.0
    message_type: Literal["formatted", "basic"] = "formatted"
    head_lines: int = Field(default=10, ge=0)  # script-log lines from the start
    tail_lines: int = Field(default=10, ge=0)  # and from the end
    timeout: Duration = 10.0  # one HTTP request
    # Folder with <outcome>.yaml or <outcome>.json payload structures replacing the built-in ones.
    template_dir: Path | None = None


class SlackTarget(ChatTarget):
    username: str = "Qlik Sense"
    icon_emoji: str = ":ghost:"
    channel: str | None = None  # None: the webhook's own channel


class TeamsTarget(ChatTarget):
    # adaptive_card: a Workflows webhook ("when a Teams webhook request is received");
    # message_card: a legacy Office 365 connector webhook.
    format: Literal["adaptive_card", "message_card"] = "adaptive_card"
    card_version: Literal["1.4", "1.5"] = "1.5"


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
