"""The emailer: alert e-mails per outcome, through one SMTP connection."""

from __future__ import annotations

from pathlib import Path

from herald_emailer.destinations import email
from herald_emailer.message import build_message, envelope_sender
from herald_emailer.rendering import Rendered, load_renderer
from herald_emailer.settings import EmailerSettings
from herald_emailer.smtp import SmtpTransport
from herald_shared import samples
from herald_shared.butler_fields import site_zone
from herald_shared.config import ConfigDocument
from herald_shared.delivery import destination
from herald_shared.runtime import Context, ServiceSpec
from herald_shared.subscriber import SubscriberService

NAME = "emailer"
SECTION = "emailer"

#: The destination modules, in the order their destinations are built.
DESTINATIONS: tuple[destination.DestinationModule, ...] = (email,)


def configure(document: ConfigDocument) -> EmailerSettings:
    settings = document.section(SECTION, EmailerSettings)
    settings = settings.model_copy(update={"timezone": site_zone(document.data, settings.timezone)})
    email.check_templates(settings, document.origin(SECTION))
    return settings


def build(settings: EmailerSettings, context: Context) -> SubscriberService:
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


async def send_test_message(settings: EmailerSettings, address: str) -> str:
    """Send a test e-mail to ``address`` through the configured server; the server's answer.

    Raises :class:`~herald_shared.delivery.destination.TransientError` or
    :class:`~herald_shared.delivery.destination.PermanentError` with a readable reason.
    """
    block = settings.failed
    renderer = load_renderer("failed", block, settings.template_dir)
    sample = renderer.render(samples.sample_failed())
    rendered = Rendered(
        subject=f"Herald test message: {sample.subject}",
        text="This is a test message from Herald. A real failure alert looks like this:\n\n"
        + sample.text,
        html=sample.html,
    )
    sender = block.from_address or settings.from_address
    message = build_message(rendered, sender=sender, recipient=address, priority="normal")
    transport = SmtpTransport(settings.smtp)
    try:
        return await transport.send(message, envelope_sender(sender), address)
    finally:
        await transport.close()


SERVICE = ServiceSpec(
    name=NAME,
    section=SECTION,
    settings=EmailerSettings,
    build=build,
    configure=configure,
    preflight=email.preflight,
)
