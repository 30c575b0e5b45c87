"""``herald render --config FILE --destination NAME --kind KIND [--event FILE]``: what a template
produces, before it is trusted (``amtool template render`` is the model).

NAME is a destination as receipts name it: ``email-failed`` … ``email-recovered``,
``slack:<name>`` or ``teams:<name>``. KIND (failed, aborted, succeeded, recovered) picks the sample
event (herald_shared.samples) unless ``--event`` gives an event as JSON (what ``herald tail``
shows). An e-mail prints its subject, text and HTML parts; a chat target its JSON payload, as the
template makes it (before the platform's size limits). An undefined field, a syntax error or a
missing template is a sentence naming the template, and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import jinja2

from herald_shared import config, events
from herald_shared.butler_fields import site_zone
from herald_shared.cli import add_config_argument
from herald_shared.events import Event, TaskFailed
from herald_shared.outcomes import Outcome
from herald_shared.samples import sample_aborted, sample_failed, sample_succeeded

__all__ = ["register", "render"]

KINDS: tuple[Outcome, ...] = ("failed", "aborted", "succeeded", "recovered")


class RenderError(Exception):
    """The template does not render for this event."""


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "render", help="print what a destination's template makes of an event"
    )
    add_config_argument(parser)
    parser.add_argument(
        "--destination", required=True, help="email-failed, slack:<name>, teams:<name>, …"
    )
    parser.add_argument("--kind", choices=KINDS, required=True, help="which outcome to render")
    parser.add_argument("--event", type=Path, help="an event as JSON (default: the sample event)")
    parser.set_defaults(handler=_handler)


def _handler(arguments: argparse.Namespace) -> int:
    try:
        event = _event(arguments.kind, arguments.event)
        print(
            render(config.load(arguments.config), arguments.destination, arguments.kind, event),
            end="",
        )
    except RenderError as error:
        print(f"herald: {arguments.destination}: {error}", file=sys.stderr)
        return 1
    return 0


def _event(kind: Outcome, path: Path | None) -> Event:
    if path is not None:
        try:
            return events.decode(path.read_bytes())
        except (OSError, ValueError) as error:
            raise RenderError(f"{path}: not an event: {error}") from None
    failed: TaskFailed = sample_failed()
    samples: dict[Outcome, Event] = {
        "failed": failed,
        "aborted": sample_aborted(),
        "succeeded": sample_succeeded(),
        "recovered": sample_succeeded(recovers=failed),
    }
    return samples[kind]


def render(document: config.ConfigDocument, destination: str, kind: Outcome, event: Event) -> str:
    if destination.startswith("email-"):
        return _email(document, destination.removeprefix("email-"), event)
    platform, _, name = destination.partition(":")
    if platform in ("slack", "teams") and name:
        return _chat(document, platform, name, kind, event)
    raise RenderError("no such destination: give email-<outcome>, slack:<name> or teams:<name>")


def _section(document: config.ConfigDocument, name: str, model: Any) -> Any:
    if not document.has_section(name):
        raise RenderError(f"{document.path} has no {name}: section")
    try:
        return model.model_validate(document.data[name])
    except Exception as error:
        raise RenderError(f"{document.path}: {name}: {error}") from None


def _email(document: config.ConfigDocument, outcome: str, event: Event) -> str:
    from herald_emailer.rendering import Renderer
    from herald_emailer.settings import EmailerSettings

    if outcome not in KINDS:
        raise RenderError(f"email-{outcome}: the e-mail destinations are email-{'/'.join(KINDS)}")
    settings = _section(document, "emailer", EmailerSettings)
    timezone = site_zone(document.data, settings.timezone)
    try:
        rendered = Renderer(settings.outcome(outcome), settings.template_dir, timezone).render(
            event
        )
    except jinja2.TemplateError as error:
        raise RenderError(f"{_where(error)}: {error}") from None
    return f"Subject: {rendered.subject}\n\n--- text ---\n{rendered.text}\n--- html ---\n{rendered.html}\n"


def _where(error: jinja2.TemplateError) -> str:
    if isinstance(error, jinja2.TemplateSyntaxError):
        return f"{error.filename or error.name or 'subject'}:{error.lineno}"
    if isinstance(error, jinja2.TemplateNotFound):
        return "template not found"
    return "the template uses an undefined field"


def _chat(
    document: config.ConfigDocument, platform: str, name: str, kind: Outcome, event: Event
) -> str:
    from herald_chat_notifier import context as contexts
    from herald_chat_notifier import templating
    from herald_chat_notifier.destinations.slack import SlackDestination
    from herald_chat_notifier.destinations.teams import TeamsDestination
    from herald_chat_notifier.settings import ChatNotifierSettings

    settings = _section(document, "chat_notifier", ChatNotifierSettings)
    targets = {target.name: target for target in getattr(settings, platform)}
    if name not in targets:
        raise RenderError(
            f"chat_notifier.{platform} has no target named {name!r} (there are: {', '.join(targets) or 'none'})"
        )
    kind_class = SlackDestination if platform == "slack" else TeamsDestination
    target = targets[name].model_copy(
        update={"timezone": site_zone(document.data, targets[name].timezone)}
    )
    destination = kind_class(target, service="render")
    context = contexts.build(event, kind, destination.target)
    try:
        payload = destination.formatted(destination._template(kind), context)
    except templating.TemplateError as error:
        raise RenderError(f"the {kind} template does not render: {error}") from None
    undefined = sorted(_undefined(payload))
    if undefined:
        raise RenderError(f"the {kind} template uses undefined fields: {', '.join(undefined)}")
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


def _undefined(node: Any) -> set[str]:
    """Names of fields a single-expression leaf left undefined (they survive as Undefined)."""
    if isinstance(node, jinja2.Undefined):
        return {str(getattr(node, "_undefined_name", None) or "?")}
    if isinstance(node, dict):
        return set().union(*(_undefined(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_undefined(item) for item in node))
    return set()
