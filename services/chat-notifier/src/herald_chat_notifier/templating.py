"""Payload templates: a JSON-shaped STRUCTURE whose string leaves are Jinja templates.

A template never produces JSON text: each string leaf is rendered on its own and the payload is
serialized afterwards, so whatever a script log holds (backslashes, quotes, tabs, CR/LF, emoji,
HTML) can never make the payload invalid. Two directives shape lists and objects:

- ``{"$for": "link in links.generic", "$do": <item>}`` inside a list repeats ``<item>``;
- ``"$if": "<expression>"`` in an object drops the object when the expression is false.

A leaf that is exactly one ``{{ expression }}`` keeps the expression's type (a list, a number).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml
from jinja2 import StrictUndefined, Template, pass_context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from herald_shared.butler_fields import handlebars_text, local_time

_ENVIRONMENT: Final = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
    finalize=handlebars_text,  # true/false inside text, as Butler's templates printed booleans
)


def mrkdwn(value: object) -> str:
    """Text safe inside Slack mrkdwn: ``&``, ``<`` and ``>`` are control characters there
    (``<!channel>`` would notify a whole channel), so Slack asks for exactly these escaped."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_TEAMS_MARKUP: Final = re.compile(r"[\\`*_~\[\]]")
_BACKTICK_PAIR: Final = re.compile(r"`(?=`)")


def teams_text(value: object) -> str:
    """Text shown as itself in Teams' Markdown (Adaptive Card TextBlock and Fact, MessageCard
    titles and text): ``[a](b)`` would be a live link whose target the reader cannot see, and
    ``*``, ``_``, ``~`` and backticks would eat characters of a task's name; each is
    backslash-escaped, as CommonMark allows for any ASCII punctuation."""
    return _TEAMS_MARKUP.sub(r"\\\g<0>", str(value))


def unfenced(value: object) -> str:
    """Text that cannot end a Markdown code fence it is shown in: a zero-width space after every
    backtick that another follows, so no run of two or more remains (a ``` line in a script log
    would otherwise close the block and turn the rest of the log into Markdown)."""
    return _BACKTICK_PAIR.sub("`\u200b", str(value))


_ENVIRONMENT.filters["teams_text"] = teams_text
_ENVIRONMENT.filters["unfenced"] = unfenced


@pass_context
def _local_time(context: Any, value: object, pattern: str = "%Y-%m-%d %H:%M:%S") -> str:
    """``{{ execution.started | local_time("%H:%M") }}``: in the target's zone."""
    return local_time(value, pattern, context.get("site_timezone"))


_ENVIRONMENT.filters["mrkdwn"] = mrkdwn
_ENVIRONMENT.filters["local_time"] = _local_time
_ENVIRONMENT.filters["teams_text"] = teams_text
_ENVIRONMENT.filters["unfenced"] = unfenced
_SINGLE_EXPRESSION: Final = re.compile(r"^\{\{(?P<expression>[^{}]*)\}\}$")
_FOR: Final = re.compile(r"^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s+in\s+(?P<items>.+)$")


class TemplateError(Exception):
    """The template could not be rendered against this event."""


def load(path: Path) -> Any:
    """A structure from a .json or .yaml file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


def render(structure: Any, context: Mapping[str, Any]) -> Any:
    try:
        # Jinja's globals (range, dict, …) once per message: every leaf below renders with this
        # dict as its context, shared, instead of a copy of it (a copy per leaf, of some 140
        # fields since Butler's names are there too, was a third of a message's CPU).
        return _render(structure, {**_ENVIRONMENT.globals, **context})
    except TemplateError:
        raise
    except Exception as error:  # Jinja's errors, a $for over something that is not a list, …
        raise TemplateError(f"{type(error).__name__}: {error}") from None


def _render(node: Any, context: dict[str, Any]) -> Any:
    if isinstance(node, str):
        return _render_text(node, context)
    if isinstance(node, list):
        rendered: list[Any] = []
        for item in node:
            if isinstance(item, dict) and "$for" in item:
                rendered += _expand(item, context)
            else:
                value = _render(item, context)
                if value is not _DROPPED:
                    rendered.append(value)
        return rendered
    if isinstance(node, dict):
        if "$if" in node and not _evaluate(str(node["$if"]), context):
            return _DROPPED
        result = {}
        for key, value in node.items():
            if key == "$if":
                continue
            rendered_value = _render(value, context)
            if rendered_value is not _DROPPED:
                result[key] = rendered_value
        return result
    return node  # numbers, booleans, null


def _expand(item: dict[str, Any], context: dict[str, Any]) -> list[Any]:
    match = _FOR.match(str(item["$for"]))
    if match is None or "$do" not in item:
        raise TemplateError(f'expected {{"$for": "name in items", "$do": …}}, got {item!r}')
    expanded = []
    for value in _evaluate(match.group("items"), context) or ():
        rendered = _render(item["$do"], {**context, match.group("name"): value})
        if rendered is not _DROPPED:
            expanded.append(rendered)
    return expanded


def _render_text(text: str, context: dict[str, Any]) -> Any:
    if "{" not in text:
        return text
    single = _SINGLE_EXPRESSION.match(text.strip())
    if single is not None and "|" not in single.group("expression"):
        value = _evaluate(single.group("expression"), context)
        return "" if value is None else value
    template = _template(text)
    return _ENVIRONMENT.concat(
        template.root_render_func(template.new_context(context, shared=True))
    )


def compile_text(text: str) -> Template:
    """One text template (a basic message's title); a syntax error is a :class:`TemplateError`."""
    try:
        return _template(text)
    except Exception as error:
        raise TemplateError(f"{type(error).__name__}: {error}") from None


def render_text(text: str, context: Mapping[str, Any]) -> str:
    """``text`` rendered as one Jinja template; any failure is a :class:`TemplateError`."""
    try:
        return str(compile_text(text).render(dict(context)))
    except TemplateError:
        raise
    except Exception as error:
        raise TemplateError(f"{type(error).__name__}: {error}") from None


def _evaluate(expression: str, context: dict[str, Any]) -> Any:
    """What ``compile_expression`` gives, without its copy of the context."""
    template = _assignment(expression)
    shared = template.new_context(context, shared=True)
    for _ in template.root_render_func(shared):
        pass
    return shared.vars["result"]


# Compiling is what costs (about 10 ms of CPU per message when done each time); the texts are the
# configured templates' leaves, a fixed and small set, so the compiled forms are kept.
@functools.lru_cache(maxsize=1024)
def _template(text: str) -> Template:
    return _ENVIRONMENT.from_string(text)


@functools.lru_cache(maxsize=1024)
def _assignment(expression: str) -> Template:
    return _ENVIRONMENT.from_string(f"{{% set result = ({expression}) %}}")


class _Dropped:
    """Marks an object whose ``$if`` was false."""


_DROPPED: Final = _Dropped()
