"""``when:``, the one selective-alerting matcher every destination accepts.

Every criterion given must hold; within one criterion any listed value will do. Butler's
enable-by-custom-property gates are ``task_custom_properties`` matches, e.g.
``{Butler_FailedAlertEnableEmail: [Yes]}``. ``unless:`` excludes what its own criteria match.
Names and streams are shell-style patterns, compared case-insensitively; tags and custom
property values are compared exactly, as Qlik stores them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

from pydantic import model_validator

from herald_shared.config import Section
from herald_shared.events import Event, Kind, TaskType

__all__ = ["MATCH_ALL", "When"]


class When(Section):
    kinds: list[Kind] | None = None
    task_types: list[TaskType] | None = None
    task_names: list[str] | None = None
    app_names: list[str] | None = None
    streams: list[str] | None = None
    task_tags: list[str] | None = None
    app_tags: list[str] | None = None
    task_custom_properties: dict[str, list[str]] | None = None
    app_custom_properties: dict[str, list[str]] | None = None
    unless: When | None = None

    @model_validator(mode="after")
    def _no_empty_lists(self) -> When:
        for name in type(self).model_fields:
            value = getattr(self, name)
            empty = value == [] or (
                isinstance(value, dict) and any(v == [] for v in value.values())
            )
            if empty:
                raise ValueError(
                    f"{name}: an empty list matches nothing; leave the key out to match all"
                )
        return self

    def matches(self, event: Event) -> bool:
        app = event.app
        checks = (
            self.kinds is None or event.kind in self.kinds,
            self.task_types is None or event.task.type in self.task_types,
            self.task_names is None or matches_pattern(self.task_names, event.task.name),
            self.app_names is None
            or (app is not None and matches_pattern(self.app_names, app.name)),
            self.streams is None
            or (
                app is not None
                and app.stream is not None
                and matches_pattern(self.streams, app.stream.name)
            ),
            self.task_tags is None or _shares(self.task_tags, event.task.tags),
            self.app_tags is None or (app is not None and _shares(self.app_tags, app.tags)),
            self.task_custom_properties is None
            or _has_values(self.task_custom_properties, event.task.custom_properties),
            self.app_custom_properties is None
            or (app is not None and _has_values(self.app_custom_properties, app.custom_properties)),
        )
        if not all(checks):
            return False
        return self.unless is None or not self.unless.matches(event)


def matches_pattern(patterns: Iterable[str], value: str) -> bool:
    """``value`` fits one of the shell patterns (``*``, ``?``), case-insensitively, as every
    ``when:`` name criterion compares."""
    folded = value.casefold()
    return any(fnmatchcase(folded, pattern.casefold()) for pattern in patterns)


def _shares(wanted: Iterable[str], present: Iterable[str]) -> bool:
    return not set(wanted).isdisjoint(present)


def _has_values(wanted: Mapping[str, list[str]], present: Mapping[str, list[str]]) -> bool:
    return all(_shares(values, present.get(name, ())) for name, values in wanted.items())


MATCH_ALL = When()
