"""What a Slack target and a Teams target share: settings, routing, rate-limit keys, the fallback,
and the digest (herald_shared.delivery.grouping) fitted to the platform's limits.

A formatted message that cannot be rendered, or that the platform rejects with a 400, is
replaced by the platform's basic message in the same attempt, and the fallback is counted:
an alert that arrives plain beats one that never arrives.

A digest lists as many of its rows as the platform takes (Slack's blocks, Teams' size) and says
"and N more" for the rest; its event ids are all in its receipt.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import Field, SecretStr, field_validator

from herald_chat_notifier import context as contexts
from herald_chat_notifier import metrics, templating
from herald_chat_notifier.webhook import Rejected, Webhook
from herald_shared import samples
from herald_shared.butler_fields import TimeZoneName, zone
from herald_shared.config import Duration
from herald_shared.delivery.destination import Destination, PermanentError, Skipped, Target
from herald_shared.delivery.grouping import Digest, digest_context, sample_digest
from herald_shared.events import Event
from herald_shared.outcomes import OUTCOMES, Outcome, outcome_of, problem_outcomes
from herald_shared.settings import DestinationSettings, GroupSettings

log = logging.getLogger(__name__)


class ChatTarget(DestinationSettings):
    """What every chat target has, whatever the platform."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")  # part of the destination name: keep stable
    webhook_url: SecretStr  # a secret: whoever has it can post to the channel
    # `recovered` is a success that ends an earlier failure or abort ("running again").
    outcomes: list[Outcome] = Field(default_factory=problem_outcomes, min_length=1)
    # At most one message per task and outcome within this window (Butler: 300 s); null: no limit.
    rate_limit: Duration | None = 300.0
    message_type: Literal["formatted", "basic"] = "formatted"
    head_lines: int = Field(default=10, ge=0)  # script-log lines from the start
    tail_lines: int = Field(default=10, ge=0)  # and from the end
    timeout: Duration = 10.0  # one HTTP request
    # Folder with <outcome>.yaml or <outcome>.json payload structures replacing the built-in ones.
    template_dir: Path | None = None
    # Butler's local-time fields (startTimeLocal1, …) are in this zone; None: qlik.timezone,
    # else this host's (herald_shared.butler_fields.site_zone).
    timezone: TimeZoneName = None
    # The basic message's title, a Jinja template over the same fields (Butler's basicMsgTemplate);
    # null: "<title>: <task name>". One that fails for an event gives the default title.
    basic_title: str | None = None
    # Storm protection: many alerts become digests (README, "Digests"); template_dir may hold
    # digest.yaml (or .json) for the digest's payload structure.
    group: GroupSettings = GroupSettings()

    @field_validator("basic_title")
    @classmethod
    def _compiles(cls, text: str | None) -> str | None:
        if text is not None:
            try:
                templating.compile_text(text)
            except templating.TemplateError as error:
                raise ValueError(f"not a valid template: {error}") from None
        return text


