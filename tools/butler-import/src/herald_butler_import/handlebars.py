"""Butler's Handlebars templates as Jinja2: e-mail bodies and subjects as text, Slack and Teams
payloads as Herald's payload structures (herald_chat_notifier.templating).

Butler's field names are in every Herald template context (herald_shared.butler_fields), so only
the syntax changes: ``{{x}}`` → ``{{ x }}`` (autoescaped in HTML, as Handlebars escaped it),
``{{{x}}}`` → ``{{ x | safe }}`` in HTML, ``{{#if}}``/``{{else}}``/``{{#unless}}``/``{{#each}}``/
``{{#with}}`` blocks, the helpers ``eq``, ``ne``, ``gt``, ``lt``, ``gte``, ``lte``, ``and``,
``or``, ``not``, ``this``, ``../x``, ``@index``/``@first``/``@last`` and partials (``{{> name}}``
→ ``{% include %}``). Inside ``{{#each}}`` a bare name that is not a top-level field is the
item's (Handlebars' context switch). Anything else is a :class:`ConversionError` naming the file
and the construct, so a template is never half converted; ``herald render`` then proves the result.
Handlebars' rules: https://handlebarsjs.com/guide/.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["ConversionError", "to_jinja", "to_payload"]

_MUSTACHE: Final = re.compile(
    r"\{\{!--.*?--\}\}|\{\{![^}]*\}\}|\{\{\{(.*?)\}\}\}|\{\{(.*?)\}\}", re.S
)
_TOKEN: Final = re.compile(r'\s*(\(|\)|"[^"]*"|\'[^\']*\'|[^\s()]+)')
_INFIX: Final = {"eq": "==", "ne": "!=", "gt": ">", "lt": "<", "gte": ">=", "lte": "<="}
_JINJA_MARKS: Final = ("{%", "%}", "{#", "#}", "{{", "}}")
_DICT_METHODS: Final = {"items", "keys", "values", "get", "pop", "update", "copy"}


class ConversionError(ValueError):
    """A Handlebars construct with no faithful Jinja2 form."""


@dataclass
class _Scope:
    roots: frozenset[str]
    # The enclosing loops, innermost last: "jinja" ({% for %}) or "payload" (a $for entry,
    # which has no loop variable: @index cannot be had there).
    loops: list[str] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)
    unknown: set[str] = field(default_factory=set)  # top-level names no template context has


def _path(word: str, scope: _Scope) -> str:
    if word in ("true", "false"):
        return word.capitalize()
    if word in ("null", "undefined"):
        return "none"
    if re.fullmatch(r"-?\d+(\.\d+)?", word):
        return word
    specials = {"@index": "loop.index0", "@first": "loop.first", "@last": "loop.last"}
    if word in specials:
        if not scope.loops or scope.loops[-1] != "jinja":
            raise ConversionError(f"{word} outside a {{{{#each}}}} within one text")
        return specials[word]
    if word.startswith("@"):
        raise ConversionError(f"{word} has no Jinja2 counterpart")
    while word.startswith("../"):
        word = word[3:]
    word = word.removeprefix("./")
    parts = [part for part in word.split(".") if part]
    if not parts:
        raise ConversionError(f"cannot read the path {word!r}")
    if parts[0] != "this" and parts[0] not in scope.roots:
        if not scope.loops:
            # Handlebars renders an unknown name as nothing (Butler's Teams templates say
            # {{tasId}}); the converted template does the same and the import reports it.
            scope.unknown.add(word)
            return '""'
        parts.insert(0, "this")  # inside {{#each}} a bare name is the item's
    head, *rest = parts
    return head + "".join(f"[{part!r}]" if part in _DICT_METHODS else f".{part}" for part in rest)


def _terms(tokens: Iterator[str], scope: _Scope, *, until_close: bool) -> list[str]:
    terms: list[str] = []
    for word in tokens:
        if word == ")":
            if not until_close:
                raise ConversionError("an unmatched ')'")
            return terms
        if word == "(":
            terms.append(_call(_terms(tokens, scope, until_close=True), scope))
        elif word[0] in "\"'":
            terms.append(json.dumps(word[1:-1]))
        elif not terms and (word in _INFIX or word in ("and", "or", "not")):
            terms.append(f"@{word}")
        elif not terms and re.fullmatch(r"[A-Za-z_]\w*", word) and word not in scope.roots:
            terms.append(f"?{word}")  # a helper's name, or an unknown name: _call decides
        else:
            terms.append(_path(word, scope))
    if until_close:
        raise ConversionError("an unclosed '('")
    return terms


def _call(terms: list[str], scope: _Scope) -> str:
    if not terms:
        raise ConversionError("an empty expression")
    head, *args = terms
    if head.startswith("?"):
        if args:
            raise ConversionError(
                f"the helper {head[1:]!r} is not one of Butler's (eq, ne, and, or, not, …)"
            )
        return _path(head[1:], scope)
    if not head.startswith("@"):
        if args:
            raise ConversionError(
                f"the helper {head!r} is not one of Butler's (eq, ne, and, or, not, …)"
            )
        return head
    name = head[1:]
    if name in _INFIX and len(args) == 2:
        return f"({args[0]} {_INFIX[name]} {args[1]})"
    if name == "not" and len(args) == 1:
        return f"(not {args[0]})"
    if name in ("and", "or") and args:
        return "(" + f" {name} ".join(args) + ")"
    raise ConversionError(f"{name} with {len(args)} arguments")


def expression(text: str, scope: _Scope) -> str:
    """One Handlebars expression (a path, a literal or a helper call) as a Jinja2 expression."""
    tokens = iter(match.group(1) for match in _TOKEN.finditer(text) if match.group(1))
    return _call(_terms(tokens, scope, until_close=False), scope)


def _tag(inner: str, scope: _Scope, *, raw: bool, html: bool) -> str:
    inner = inner.strip().strip("~").strip()
    if raw:
        value = expression(inner, scope)
        return f"{{{{ {value} | safe }}}}" if html else f"{{{{ {value} }}}}"
    if inner.startswith("#"):
        return _open(inner[1:], scope)
    if inner.startswith("/"):
        return _close(inner[1:].strip(), scope)
    if inner == "else" or inner.startswith("else "):
        if not scope.blocks:
            raise ConversionError("{{else}} outside a block")
        if inner != "else":
            raise ConversionError(f"{{{{{inner}}}}} (else if) is not supported")
        return "{% else %}"
    if inner.startswith(">"):
        name = inner[1:].strip().split()[0]
        return f'{{% include "{name}.html" %}}' if html else f'{{% include "{name}.txt" %}}'
    return f"{{{{ {expression(inner, scope)} }}}}"


def _open(inner: str, scope: _Scope) -> str:
    helper, _, argument = inner.partition(" ")
    scope.blocks.append(helper)
    if helper == "if":
        return f"{{% if {expression(argument, scope)} %}}"
    if helper == "unless":
        return f"{{% if not {expression(argument, scope)} %}}"
    if helper == "each":
        items = expression(argument, scope)
        scope.loops.append("jinja")
        return f"{{% for this in {items} %}}"
    if helper == "with":
        value = expression(argument, scope)
        scope.loops.append("jinja")
        return f"{{% with this = {value} %}}"
    raise ConversionError(f"the block helper #{helper} is not supported")


def _close(helper: str, scope: _Scope) -> str:
    if not scope.blocks or scope.blocks[-1] != helper:
        raise ConversionError(f"{{{{/{helper}}}}} closes nothing")
    scope.blocks.pop()
    if helper in ("each", "with"):
        scope.loops.pop()
        return "{% endfor %}" if helper == "each" else "{% endwith %}"
    return "{% endif %}"


def _literal(text: str) -> str:
    if any(mark in text for mark in _JINJA_MARKS):
        return "{% raw %}" + text + "{% endraw %}"
    return text


def to_jinja(
    source: str, roots: frozenset[str], *, html: bool, unknown: set[str] | None = None
) -> str:
    """A Handlebars text template (e-mail body, subject, a payload's text leaf) as Jinja2;
    names that are no field of ``roots`` are added to ``unknown``."""
    scope = _Scope(roots, unknown=set() if unknown is None else unknown)
    return _convert(source, scope, html=html)


def _convert(source: str, scope: _Scope, *, html: bool) -> str:
    out: list[str] = []
    position = 0
    for match in _MUSTACHE.finditer(source):
        out.append(_literal(source[position : match.start()]))
        position = match.end()
        if match.group(1) is None and match.group(2) is None:
            continue  # a comment
        raw = match.group(1) is not None
        out.append(_tag(match.group(1) if raw else match.group(2), scope, raw=raw, html=html))
    out.append(_literal(source[position:]))
    if scope.blocks:
        raise ConversionError(f"{{{{#{scope.blocks[-1]}}}}} is never closed")
    return "".join(out)


# --- Slack and Teams: Butler's templates are JSON text with Handlebars inside ------------------

_PLACEHOLDER: Final = "\x00{}\x00"
_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def to_payload(source: str, roots: frozenset[str], unknown: set[str] | None = None) -> Any:
    """A Butler Slack/Teams template as a payload structure: structural ``{{#each}}`` and
    ``{{#if}}`` between JSON values become ``$for`` entries, every string leaf becomes Jinja2."""
    kept: list[str] = []
    text = _structural(source, kept)
    text = _cleanup_commas(text)
    try:
        structure = json.loads(text, strict=False)  # placeholders are control characters
    except json.JSONDecodeError as error:
        raise ConversionError(f"not JSON once the Handlebars blocks are read: {error}") from None
    return _leaves(structure, kept, _Scope(roots, unknown=set() if unknown is None else unknown))


def _structural(source: str, kept: list[str]) -> str:
    out: list[str] = []
    conditions: list[str | None] = []
    in_string = False
    position = 0
    while position < len(source):
        if source.startswith("{{", position):
            end = source.find("}}}", position) + 3 if source.startswith("{{{", position) else 0
            if not end:
                end = source.find("}}", position) + 2
            if source.startswith("{{!--", position):
                end = source.find("--}}", position) + 4
            if end < position + 2:
                raise ConversionError("a '{{' is never closed")
            token = source[position:end]
            position = end
            if token.startswith("{{!"):
                continue
            if in_string:
                kept.append(token)
                out.append(_PLACEHOLDER.format(len(kept) - 1))
            else:
                out.append(_structural_tag(token, conditions, kept))
            continue
        character = source[position]
        if character == "\\" and in_string:
            out.append(source[position : position + 2])
            position += 2
            continue
        if character == '"':
            in_string = not in_string
        out.append(character)
        position += 1
    if conditions:
        raise ConversionError("a block between JSON values is never closed")
    return "".join(out)


def _structural_tag(token: str, conditions: list[str | None], kept: list[str]) -> str:
    inner = token.strip("{}").strip().strip("~").strip()
    helper, _, argument = inner.partition(" ")
    if helper == "#each":
        conditions.append(None)
        kept.append(argument)
        return f',{{"$for": "this in \\u0000e{len(kept) - 1}\\u0000", "$do": ['
    if helper in ("#if", "#unless"):
        condition = argument if helper == "#if" else f"(not {argument})"
        conditions.append(condition)
        kept.append(condition)
        return f',{{"$for": "_ in \\u0000i{len(kept) - 1}\\u0000", "$do": ['
    if inner == "else" and conditions and conditions[-1] is not None:
        kept.append(f"(not {conditions[-1]})")
        conditions[-1] = kept[-1]
        return f']}},{{"$for": "_ in \\u0000i{len(kept) - 1}\\u0000", "$do": ['
    if helper in ("/each", "/if", "/unless") and conditions:
        conditions.pop()
        return "]},"
    if not helper.startswith(("#", "/")) and inner != "else":
        kept.append(token)  # a value between JSON values, e.g. "rows": {{scriptLogSizeRows}}
        return '"' + _PLACEHOLDER.format(len(kept) - 1).replace("\x00", "\\u0000") + '"'
    raise ConversionError(f"{token} between JSON values is not supported")


def _cleanup_commas(text: str) -> str:
    def tidy(gap: str) -> str:
        for pattern, replacement in (
            (r",\s*(?=,)", ""),
            (r"([\[{:])\s*,", r"\1"),
            (r",\s*([\]}])", r"\1"),
        ):
            previous = None
            while previous != gap:
                previous, gap = gap, re.sub(pattern, replacement, gap)
        return gap

    pieces: list[str] = []
    position = 0
    for match in _STRING.finditer(text):
        pieces += [tidy(text[position : match.start()]), match.group(0)]
        position = match.end()
    pieces.append(tidy(text[position:]))
    return "".join(pieces)


def _leaves(node: Any, kept: list[str], scope: _Scope) -> Any:
    if isinstance(node, str):
        return _leaf(node, kept, scope)
    if isinstance(node, list):
        return [_leaves(item, kept, scope) for item in node]
    if isinstance(node, dict) and "$for" in node:
        return _loop(node, kept, scope)
    if isinstance(node, dict):
        return {key: _leaves(value, kept, scope) for key, value in node.items()}
    return node


def _loop(node: dict[str, Any], kept: list[str], scope: _Scope) -> Any:
    _, _, reference = str(node["$for"]).partition(" in ")
    marker = re.fullmatch(r"\x00([ei])(\d+)\x00", reference)
    if marker is None:
        raise ConversionError(f"unexpected loop {node['$for']!r}")
    items = node["$do"]
    if len(items) != 1:
        raise ConversionError(
            f"a block between JSON values must hold exactly one value, it holds {len(items)}"
        )
    source = kept[int(marker.group(2))]
    if marker.group(1) == "e":
        target = expression(source, scope)
        inner = _Scope(scope.roots, [*scope.loops, "payload"], unknown=scope.unknown)
        return {"$for": f"this in {target}", "$do": _leaves(items[0], kept, inner)}
    condition = expression(source, scope)
    return {
        "$for": f"_ in ([1] if {condition} else [])",
        "$do": _leaves(items[0], kept, scope),
    }


def _leaf(text: str, kept: list[str], scope: _Scope) -> str:
    restored = re.sub(r"\x00(\d+)\x00", lambda match: kept[int(match.group(1))], text)
    return _convert(
        restored, _Scope(scope.roots, list(scope.loops), unknown=scope.unknown), html=False
    )
