"""The top-level names every Herald template context has (Herald's and Butler's), computed once
from the sample events, so the converter tells a field from an item's attribute."""

from __future__ import annotations

from typing import Final

from herald_chat_notifier import context as chat_context
from herald_chat_notifier.chat import ChatTarget
from herald_emailer.context import build_context
from herald_shared.outcomes import outcome_of
from herald_shared.samples import sample_events

_TARGET: Final = ChatTarget.model_validate(
    {"name": "fields", "webhook_url": "https://chat.invalid/"}
)

EMAIL_ROOTS: Final = frozenset(name for event in sample_events() for name in build_context(event))
CHAT_ROOTS: Final = frozenset(
    name
    for event in sample_events()
    for name in chat_context.build(event, outcome_of(event) or "failed", _TARGET)
) | {"excerpt", "excerpt_note"}
ROOTS: Final = EMAIL_ROOTS | CHAT_ROOTS
