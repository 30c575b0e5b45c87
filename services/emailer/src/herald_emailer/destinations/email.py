"""One destination per outcome: ``email-failed``, ``email-aborted``, ``email-succeeded`` and
``email-recovered`` (the names are part of the ledger key: keep them stable).

A target is one recipient's address; the rate key is ``<task id>|<address>``, Butler's key.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from herald_emailer.message import build_body, build_message, envelope_sender
from herald_emailer.recipients import address_problem, configured_recipients, recipients
from herald_emailer.rendering import (
    DigestRenderer,
    Rendered,
    Renderer,
    as_test,
    check_renderer,
    compile_folder,
    digest_fallback,
    fallback,
    load_digest_renderer,
    load_renderer,
)
from herald_emailer.smtp import SmtpSettings, SmtpTransport
from herald_shared import samples
from herald_shared.butler_fields import TimeZoneName
from herald_shared.config import ConfigError, Duration, Section
from herald_shared.delivery.destination import Context, Destination, Skipped, Target
from herald_shared.delivery.grouping import Digest, sample_digest
from herald_shared.events import Event
from herald_shared.matcher import MATCH_ALL, When
from herald_shared.outcomes import OUTCOMES, Outcome, outcome_of
from herald_shared.preflight import Preflight
from herald_shared.settings import DestinationSettings, GroupSettings

log = logging.getLogger(__name__)

KEY = None  # the e-mail settings are the emailer section itself


class OwnerRef(Section):
    """A Qlik user, as the QMC shows it: user directory and user id (exact, case-sensitive)."""

    directory: str
    user_id: str


class AppOwnerSettings(Section):
    enabled: bool = True  # off by default for `succeeded` only, as in Butler
    include_all: bool = True  # every owner; otherwise only those in `include`
    include: list[OwnerRef] = Field(default_factory=list)
    exclude: list[OwnerRef] = Field(default_factory=list)  # applied after `include`


class OutcomeSettings(DestinationSettings):
    """What every outcome block has; the subclasses below only change the defaults."""

    enabled: bool = True
    subject: str  # a Jinja2 template over the fields listed in herald_emailer.context
    html_template: str  # file names, looked up in emailer.template_dir, then the built-in ones
    text_template: str
    priority: Literal["high", "normal", "low"] = "normal"
    from_address: str | None = None  # None: emailer.from_address
    recipients: list[str] = Field(
        default_factory=list
    )  # get every alert of this outcome (subject to recipients_when)
    # Butler's enable-by-custom-property gate on `recipients` only, e.g.
    # {task_custom_properties: {Butler_FailedAlertEnableEmail: [Yes]}}.
    recipients_when: When = MATCH_ALL
    # Every value of this task custom property is a recipient; null: none.
    recipients_custom_property: str | None = None
    app_owner: AppOwnerSettings = AppOwnerSettings()
    when: When = MATCH_ALL  # gates the whole outcome, every recipient
    rate_limit: Duration | None = None  # seconds per task and recipient; null: no limit
    # Script-log lines in this outcome's mails (Butler's headScriptLogLines/tailScriptLogLines);
    # null: all the event carries (qlik.script_log.head_lines/tail_lines), which caps them.
    head_lines: int | None = Field(default=None, ge=0)
    tail_lines: int | None = Field(default=None, ge=0)
    # Storm protection: many alerts for one recipient become digests (README, "Digests").
    group: GroupSettings = GroupSettings()


class FailedSettings(OutcomeSettings):
    subject: str = 'Qlik Sense {{ task_type_text }} failed: "{{ task_name }}"'
    html_template: str = "failed.html"
    text_template: str = "failed.txt"
    priority: Literal["high", "normal", "low"] = "high"
    recipients_custom_property: str | None = "Butler_FailedAlertSendToEmail"
    app_owner: AppOwnerSettings = AppOwnerSettings()
    rate_limit: Duration | None = 600.0


class AbortedSettings(OutcomeSettings):
    subject: str = 'Qlik Sense {{ task_type_text }} aborted: "{{ task_name }}"'
    html_template: str = "aborted.html"
    text_template: str = "aborted.txt"
    priority: Literal["high", "normal", "low"] = "high"
    recipients_custom_property: str | None = "Butler_AbortedAlertSendToEmail"
    app_owner: AppOwnerSettings = AppOwnerSettings()
    rate_limit: Duration | None = 600.0


class SucceededSettings(OutcomeSettings):
    enabled: bool = False  # a mail per successful reload is opt-in, as in Butler
    subject: str = '✅ Qlik Sense {{ task_type_text }} success: "{{ task_name }}"'
    html_template: str = "succeeded.html"
    text_template: str = "succeeded.txt"
    recipients_custom_property: str | None = "Butler_SuccessAlertSendToEmail"
    app_owner: AppOwnerSettings = AppOwnerSettings(enabled=False)
    rate_limit: Duration | None = 60.0


class RecoveredSettings(OutcomeSettings):
    # Whoever was told about the failure hears that it is over: the failure's custom property
    # and the owner. At most one recovery per 10 minutes per task and recipient, like failures.
    subject: str = '✅ Qlik Sense {{ task_type_text }} recovered: "{{ task_name }}"'
    html_template: str = "recovered.html"
    text_template: str = "recovered.txt"
    recipients_custom_property: str | None = "Butler_FailedAlertSendToEmail"
    app_owner: AppOwnerSettings = AppOwnerSettings()
    rate_limit: Duration | None = 600.0


class EmailSettings(Section):
    """The SMTP server, the default sender and one block per outcome."""

    smtp: SmtpSettings = SmtpSettings()
    from_address: str = "Qlik Sense alerts <herald@localhost>"
    failed: FailedSettings = FailedSettings()
    aborted: AbortedSettings = AbortedSettings()
    succeeded: SucceededSettings = SucceededSettings()
    recovered: RecoveredSettings = RecoveredSettings()
    template_dir: Path | None = None  # templates here take precedence over the built-in ones
    # Butler's local-time fields (startTimeLocal1, …) are in this zone; None: qlik.timezone,
    # else this host's (herald_shared.butler_fields.site_zone).
    timezone: TimeZoneName = None

    def outcome(self, name: Outcome) -> OutcomeSettings:
        settings: OutcomeSettings = getattr(self, name)
        return settings


# Events whose rendered parts are kept: the recipients of one event are delivered together.
_RECENTLY_RENDERED = 64


class EmailDestination(Destination):
    def __init__(
        self,
        outcome: Outcome,
        settings: OutcomeSettings,
        *,
        renderer: Renderer,
        digests: DigestRenderer,
        transport: SmtpTransport,
        default_sender: str,
        takes_recoveries: bool = False,
    ) -> None:
        self.name = f"email-{outcome}"
        self.outcome = outcome
        self.route_by(settings)
        self.rate_limit = settings.rate_limit
        self.group = settings.group if settings.group.enabled else None
        self._settings = settings
        self._renderer = renderer
        self._digests = digests
        self._transport = transport
        self._sender = settings.from_address or default_sender
        # The succeeded block also takes successes that recover when `recovered` is disabled.
        self._outcomes = {outcome, "recovered"} if takes_recoveries else {outcome}
        self._recently_rendered: dict[str, tuple[Rendered, bytes, str | None]] = {}

    def targets(self, event: Event) -> Sequence[Target]:
        if outcome_of(event) not in self._outcomes:
            if event.test:
                raise Skipped(f"test alert: {self.name} sends {self.outcome} alerts only")
            return ()
        if event.test:
            return self._test_targets(event)
        addresses = recipients(self._settings, event)
        if not addresses:
            log.info("%s of task %r: no recipients", self.name, event.task.name)
        return [Target(id=address, rate_key=f"{event.task.id}|{address}") for address in addresses]

    def _test_targets(self, event: Event) -> Sequence[Target]:
        # A test goes to the configured recipients only: the sample's owner and custom-property
        # addresses are made up, and a real owner must not get a test.
        addresses = configured_recipients(self._settings, event)
        if not addresses:
            raise Skipped(
                f"test alert: emailer.{self.outcome}.recipients is empty, and a test is not sent"
                " to app owners or custom-property addresses"
            )
        return [Target(id=address) for address in addresses]

    def render(self, event: Event) -> tuple[Rendered, bytes, str | None]:
        """The message's parts and its body, or the plain-text alert (and why) when a template
        fails. Every recipient of an event gets the same: it is made once per event."""
        prepared = self._recently_rendered.get(event.event_id)
        if prepared is None:
            rendered, problem = self._render(event)
            prepared = (rendered, build_body(rendered), problem)
            self._recently_rendered[event.event_id] = prepared
            while len(self._recently_rendered) > _RECENTLY_RENDERED:
                del self._recently_rendered[next(iter(self._recently_rendered))]
        return prepared

    def _render(self, event: Event) -> tuple[Rendered, str | None]:
        rendered, problem = self._render_alert(event)
        return (as_test(rendered) if event.test else rendered), problem

    def _render_alert(self, event: Event) -> tuple[Rendered, str | None]:
        try:
            return self._renderer.render(event), None
        except Exception as error:
            log.exception(
                "%s: the template failed for task %r; sending a plain-text alert instead",
                self.name,
                event.task.name,
            )
            return fallback(event, error), f"{type(error).__name__}: {error}"

    async def deliver(self, event: Event, target: str) -> str | None:
        rendered, body, problem = self.render(event)
        message = build_message(
            rendered,
            sender=self._sender,
            recipient=target,
            priority=self._settings.priority,
            event_id=event.event_id,
            body=body,
        )
        answer = await self._transport.send(message, envelope_sender(self._sender), target)
        if problem is not None:
            return f"{answer} (plain-text fallback, the template failed: {problem})"
        return answer

    async def deliver_digest(self, digest: Digest, target: str) -> str | None:
        try:
            rendered, problem = self._digests.render(digest), None
        except Exception as error:
            log.exception("%s: the digest template failed; sending a plain-text digest", self.name)
            rendered, problem = digest_fallback(digest, error), f"{type(error).__name__}: {error}"
        message = build_message(
            rendered,
            sender=self._sender,
            recipient=target,
            priority=self._settings.priority,
            event_id=digest.id,  # its Message-ID: a digest sent again is collapsed
        )
        answer = await self._transport.send(message, envelope_sender(self._sender), target)
        carried = f"digest of {len(digest.events)} alerts: {answer}"
        if problem is not None:
            return f"{carried} (plain-text fallback, the template failed: {problem})"
        return carried

    async def close(self) -> None:
        await self._transport.close()


def check_templates(settings: EmailSettings, origin: str = "herald.yaml") -> None:
    """Render every enabled outcome's templates against the sample events.

    Raises :class:`ConfigError` naming the file and line (or the configuration file and the
    subject's key), before anything connects.
    """
    problems: list[str] = []
    for outcome in OUTCOMES:
        block = settings.outcome(outcome)
        if not block.enabled:
            continue
        try:
            renderer = load_renderer(
                outcome, block, settings.template_dir, origin, timezone=settings.timezone
            )
            check_renderer(outcome, renderer, samples.sample_events(), origin)
        except ConfigError as error:
            problems += error.problems
    if any(settings.outcome(o).enabled and settings.outcome(o).group.enabled for o in OUTCOMES):
        try:
            digests = load_digest_renderer(settings.template_dir, origin, settings.timezone)
            digests.render(sample_digest())
        except ConfigError as error:
            problems += error.problems
        except Exception as error:
            problems.append(f"{origin}: emailer: the digest template fails on the sample: {error}")
    if problems:
        raise ConfigError(problems)


def preflight(settings: EmailSettings, check: Preflight, section: str = "emailer") -> None:
    """The template folder and every template in it, the addresses, the SMTP server's CA."""
    if check.directory(f"{section}.template_dir", settings.template_dir):
        assert settings.template_dir is not None
        check.problems += compile_folder(settings.template_dir)
    addresses = [(f"{section}.from_address", settings.from_address)]
    for outcome in OUTCOMES:
        block = settings.outcome(outcome)
        if block.from_address is not None:
            addresses.append((f"{section}.{outcome}.from_address", block.from_address))
        addresses += [
            (f"{section}.{outcome}.recipients[{index}]", address)
            for index, address in enumerate(block.recipients)
        ]
    for key, address in addresses:
        problem = address_problem(address)
        if problem is not None:
            check.fail(key, problem)
    if settings.smtp.tls != "none":
        check.certificate_authority(f"{section}.smtp.ca_file", settings.smtp.ca_file)


def destinations(settings: EmailSettings, context: Context) -> list[Destination]:
    """One destination per enabled outcome, all sending through one pool of SMTP connections."""
    check_templates(settings)
    transport = SmtpTransport(settings.smtp)
    digests = load_digest_renderer(settings.template_dir, timezone=settings.timezone)
    built: list[Destination] = []
    for outcome in OUTCOMES:
        block = settings.outcome(outcome)
        if not block.enabled:
            continue
        built.append(
            EmailDestination(
                outcome,
                block,
                renderer=load_renderer(
                    outcome, block, settings.template_dir, timezone=settings.timezone
                ),
                digests=digests,
                transport=transport,
                default_sender=settings.from_address,
                takes_recoveries=outcome == "succeeded" and not settings.recovered.enabled,
            )
        )
    return built
