"""Old spellings of herald.yaml keys and values, read for one more release, each with a warning.

One declarative table (:data:`ALIASES`) says what each old spelling is now written as; the
configuration loader rewrites the document with it before any section is validated, so the
settings models know only the new spellings. Each rewrite is reported (``herald.yaml:
emailer.failed.enable is deprecated; write enabled``): the services log these once at start and
``herald check-config`` prints them. A document that writes a key both ways is an error, since
either reading would silently ignore the other.

Paths are dotted from the section; ``*`` stands for any key of a mapping or any item of a list
(``chat_notifier.slack.*`` is every Slack target).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

Loc: TypeAlias = tuple[str | int, ...]


@dataclass(frozen=True)
class Renamed:
    """In every mapping at ``at``, key ``old`` is now ``new``."""

    at: str
    old: str
    new: str


@dataclass(frozen=True)
class Revalued:
    """The key at ``at`` (or any item, when it holds a list) written ``old`` is now ``new``."""

    at: str
    old: object
    new: object

    def matches(self, value: object) -> bool:
        # Exact type as well: YAML's `true` must not pass for the number 1 (True == 1).
        return type(value) is type(self.old) and value == self.old


@dataclass(frozen=True)
class Found:
    """One old spelling in the document: where, and the sentence that follows the key."""

    loc: Loc
    text: str


# --- the table -------------------------------------------------------------------------------

_EMAIL_BLOCKS: Final = tuple(
    f"emailer.{block}" for block in ("failed", "aborted", "succeeded", "recovered")
)
_CHAT_TARGETS: Final = ("chat_notifier.slack.*", "chat_notifier.teams.*")
_NEW_RELIC_APIS: Final = ("incident_forwarder.new_relic.event", "incident_forwarder.new_relic.log")
_FORWARDER_DESTINATIONS: Final = (
    "incident_forwarder.webhooks.*",
    "incident_forwarder.signl4",
    *_NEW_RELIC_APIS,
)
#: The event kinds the incident forwarder's `outcomes:` lists took, as alert outcomes.
_KIND_WORDS: Final = {
    "task_failed": "failed",
    "task_aborted": "aborted",
    "task_succeeded": "succeeded",
}
#: `rate_limit: 0` meant "no limit" where it was accepted; `null` says so everywhere.
_ZERO_DURATIONS: Final = (0, 0.0, "0", "0s", "0ms", "0m", "0h", "0d")

ALIASES: Final[tuple[Renamed | Revalued, ...]] = (
    *(Renamed(block, "enable", "enabled") for block in _EMAIL_BLOCKS),
    *(Renamed(f"{block}.app_owner", "enable", "enabled") for block in _EMAIL_BLOCKS),
    Renamed("incident_forwarder.signl4.severity", "task_failed", "failed"),
    Renamed("incident_forwarder.signl4.severity", "task_aborted", "aborted"),
    *(
        Revalued(f"{place}.outcomes", old, new)
        for place in _FORWARDER_DESTINATIONS
        for old, new in _KIND_WORDS.items()
    ),
    *(
        Revalued(f"{place}.rate_limit", zero, None)
        for place in (*_EMAIL_BLOCKS, *_CHAT_TARGETS, *_FORWARDER_DESTINATIONS)
        for zero in _ZERO_DURATIONS
    ),
)


# --- applying it -----------------------------------------------------------------------------


def rewrite(
    data: dict[str, Any], aliases: tuple[Renamed | Revalued, ...] = ALIASES
) -> tuple[list[Found], list[Found]]:
    """Rewrite ``data`` in place to the new spellings: (old spellings found, conflicts)."""
    found: list[Found] = []
    conflicts: list[Found] = []
    for alias in aliases:
        if isinstance(alias, Renamed):
            _rename(data, alias, found, conflicts)
        else:
            _revalue(data, alias, found)
    return found, conflicts


def _rename(
    data: dict[str, Any], alias: Renamed, found: list[Found], conflicts: list[Found]
) -> None:
    for loc, node in _places(data, alias.at):
        if not isinstance(node, dict) or alias.old not in node:
            continue
        if alias.new in node:
            text = f": sets both {alias.old} (deprecated) and {alias.new}; keep only {alias.new}"
            conflicts.append(Found((*loc, alias.old), text))
            continue
        node[alias.new] = node.pop(alias.old)
        found.append(Found((*loc, alias.old), f" is deprecated; write {alias.new}"))


def _revalue(data: dict[str, Any], alias: Revalued, found: list[Found]) -> None:
    parent, _, key = alias.at.rpartition(".")
    for loc, node in _places(data, parent):
        if not isinstance(node, dict) or key not in node:
            continue
        value = node[key]
        if isinstance(value, list):
            for index, item in enumerate(value):
                if alias.matches(item):
                    value[index] = alias.new
                    found.append(Found((*loc, key, index), _revalued(alias)))
        elif alias.matches(value):
            node[key] = alias.new
            found.append(Found((*loc, key), _revalued(alias)))


def _revalued(alias: Revalued) -> str:
    return f": {_shown(alias.old)} is deprecated; write {_shown(alias.new)}"


def _shown(value: object) -> str:
    """A value as it is written in YAML."""
    return "null" if value is None else str(value)


def _places(data: Any, at: str, loc: Loc = ()) -> Iterator[tuple[Loc, Any]]:
    """Every node the dotted path ``at`` names, with its location."""
    if not at:
        yield loc, data
        return
    head, _, rest = at.partition(".")
    children: list[tuple[str | int, Any]] = []
    if head == "*" and isinstance(data, dict):
        children = list(data.items())
    elif head == "*" and isinstance(data, list):
        children = list(enumerate(data))
    elif isinstance(data, dict) and head in data:
        children = [(head, data[head])]
    for key, child in children:
        yield from _places(child, rest, (*loc, key))
