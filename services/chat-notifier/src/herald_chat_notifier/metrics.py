"""The chat notifier's own metrics (the shared ones live in herald_shared.metrics)."""

from __future__ import annotations

from prometheus_client import Counter

FALLBACKS = Counter(
    "herald_chat_fallbacks_total",
    "Formatted chat messages replaced by the basic message, by why: render (the template failed)"
    " or rejected (the platform answered 400)",
    ["service", "destination", "reason"],
)
