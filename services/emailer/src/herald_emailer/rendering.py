"""Jinja2 templates to subject, plain text and HTML, and the plain-text alert when they fail.

Templates are looked up in ``emailer.template_dir`` first, then among the built-in ones, so an
operator can override one file (or extend ``base.html``) without copying the rest. HTML files are
autoescaped; the subject and the text part are not (they are not HTML: Butler's subjects showed
``&amp;`` for ``&`` because Handlebars escaped them). Undefined names are errors, so a template
never sends a raw placeholder or an empty field by mistake.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import jinja2
import msgspec

from herald_emailer.context import build_context
from herald_shared.butler_fields import handlebars_text, local_time, zone
from herald_shared.config import ConfigError
from herald_shared.delivery.grouping import Digest, digest_context
from herald_shared.events import TEST_LABEL, Event
from herald_shared.outcomes import outcome_of

if TYPE_CHECKING:
    from herald_emailer.destinations.email import OutcomeSettings


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None  # None: the plain-text fallback


def _yesno(value: object) -> str | None:
    if value is None:
        return None
    return "yes" if value else "no"


def _format_label(value: str) -> str:
    return value.ljust(20)


@jinja2.pass_context
def _local_time(context: Any, value: object, pattern: str = "%Y-%m-%d %H:%M:%S") -> str:
    """``{{ execution_start_time | local_time("%d.%m.%Y %H:%M") }}``: in the destination's zone."""
    return local_time(value, pattern, context.get("site_timezone"))


def _environment(template_dir: Path | None, *, autoescape: bool | Any) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if template_dir is not None:
        loaders.append(jinja2.FileSystemLoader(template_dir))
    loaders.append(jinja2.PackageLoader("herald_emailer", "templates"))
    environment = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        # The subject and the text part are not HTML; HTML files get select_autoescape.
        autoescape=autoescape,  # noqa: S701
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        finalize=handlebars_text,  # true/false, as Butler's templates printed booleans
    )
    environment.filters["yesno"] = _yesno
    environment.filters["format_label"] = _format_label
    environment.filters["local_time"] = _local_time
    return environment


class DigestRenderer:
    """The digest's templates (``digest_subject.txt``, ``digest.html``, ``digest.txt``),
    compiled once; they see :func:`herald_shared.delivery.grouping.digest_context`."""

    def __init__(self, template_dir: Path | None, timezone: str | None = None) -> None:
        self._zone = zone(timezone)
        self._timezone = timezone or ""
        html_env = _environment(template_dir, autoescape=jinja2.select_autoescape(["html", "htm"]))
        text_env = _environment(template_dir, autoescape=False)
        self._subject = text_env.get_template(DIGEST_TEMPLATES[0])
        self._html = html_env.get_template(DIGEST_TEMPLATES[1])
        self._text = text_env.get_template(DIGEST_TEMPLATES[2])

    def render(self, digest: Digest) -> Rendered:
        context = {**digest_context(digest, self._zone), "site_timezone": self._timezone}
        return Rendered(
            subject=" ".join(self._subject.render(context).split()),
            text=self._text.render(context),
            html=self._html.render(context),
        )


DIGEST_TEMPLATES: Final = ("digest_subject.txt", "digest.html", "digest.txt")


def load_digest_renderer(
    template_dir: Path | None, origin: str = "herald.yaml", timezone: str | None = None
) -> DigestRenderer:
    """Compile the digest's templates; a missing or broken one is a :class:`ConfigError`."""
    try:
        return DigestRenderer(template_dir, timezone)
    except jinja2.TemplateSyntaxError as error:
        place = f"{error.filename or error.name}:{error.lineno}: emailer digest"
        raise ConfigError([f"{place}: template error: {error.message}"]) from None
    except jinja2.TemplateNotFound as error:
        raise ConfigError([f"{origin}: emailer: template {error.name} not found"]) from None


def digest_fallback(digest: Digest, error: BaseException) -> Rendered:
    """The digest without templates: a line per alert, so a template bug loses nothing."""
    context = digest_context(digest, None)
    lines = [
        context["title"],
        "(This is a plain-text digest: the e-mail template could not be rendered: "
        f"{type(error).__name__}: {error})",
        "",
    ]
    lines += [
        f"- {item['task_name']}, {item['time']}: {item['error']}" for item in context["items"]
    ]
    if context["more"]:
        lines.append(f"… and {context['more']} more.")
    lines += ["", f"Digest {digest.id}, with the events:", *digest.event_ids]
    return Rendered(subject=context["title"], text="\n".join(lines) + "\n", html=None)


class Renderer:
    """One outcome's templates, compiled once."""

    def __init__(
        self, settings: OutcomeSettings, template_dir: Path | None, timezone: str | None = None
    ) -> None:
        self._zone = zone(timezone)
        self._lines = (settings.head_lines, settings.tail_lines)
        html_env = _environment(template_dir, autoescape=jinja2.select_autoescape(["html", "htm"]))
        text_env = _environment(template_dir, autoescape=False)
        self._subject = text_env.from_string(settings.subject)
        self._html = html_env.get_template(settings.html_template)
        self._text = text_env.get_template(settings.text_template)

    def render(self, event: Event) -> Rendered:
        context = build_context(_excerpt(event, *self._lines), self._zone)
        subject = " ".join(self._subject.render(context).split())  # one line, no header injection
        return Rendered(
            subject=subject, text=self._text.render(context), html=self._html.render(context)
        )


