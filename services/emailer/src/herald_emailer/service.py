"""The emailer: alert e-mails per outcome, through one SMTP connection."""

from __future__ import annotations

from pathlib import Path

from herald_emailer.destination import EmailDestination
from herald_emailer.message import build_message, envelope_sender
from herald_emailer.rendering import Rendered, check_renderer, load_renderer
from herald_emailer.settings import OUTCOMES, EmailerSettings
from herald_emailer.smtp import SmtpTransport
from herald_shared import samples
from herald_shared.config import ConfigDocument, ConfigError
from herald_shared.runtime import Context, ServiceSpec
from herald_shared.subscriber import SubscriberService

NAME = "emailer"
SECTION = "emailer"


def check_templates(settings: EmailerSettings) -> None:
    """Render every enabled outcome's templates against the sample events.

    Raises :class:`ConfigError` naming the file and line, before anything connects.
    """
    problems: list[str] = []
    for outcome in OUTCOMES:
        block = settings.outcome(outcome)
        if not block.enable:
            continue
        try:
            renderer = load_renderer(outcome, block, settings.template_dir)
            check_renderer(outcome, renderer, samples.sample_events())
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(problems)


def configure(document: ConfigDocument) -> EmailerSettings:
    settings = document.section(SECTION, EmailerSettings)
    check_templates(settings)
    return settings


def destinations(settings: EmailerSettings, transport: SmtpTransport) -> list[EmailDestination]:
    check_templates(settings)
    built = []
    for outcome in OUTCOMES:
        block = settings.outcome(outcome)
        if not block.enable:
            continue
        built.append(
            EmailDestination(
                outcome,
                block,
                renderer=load_renderer(outcome, block, settings.template_dir),
                transport=transport,
                default_sender=settings.from_address,
                takes_recoveries=outcome == "succeeded" and not settings.recovered.enable,
            )
        )
    return built


def build(settings: EmailerSettings, context: Context) -> SubscriberService:
    transport = SmtpTransport(settings.smtp)
    return SubscriberService(
        name=NAME,
        destinations=destinations(settings, transport),
        broker=context.broker,
        delivery=settings.delivery,
        state_dir=Path(settings.state_dir),
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
    name=NAME, section=SECTION, settings=EmailerSettings, build=build, configure=configure
)
