"""The chat notifier: Slack and Microsoft Teams messages for reload tasks, one destination per
configured target (``slack:<name>``, ``teams:<name>``)."""

from __future__ import annotations

from pathlib import Path

from herald_chat_notifier.settings import ChatNotifierSettings
from herald_chat_notifier.slack import SlackDestination
from herald_chat_notifier.teams import TeamsDestination
from herald_shared.delivery.destination import Destination
from herald_shared.runtime import Context, ServiceSpec
from herald_shared.subscriber import SubscriberService

NAME = "chat-notifier"


def destinations(settings: ChatNotifierSettings) -> list[Destination]:
    found: list[Destination] = [SlackDestination(t, service=NAME) for t in settings.slack]
    found += [TeamsDestination(t, service=NAME) for t in settings.teams]
    return found


def build(settings: ChatNotifierSettings, context: Context) -> SubscriberService:
    return SubscriberService(
        name=NAME,
        destinations=destinations(settings),
        broker=context.broker,
        delivery=settings.delivery,
        state_dir=Path(settings.state_dir),
    )


SERVICE = ServiceSpec(
    name=NAME, section="chat_notifier", settings=ChatNotifierSettings, build=build
)