class ChatDestination(Destination):
    platform: ClassVar[str]

    def __init__(self, target: ChatTarget, *, service: str) -> None:
        self.name = f"{self.platform}:{target.name}"
        self.route_by(target)
        self.rate_limit = target.rate_limit
        self.group = target.group if target.group.enabled else None
        self.target = target
        self._webhook = Webhook(target.webhook_url, target.timeout)
        self._files = template_files(target.template_dir)
        self._templates = {outcome: templating.load(path) for outcome, path in self._files.items()}
        self._digest_file = _template_file(target.template_dir, DIGEST)
        self._digest_template = templating.load(self._digest_file) if self._digest_file else None
        self._fallbacks = {
            reason: metrics.FALLBACKS.labels(service=service, destination=self.name, reason=reason)
            for reason in ("render", "rejected")
        }

    # --- what a platform provides --------------------------------------------------------

    @abstractmethod
    def default_template(self, outcome: Outcome) -> Any:
        """The built-in payload structure for ``outcome``."""

    @abstractmethod
    def formatted(self, template: Any, context: dict[str, Any]) -> Any:
        """The rich payload; raises :class:`templating.TemplateError` when it cannot be built."""

    @abstractmethod
    def basic(self, context: dict[str, Any]) -> Any:
        """The plain payload: built in code from short fields, so it always fits and renders."""

    @abstractmethod
    def default_digest_template(self) -> Any:
        """The built-in payload structure of a digest."""

    @abstractmethod
    def digest_payload(self, template: Any, context: dict[str, Any]) -> tuple[Any, bool]:
        """The digest rendered with the rows in ``context``, and whether it is within the
        platform's limits; raises :class:`templating.TemplateError`."""

    # --- digests -------------------------------------------------------------------------

    def formatted_digest(self, context: dict[str, Any]) -> Any:
        """The digest with as many of its rows as fit; the others are "and N more"."""
        template = self._digest_template or self.default_digest_template()
        items = context["items"]
        for shown in range(len(items), -1, -1):
            payload, fits = self.digest_payload(
                template, {**context, "items": items[:shown], "more": context["count"] - shown}
            )
            if fits:
                return payload
        raise templating.TemplateError("the digest is over the platform's limits even without rows")

    def digest_context(self, digest: Digest) -> dict[str, Any]:
        """What a digest template sees (grouping.digest_context), with the links of its first
        alert's site and what the basic message needs."""
        context = digest_context(digest, zone(self.target.timezone))
        links = digest.events[0].links
        return {
            **context,
            "site_timezone": self.target.timezone or "",
            "links": {"qmc": links.qmc or "", "hub": links.hub or "", "app": None, "generic": []},
            "basic_title": context["title"],
            "recovers": None,
            "event_id": digest.id,
        }

    # --- the destination -----------------------------------------------------------------

    def targets(self, event: Event) -> Sequence[Target]:
        outcome = outcome_of(event, self.target.outcomes)
        if outcome is None:
            return ()
        # Per task and outcome: a recovery notice is not held back by the failure it ends.
        return (Target("", rate_key=f"{outcome}:{event.task.id}"),)

    async def start(self) -> None:
        # The preflight refused a broken template already (template_problems); this shows one
        # in a destination started without it, and the basic message still goes out.
        for problem in self.template_problems():
            log.warning("%s; basic messages will be sent", problem)

    def template_problems(self, key: str | None = None) -> list[str]:
        """Every template this target sends, rendered against realistic events: why one does
        not render, naming its file and ``key`` (the target's place in herald.yaml; by default
        the destination's name)."""
        if self.target.message_type == "basic":
            return []
        problems: list[str] = []
        checked: set[Outcome] = set()
        for event in samples.sample_events():
            outcome = outcome_of(event, self.target.outcomes)
            if outcome is None or outcome in checked:
                continue
            checked.add(outcome)
            try:
                self.formatted(self._template(outcome), contexts.build(event, outcome, self.target))
            except templating.TemplateError as error:
                where = self._files.get(outcome, "the built-in template")
                problems.append(
                    f"{where}: {key or self.name}: the {outcome} template does not render on the "
                    f"sample event ({error})"
                )
        if self.group is not None:
            try:
                self.formatted_digest(self.digest_context(sample_digest(self.name)))
            except templating.TemplateError as error:
                where = self._digest_file or "the built-in digest template"
                problems.append(
                    f"{where}: {key or self.name}: the digest does not render on the sample ({error})"
                )
        return problems

    async def close(self) -> None:
        await self._webhook.close()

    async def deliver(self, event: Event, target: str) -> str | None:
        outcome = outcome_of(event, self.target.outcomes)
        if outcome is None:
            raise Skipped(f"{self.name} does not send {event.kind} messages")
        context = contexts.build(event, outcome, self.target)
        return await self._send(
            lambda: self.formatted(self._template(outcome), context),
            context,
            f"the {outcome} template",
            f"task {event.task.name!r}",
        )

    async def deliver_digest(self, digest: Digest, target: str) -> str | None:
        context = self.digest_context(digest)
        sent = await self._send(
            lambda: self.formatted_digest(context),
            context,
            "the digest template",
            f"a digest of {len(digest.events)} alerts",
        )
        return f"digest of {len(digest.events)} alerts: {sent}"

    async def _send(
        self, formatted: Callable[[], Any], context: dict[str, Any], template: str, about: str
    ) -> str:
        """Post the formatted payload, or the basic one when it does not render or is refused."""
        if self.target.message_type == "basic":
            return self._described(
                await self._webhook.post(self.basic(context), context["event_id"]), "basic"
            )
        try:
            payload = formatted()
        except templating.TemplateError as error:
            log.warning(
                "%s: %s failed for %s (%s); sending the basic message",
                self.name,
                template,
                about,
                error,
            )
            return await self._fall_back(context, "render", f"the template failed: {error}")
        result = await self._webhook.post(payload, context["event_id"])
        if isinstance(result, Rejected):
            log.warning(
                "%s rejected the formatted message for %s (%s); sending the basic one",
                self.name,
                about,
                result.error,
            )
            return await self._fall_back(
                context, "rejected", f"the formatted message was rejected: HTTP 400: {result.error}"
            )
        return self._described(result, "formatted")

    async def _fall_back(self, context: dict[str, Any], reason: str, why: str) -> str:
        self._fallbacks[reason].inc()
        result = await self._webhook.post(self.basic(context), context["event_id"])
        if isinstance(result, Rejected):
            raise PermanentError(f"HTTP 400: {result.error} (basic message; {why})")
        return f"basic message sent (HTTP {result}) because {why}"

    def _described(self, result: int | Rejected, kind: str) -> str:
        if isinstance(result, Rejected):
            raise PermanentError(f"HTTP 400: {result.error}")
        return f"{kind} message sent (HTTP {result})"

    def _template(self, outcome: Outcome) -> Any:
        return self._templates.get(outcome) or self.default_template(outcome)


#: The name of a digest's payload structure in a ``template_dir`` (digest.yaml, .yml or .json).
DIGEST = "digest"


def _template_file(directory: Path | None, name: str) -> Path | None:
    """``<name>.yaml``, ``.yml`` or ``.json`` in ``directory``, the first that exists."""
    if directory is None:
        return None
    for suffix in (".yaml", ".yml", ".json"):
        path = directory / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def template_files(directory: Path | None) -> dict[Outcome, Path]:
    """The payload structures a ``template_dir`` provides (<outcome>.yaml, .yml or .json)."""
    found: dict[Outcome, Path] = {}
    for outcome in OUTCOMES:
        path = _template_file(directory, outcome)
        if path is not None:
            found[outcome] = path
    return found


def unreadable_templates(directory: Path) -> list[str]:
    """A line per template file in ``directory`` that is not YAML or JSON."""
    problems: list[str] = []
    digest = _template_file(directory, DIGEST)
    for path in [*template_files(directory).values(), *([digest] if digest else [])]:
        try:
            templating.load(path)
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as error:
            problems.append(f"{path}: not a YAML or JSON payload structure: {error}")
    return problems
