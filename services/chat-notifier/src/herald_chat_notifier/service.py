"""The chat notifier: Slack and Microsoft Teams messages for reload tasks, one destination per
configured target (``slack:<name>``, ``teams:<name>``)."""

from __future__ import annotations

from pathlib import Path

from herald_chat_notifier.chat import unreadable_templates
from herald_chat_notifier.destinations import slack, teams
from herald_chat_notifier.settings import ChatNotifierSettings
from herald_shared.butler_fields import site_zone
from herald_shared.config import ConfigDocument, reveal
from herald_shared.delivery import destination
from herald_shared.preflight import Preflight
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
        time_intervals=context.time_intervals,
    )


def preflight(settings: ChatNotifierSettings, check: Preflight) -> None:
    """Each target's webhook URL and template folder; every template renders on the samples."""
    platforms = (
        ("slack", settings.slack, slack.SlackDestination),
        ("teams", settings.teams, teams.TeamsDestination),
    )
    for key, targets, kind in platforms:
        for index, target in enumerate(targets):
            where = f"{SECTION}.{key}[{index}]"
            check.absolute_url(f"{where}.webhook_url", reveal(target.webhook_url), secret=True)
            check.encrypted(f"{where}.webhook_url", reveal(target.webhook_url), "alerts")
            if target.template_dir is None:
                continue
            if not check.directory(f"{where}.template_dir", target.template_dir):
                continue
            unreadable = unreadable_templates(target.template_dir)
            if unreadable:
                check.problems += unreadable
                continue
            check.problems += kind(target, service=NAME).template_problems(f"{where}.template_dir")


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
    name=NAME,
    section=SECTION,
    settings=ChatNotifierSettings,
    build=build,
    configure=configure,
    preflight=preflight,
)
