"""docs/templates.md lists every field a template can use, in every vocabulary."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from herald_butler_import.fields import _TARGET
from herald_chat_notifier import context as chat_context
from herald_emailer.context import build_context
from herald_shared.butler_fields import butler_fields
from herald_shared.outcomes import outcome_of
from herald_shared.samples import sample_events

DOC = (Path(__file__).parents[2] / "docs" / "templates.md").read_text(encoding="utf-8")


def _names(context: dict[str, Any]) -> set[str]:
    """Top-level names; for grouped objects (Butler's times, the chat groups) ``group.key``."""
    names = set()
    for name, value in context.items():
        flat = name in ("executionDuration", "execution_duration", "recovers")
        if isinstance(value, Mapping) and not flat:
            names |= {f"{name}.{key}" for key in value}
        else:
            names.add(name)
    return names


def test_every_field_of_every_template_context_is_documented() -> None:
    for event in sample_events():
        outcome = outcome_of(event) or "failed"
        for context in (
            butler_fields(event),
            build_context(event),
            chat_context.build(event, outcome, _TARGET),
        ):
            for name in _names(context):
                assert f"| `{name}` |" in DOC, name
