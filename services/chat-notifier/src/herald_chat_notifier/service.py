"""The chat notifier: Slack and Microsoft Teams messages for reload tasks, one destination per
configured target (``slack:<name>``, ``teams:<name>``)."""

from __future__ import annotations

from pathlib import Path

from herald_chat_notifier.destinations import slack, teams
from herald_chat_notifier.settings import ChatNotifierSettings
from herald_shared.butler_fields import site_zone
from herald_shared.config import ConfigDocument
from herald_shared.delivery import destination
from herald_shared.runtime import Context, ServiceSpec
from herald_shared.subscriber import SubscriberService

NAME = "chat-notifier"
SECTION = "chat_notifier"

#: The destination modules, in the order their destinations are built.
DESTINATIONS: tuple[destination.DestinationModule, ...] = (slack, teams)


def build(settings: ChatNotifierSettings, context: Context) -> SubscriberService:
    return SubscriberService(
        name=NAME,
        destinations=destination.build(
            DESTINATIONS, settings, destination.Context(NAME, context.broker)
        ),
        broker=context.broker,
        delivery=settings.delivery,
        state_dir=Path(settings.state_dir),
    )


def configure(document: ConfigDocument) -> ChatNotifierSettings:
    """The section, each target's time zone defaulting to ``qlik.timezone``."""
    settings = document.section(SECTION, ChatNotifierSettings)
    return settings.model_copy(
        update={
            platform: [
                target.model_copy(update={"timezone": site_zone(document.data, target.timezone)})
                for target in getattr(settings, platform)
            ]
            for platform in ("slack", "teams")
        }
    )


SERVICE = ServiceSpec(
    name=NAME, section=SECTION, settings=ChatNotifierSettings, build=build, configure=configure
)
