"""Handlebars → Jinja2: what Butler's templates use converts faithfully, the rest is refused
with the construct named, never half converted."""

from __future__ import annotations

import re

import jinja2
import pytest

from herald_butler_import.handlebars import ConversionError, to_jinja, to_payload
from herald_chat_notifier import templating

ROOTS = frozenset({"taskName", "genericUrls", "taskTags", "scriptLogTail", "appOwnerEmail", "n"})
CONTEXT = {
    "taskName": "Sales & <Finance>",
    "genericUrls": [
        {"id": "runbook", "linkText": "Runbook", "url": "https://wiki/r"},
        {"id": "docs", "linkText": "Docs", "url": "https://wiki/d"},
    ],
    "taskTags": [],
    "scriptLogTail": "<b>bold</b>",
    "appOwnerEmail": "",
    "n": 3,
}


def render(source: str, *, html: bool = False) -> str:
    # Text templates (subjects, chat leaves) are not HTML: no escaping there, as in Herald.
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=html)  # noqa: S701
    return environment.from_string(to_jinja(source, ROOTS, html=html)).render(CONTEXT)


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ("{{#each genericUrls}}{{url}}", "never closed"),
        ("{{/if}}", "closes nothing"),
        ("{{#if (eq taskName}}x{{/if}}", "unclosed '('"),
        ("{{#lookup taskName}}x{{/lookup}}", "#lookup"),
        ("{{formatDate taskName 'YYYY'}}", "formatDate"),
        ("{{#if n}}a{{else if taskName}}b{{/if}}", "else if"),
        ("{{@key}}", "@key"),
    ],
)
def test_a_construct_without_a_faithful_jinja2_form_is_refused_by_name(
    source: str, named: str
) -> None:
    with pytest.raises(ConversionError, match=re.escape(named)):
        to_jinja(source, ROOTS, html=False)


def test_html_escapes_double_stash_and_keeps_triple_stash_raw_as_handlebars() -> None:
    assert render("{{taskName}} {{{scriptLogTail}}}", html=True) == (
        "Sales &amp; &lt;Finance&gt; <b>bold</b>"
    )


def test_each_with_this_bare_names_index_last_else_and_eq() -> None:
    source = (
        '{{#each genericUrls}}{{@index}}:{{#if (eq id "runbook")}}{{this.linkText}}'
        "{{else}}{{linkText}}@{{url}}{{/if}}{{#unless @last}}, {{/unless}}{{/each}}"
        "|{{#each taskTags}}{{this}}{{else}}no tags{{/each}}"
        "|{{#if (and n (not appOwnerEmail))}}no owner{{/if}}|{{#if (gt n 2)}}big{{/if}}"
    )
    assert render(source) == "0:Runbook, 1:Docs@https://wiki/d|no tags|no owner|big"


def test_jinja_syntax_in_the_literal_text_stays_text() -> None:
    assert render("{% not jinja %} {# nor this #} {{taskName}}") == (
        "{% not jinja %} {# nor this #} Sales & <Finance>"
    )


def test_an_unknown_name_renders_empty_as_in_butler_and_is_reported() -> None:
    unknown: set[str] = set()
    converted = to_jinja("id={{tasId}};", ROOTS, html=False, unknown=unknown)
    assert jinja2.Environment(autoescape=True).from_string(converted).render() == "id=;"
    assert unknown == {"tasId"}


def test_a_chat_payload_with_a_structural_each_and_if_becomes_a_structure() -> None:
    source = """{"blocks": [
      {"type": "header", "text": "{{taskName}}"}
      {{#each genericUrls}},{"url": "{{this.url}}", "id": "{{id}}"}{{/each}}
      {{#if appOwnerEmail}},{"owner": "{{appOwnerEmail}}"}{{else}},{"owner": "none"}{{/if}}
    ]}"""
    payload = templating.render(to_payload(source, ROOTS), CONTEXT)
    assert payload == {
        "blocks": [
            {"type": "header", "text": "Sales & <Finance>"},
            {"url": "https://wiki/r", "id": "runbook"},
            {"url": "https://wiki/d", "id": "docs"},
            {"owner": "none"},
        ]
    }


def test_a_loop_index_in_a_payload_block_is_refused() -> None:
    source = '{"a": [{{#each genericUrls}}{"n": "{{@index}}"}{{/each}}]}'
    with pytest.raises(ConversionError, match="@index outside"):
        to_payload(source, ROOTS)


def test_a_chat_payload_that_is_not_json_is_refused() -> None:
    with pytest.raises(ConversionError, match="not JSON"):
        to_payload('{"text": "{{taskName}}",, }}', ROOTS)
