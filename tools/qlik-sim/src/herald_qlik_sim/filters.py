"""QRS ``filter=`` expressions: ``id eq <guid>``, ``name sw 'Reload'``, ``a and (b or c)``…

Operators: ``eq ne gt ge lt le`` and the string tests ``sw`` (starts with), ``ew`` (ends with),
``so`` (substring of). Values: an unquoted GUID or number, ``true``/``false``/``null``, or a
single-quoted string with ``''`` for a quote. String comparisons ignore case, as the QRS does,
and so do property names. A path that crosses a list (``tags.name``,
``customProperties.definition.name``) matches when some element matches; clauses of one ``and``
that cross the same list must match the *same* element, so
``customProperties.definition.name eq 'X' and customProperties.value eq 'Y'`` means "X is set to
Y" (docs/butler-compatibility.md §2.2 Q10). Dates are ISO strings in one format
(``2026-12-02T10:00:00.000Z``), so ``stopTime gt '…'`` compares them as text, correctly.
``orderby=<property> [asc|desc]`` sorts a list (:func:`order`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

_TOKEN = re.compile(r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<paren>[()])|(?P<word>[^\s()']+))")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


class FilterError(ValueError):
    """The expression does not parse; the QRS answers 400."""


@dataclass(frozen=True)
class Clause:
    path: tuple[str, ...]
    op: str
    value: Any

    def shifted(self) -> Clause:
        return Clause(self.path[1:], self.op, self.value)


@dataclass(frozen=True)
class And:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Node, ...]


Node: TypeAlias = Clause | And | Or


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _ordered(test: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(left: Any, right: Any) -> bool:
        try:
            return test(_lower(left), _lower(right))
        except TypeError:
            return False

    return compare


def _text(test: Callable[[str, str], bool]) -> Callable[[Any, Any], bool]:
    def compare(left: Any, right: Any) -> bool:
        return (
            isinstance(left, str) and isinstance(right, str) and test(left.lower(), right.lower())
        )

    return compare


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda left, right: _lower(left) == _lower(right),
    "ne": lambda left, right: _lower(left) != _lower(right),
    "gt": _ordered(lambda left, right: left > right),
    "ge": _ordered(lambda left, right: left >= right),
    "lt": _ordered(lambda left, right: left < right),
    "le": _ordered(lambda left, right: left <= right),
    "sw": _text(str.startswith),
    "ew": _text(str.endswith),
    "so": _text(lambda left, right: right in left),
}


def parse(expression: str) -> Node:
    tokens = _tokens(expression)
    node, position = _expression(tokens, 0)
    if position != len(tokens):
        raise FilterError(f"unexpected {tokens[position][1]!r} in filter {expression!r}")
    return node


def matches(node: Node, document: dict[str, Any]) -> bool:
    if isinstance(node, Or):
        return any(matches(part, document) for part in node.parts)
    if isinstance(node, And):
        clauses = [part for part in node.parts if isinstance(part, Clause)]
        others = [part for part in node.parts if not isinstance(part, Clause)]
        return _all_clauses(clauses, document) and all(matches(part, document) for part in others)
    return _all_clauses([node], document)


def select(expression: str | None, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if expression is None or not expression.strip():
        return documents
    node = parse(expression)
    return [document for document in documents if matches(node, document)]


def order(expression: str | None, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``orderby=stopTime asc`` (or ``desc``; ``asc`` when omitted): a stable sort on one
    property; documents without it come first, as nulls do in the repository's database."""
    if expression is None or not expression.strip():
        return documents
    words = expression.split()
    if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
        raise FilterError(f"cannot read orderby {expression!r} (expected: property [asc|desc])")
    key = words[0].lower()

    def sort_key(document: dict[str, Any]) -> tuple[bool, Any]:
        value = _lower(_get(document, key))
        return (value is not None, value if value is not None else 0)

    try:
        ordered = sorted(documents, key=sort_key)
    except TypeError:
        raise FilterError(f"cannot order by {words[0]!r}: its values are of mixed types") from None
    return ordered[::-1] if len(words) == 2 and words[1].lower() == "desc" else ordered


def _all_clauses(clauses: list[Clause], document: Any) -> bool:
    """Every clause holds; clauses that go through the same list hold for one element."""
    groups: dict[str, list[Clause]] = {}
    for clause in clauses:
        groups.setdefault(clause.path[0].lower(), []).append(clause)
    for key, group in groups.items():
        value = _get(document, key)
        deeper = [clause.shifted() for clause in group if len(clause.path) > 1]
        here = [clause for clause in group if len(clause.path) == 1]
        if any(not _OPERATORS[clause.op](value, clause.value) for clause in here):
            return False
        if not deeper:
            continue
        if isinstance(value, list):
            if not any(_all_clauses(deeper, element) for element in value):
                return False
        elif not _all_clauses(deeper, value):
            return False
    return True


def _get(document: Any, key: str) -> Any:
    if not isinstance(document, dict):
        return None
    for name, value in document.items():
        if name.lower() == key:
            return value
    return None


def _tokens(expression: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    rest = expression.rstrip()
    while position < len(rest):
        found = _TOKEN.match(rest, position)
        if found is None or found.end() == position:
            raise FilterError(f"cannot read filter {expression!r} at position {position}")
        kind = found.lastgroup
        assert kind is not None
        tokens.append((kind, found.group(kind)))
        position = found.end()
    return tokens


def _expression(tokens: list[tuple[str, str]], position: int) -> tuple[Node, int]:
    parts: list[Node] = []
    node, position = _term(tokens, position)
    parts.append(node)
    while _is_word(tokens, position, "or"):
        node, position = _term(tokens, position + 1)
        parts.append(node)
    return (parts[0] if len(parts) == 1 else Or(tuple(parts))), position


def _term(tokens: list[tuple[str, str]], position: int) -> tuple[Node, int]:
    parts: list[Node] = []
    node, position = _factor(tokens, position)
    parts.append(node)
    while _is_word(tokens, position, "and"):
        node, position = _factor(tokens, position + 1)
        parts.append(node)
    return (parts[0] if len(parts) == 1 else And(tuple(parts))), position


def _factor(tokens: list[tuple[str, str]], position: int) -> tuple[Node, int]:
    if position < len(tokens) and tokens[position] == ("paren", "("):
        node, position = _expression(tokens, position + 1)
        if position >= len(tokens) or tokens[position] != ("paren", ")"):
            raise FilterError("missing ')' in filter")
        return node, position + 1
    if position + 3 > len(tokens):
        raise FilterError("incomplete clause in filter (expected: property operator value)")
    (path_kind, path), (op_kind, op), (value_kind, raw) = tokens[position : position + 3]
    if path_kind != "word" or op_kind != "word" or op.lower() not in _OPERATORS:
        raise FilterError(f"expected 'property operator value', got {path!r} {op!r}")
    if value_kind == "paren":
        raise FilterError(f"expected a value after {op!r}")
    return Clause(tuple(path.split(".")), op.lower(), _value(value_kind, raw)), position + 3


def _value(kind: str, raw: str) -> Any:
    if kind == "string":
        return raw[1:-1].replace("''", "'")
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    if _GUID.match(raw):
        return raw
    if _NUMBER.match(raw):
        return float(raw) if "." in raw else int(raw)
    raise FilterError(f"cannot read value {raw!r} (strings need single quotes)")


def _is_word(tokens: list[tuple[str, str]], position: int, word: str) -> bool:
    return (
        position < len(tokens)
        and tokens[position][0] == "word"
        and tokens[position][1].lower() == word
    )