def _excerpt(event: Event, head: int | None, tail: int | None) -> Event:
    """The event with its script-log head and tail cut to this outcome's line counts."""
    log = event.script_log
    if log is None or (head is None and tail is None):
        return event
    lines = msgspec.structs.replace(
        log,
        head=log.head if head is None else log.head[:head],
        tail=log.tail if tail is None else (log.tail[-tail:] if tail else []),
    )
    return msgspec.structs.replace(event, script_log=lines)


def load_renderer(
    name: str,
    settings: OutcomeSettings,
    template_dir: Path | None,
    origin: str = "herald.yaml",
    timezone: str | None = None,
) -> Renderer:
    """Compile an outcome's templates; a missing or broken one is a :class:`ConfigError`.

    ``origin`` is the configuration file, named by errors in the subject (which lives there);
    ``timezone`` the site's, for Butler's local-time fields.
    """
    where = f"emailer.{name}"
    try:
        return Renderer(settings, template_dir, timezone)
    except jinja2.TemplateSyntaxError as error:
        if error.filename is None and error.name is None:
            place = f"{origin}: {where}.subject: line {error.lineno}"
        else:
            place = f"{error.filename or error.name}:{error.lineno}: {where}"
        raise ConfigError([f"{place}: template error: {error.message}"]) from None
    except jinja2.TemplateNotFound as error:
        raise ConfigError([f"{origin}: {where}: template {error.name} not found"]) from None


def check_renderer(
    name: str, renderer: Renderer, samples: Iterable[Event], origin: str = "herald.yaml"
) -> None:
    """Render against every sample event; the first failure is a :class:`ConfigError`."""
    for sample in samples:
        try:
            renderer.render(sample)
        except Exception as error:
            place = _template_frame(error, origin, f"emailer.{name}")
            raise ConfigError(
                [
                    f"{place}: the template fails on the sample "
                    f"{outcome_of(sample)} event ({sample.event_id}): {error}"
                ]
            ) from None


def _template_frame(error: BaseException, origin: str, where: str) -> str:
    """Where it failed: ``file:line`` of the innermost template frame (Jinja2 rewrites
    tracebacks to them), or the subject's key in the configuration file."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if frame.filename == "<template>":
            return f"{origin}: {where}.subject: line {frame.lineno}"
        if frame.filename.endswith((".html", ".htm", ".txt")):
            return f"{frame.filename}:{frame.lineno}: {where}"
    return f"{origin}: {where}"


def compile_folder(template_dir: Path) -> list[str]:
    """Every template in ``template_dir`` compiled, also those no outcome names yet (a base
    that the others extend, one kept for later): a problem line per broken file."""
    problems: list[str] = []
    html = _environment(template_dir, autoescape=jinja2.select_autoescape(["html", "htm"]))
    for path in sorted(template_dir.rglob("*")):
        if not path.is_file() or path.suffix not in (".html", ".htm", ".txt"):
            continue
        try:
            html.get_template(path.relative_to(template_dir).as_posix())
        except jinja2.TemplateSyntaxError as error:
            problems.append(
                f"{path}:{error.lineno}: emailer.template_dir: template error: {error.message}"
            )
        except (OSError, UnicodeDecodeError) as error:
            problems.append(f"{path}: emailer.template_dir: cannot read the template: {error}")
    return problems


TEST_NOTICE = (
    "This is a test alert sent with herald send-test: no reload task failed. It went to this"
    " outcome's configured recipients only."
)
_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def as_test(rendered: Rendered) -> Rendered:
    """The alert labelled as a test: ``[TEST]`` in the subject, the notice as its first line."""
    html = rendered.html
    if html is not None:
        banner = (
            '<p style="margin:0;padding:12px;background-color:#fef3c7;font-weight:bold;">'
            f"{TEST_NOTICE}</p>"
        )
        body = _BODY_TAG.search(html)
        at = body.end() if body else 0
        html = html[:at] + banner + html[at:]
    return Rendered(
        subject=f"{TEST_LABEL} {rendered.subject}",
        text=f"{TEST_NOTICE}\n\n{rendered.text}",
        html=html,
    )


def fallback(event: Event, error: BaseException) -> Rendered:
    """The alert without templates: plain text from the event, so a template bug loses nothing."""
    context = build_context(event)
    outcome = context["outcome"]
    subject = f'Qlik Sense reload {outcome}: "{event.task.name}"'
    lines = [
        f"The reload task {event.task.name!r} {outcome}.",
        "(This is a plain-text alert: the e-mail template could not be rendered: "
        f"{type(error).__name__}: {error})",
        "",
        f"Task:     {event.task.name} ({event.task.id})",
    ]
    if event.app is not None:
        lines.append(f"App:      {event.app.name} ({event.app.id})")
    optional = [
        ("Node", context["executing_node_name"] or context["host_name"]),
        ("Status", context["execution_status_text"]),
        ("Started", context["execution_start_time"]),
        ("Stopped", context["execution_stop_time"]),
        ("Message", context["log_message"]),
        ("App URL", context["app_url"]),
        ("QMC", context["qlik_sense_qmc"]),
    ]
    lines += [f"{label + ':':<9} {value}" for label, value in optional if value]
    if context["script_log_tail"]:
        lines += ["", "Script log, last lines:", context["script_log_tail"]]
    lines += ["", f"Event {event.event_id}"]
    return Rendered(subject=" ".join(subject.split()), text="\n".join(lines) + "\n", html=None)
