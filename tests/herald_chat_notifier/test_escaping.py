"""What comes from Qlik is shown as text in every chat format, never read as markup.

A task named ``[Open the report](https://evil.example)`` must not become a link whose target the
reader cannot see, and a ```` ``` ```` line in a script log must not close the code block around
the log (the rest of the log would then be read as Markdown).
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest

from herald_chat_notifier import context as contexts
from herald_chat_notifier.destinations.slack import SlackDestination, SlackTarget
from herald_chat_notifier.destinations.teams import TeamsDestination, TeamsTarget
from herald_shared import samples
from herald_shared.events import TaskFailed

LINK = "[Open the report](https://evil.example/x)"
#: A Markdown link or emphasis that a renderer would act on: an unescaped `[`…`](`, or `*x*`.
LIVE_LINK = re.compile(r"(?<!\\)\[[^\]]*(?<!\\)\]\(")
LIVE_BOLD = re.compile(r"(?<!\\)\*\*?[^*\\]+(?<!\\)\*")
FENCED = re.compile(r"```\n.*?\n```", re.S)  # a code block: shown as it is


def _hostile() -> TaskFailed:
    event = samples.sample_failed()
    assert event.app is not None
    assert event.script_log is not None
    log = ["line 1", "```", "[not a link](https://evil.example/log)", "````", "last line"]
    return msgspec.structs.replace(
        event,
        task=msgspec.structs.replace(event.task, name=f"Reload {LINK}"),
        app=msgspec.structs.replace(event.app, name="**Sales** app"),
        log_message=f"see {LINK}",
        script_log=msgspec.structs.replace(event.script_log, head=log, tail=log),
    )


def _strings(node: Any, skip: frozenset[str] = frozenset()) -> list[str]:
    """Every string in a payload, but those under the keys in ``skip``."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [text for item in node for text in _strings(item, skip)]
    if isinstance(node, dict):
        return [
            text for key, value in node.items() if key not in skip for text in _strings(value, skip)
        ]
    return []


def _teams(card: str, message_type: str = "formatted") -> Any:
    target = TeamsTarget(
        name="ops", webhook_url="https://teams.example/hook", format=card, message_type=message_type
    )
    destination = TeamsDestination(target, service="chat-notifier")
    context = contexts.build(_hostile(), "failed", target)
    if message_type == "basic":
        return destination.basic(context)
    return destination.formatted(destination.default_template("failed"), context)


@pytest.mark.parametrize("card", ["adaptive_card", "message_card"])
@pytest.mark.parametrize("message_type", ["formatted", "basic"])
def test_no_markdown_from_qlik_is_live_in_a_teams_card(card: str, message_type: str) -> None:
    payload = _teams(card, message_type)
    # Code blocks are not Markdown, and URLs are the actions' own; everything else is read.
    strings = _strings(payload, frozenset({"codeSnippet", "url", "uri", "targets"}))
    shown = [FENCED.sub("", text) for text in strings]
    assert [text for text in shown if LIVE_LINK.search(text)] == []
    assert [text for text in shown if LIVE_BOLD.search(text)] == []
    assert any("Open the report" in text for text in shown)  # the name is there, as text


def test_a_fence_in_the_script_log_cannot_close_the_message_cards_code_block() -> None:
    payload = _teams("message_card")
    excerpts = [s["text"] for s in payload["sections"] if "```" in s.get("text", "")]
    assert len(excerpts) == 2
    for text in excerpts:
        assert text.count("```") == 2  # the block's own opening and closing fences, nothing else
        assert "[not a link](https://evil.example/log)" in text  # inside the block, verbatim


def test_a_fence_in_the_script_log_cannot_close_slacks_code_block() -> None:
    target = SlackTarget(name="ops", webhook_url="https://hooks.slack.example/T/B/x")
    destination = SlackDestination(target, service="chat-notifier")
    context = contexts.build(_hostile(), "failed", target)
    payload = destination.formatted(destination.default_template("failed"), context)
    blocks = [t for t in _strings(payload) if "of the script log" in t and "```" in t]
    assert blocks
    for text in blocks:
        assert text.count("```") == 2, json.dumps(text)
