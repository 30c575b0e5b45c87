"""Slack incoming webhooks: a Block Kit message, or a basic one with links to the QMC and hub.

Slack's limits (Block Kit reference): at most 50 blocks, section text 3000 characters, section
fields 10 of 2000, header text 150, button text 75 and URL 3000, 25 elements per actions block.
The script log goes into code blocks trimmed to fit, with a note saying what was left out; the
finished payload is checked against the limits once more, so a custom template cannot push it
over either. A digest is a header and a section per alert: as many as the 50 blocks allow, then
"and N more".
"""

from __future__ import annotations

from typing import Any, Final

from herald_chat_notifier import templating
from herald_chat_notifier.chat import ChatDestination, ChatTarget
from herald_chat_notifier.context import NOTE_ROOM, fit_lines
from herald_chat_notifier.templating import mrkdwn, unfenced
from herald_shared.delivery.destination import Context, Destination
from herald_shared.outcomes import Outcome

KEY = "slack"

MAX_BLOCKS: Final = 50
SECTION_TEXT: Final = 3000
FIELD_TEXT: Final = 2000
MAX_FIELDS: Final = 10
HEADER_TEXT: Final = 150
BUTTON_TEXT: Final = 75
BUTTON_URL: Final = 3000
ACTION_ELEMENTS: Final = 25
LABEL_ROOM: Final = 60  # the "*First 10 lines*" line above a code block

_FENCE: Final = "```"


def _button(text: str, url: str) -> dict[str, Any]:
    return {
        "type": "button",
        "style": "primary",
        "text": {"type": "plain_text", "emoji": True, "text": text},
        "url": url,
    }


def _template_button(text: str, url: str, condition: str) -> dict[str, Any]:
    return {"$if": condition, **_button(text, url)}


def _field(label: str, value: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": f"*{label}*\n{value}"}


FORMATTED: Final[dict[str, Any]] = {
    "text": "{{ title }}: {{ task.name|mrkdwn }}",
    "blocks": [
        {"type": "header", "text": {"type": "plain_text", "emoji": True, "text": "{{ title }}"}},
        {
            "$if": "recovers",
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": ":white_check_mark: Task *{{ task.name|mrkdwn }}* is running again."
                " It follows the {{ recovers.kind }} at {{ recovers.occurred }}.",
            },
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*Task:* {{ task.name|mrkdwn }}\n*Task ID:* `{{ task.id }}`",
            },
        },
        {
            "type": "section",
            "fields": [
                _field("App", "{{ app.name|mrkdwn }}"),
                _field("Owner", "{{ (app.owner or '-')|mrkdwn }}"),
                _field("Result", "{{ execution.status|mrkdwn }} ({{ execution.status_code }})"),
                _field("Node", "{{ execution.node|mrkdwn }}"),
                _field("Started", "{{ execution.started }}"),
                _field("Duration", "{{ execution.duration }}"),
                _field("User", "{{ user|mrkdwn }}"),
                _field("Message", "{{ (log_message or '-')|mrkdwn }}"),
            ],
        },
        {
            "$if": "links.qmc or links.hub or links.app or links.generic",
            "type": "actions",
            "elements": [
                _template_button("Open QMC", "{{ links.qmc }}", "links.qmc"),
                _template_button("Open Hub", "{{ links.hub }}", "links.hub"),
                _template_button("Open app", "{{ links.app }}", "links.app"),
                {
                    "$for": "link in links.generic",
                    "$do": _button("{{ link.text }}", "{{ link.url }}"),
                },
            ],
        },
        {"$if": "excerpt.head", "type": "divider"},
        {
            "$if": "excerpt.head",
            "type": "section",
            "text": {"type": "mrkdwn", "text": "{{ excerpt.head }}"},
        },
        {
            "$if": "excerpt.tail",
            "type": "section",
            "text": {"type": "mrkdwn", "text": "{{ excerpt.tail }}"},
        },
        {
            "$if": "enrichment.status == 'partial'",
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": "Partial details: {{ enrichment.reasons|join('; ')|mrkdwn }}",
                }
            ],
        },
    ],
}


#: One alert of a digest (herald_shared.delivery.grouping.DigestItem): the error line is cut so
#: that a section stays far below Slack's 3000 characters.
DIGEST_ITEM: Final = (
    "*{{ item.task_name|mrkdwn }}*{% if item.app_name %} · app {{ item.app_name|mrkdwn }}"
    "{% endif %} · {{ item.time }}\n"
    "{% if item.links.app %}<{{ item.links.app }}|Open app> · {% endif %}"
    "{% if item.links.qmc %}<{{ item.links.qmc }}|QMC> · {% endif %}`{{ item.event_id }}`\n"
    "> {{ item.error[:1000]|mrkdwn }}"
)

DIGEST: Final[dict[str, Any]] = {
    "text": "{{ title|mrkdwn }}",
    "blocks": [
        {"type": "header", "text": {"type": "plain_text", "emoji": True, "text": "{{ title }}"}},
        {
            "$for": "item in items",
            "$do": {"type": "section", "text": {"type": "mrkdwn", "text": DIGEST_ITEM}},
        },
        {
            "$if": "more",
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": "… and {{ more }} more"}],
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": "Digest `{{ digest_id }}`, {{ count }} alerts since {{ since }}",
                }
            ],
        },
    ],
}


def _code_safe(line: str) -> str:
    return unfenced(mrkdwn(line))


def code_block(label: str, lines: list[str], *, from_end: bool) -> str:
    """A section text with ``lines`` in a code block, trimmed to Slack's 3000 characters."""
    if not lines:
        return ""
    budget = SECTION_TEXT - LABEL_ROOM - 2 * (len(_FENCE) + 1)
    excerpt = fit_lines(
        [_code_safe(line) for line in lines],
        budget,
        from_end=from_end,
        reason=f"Slack's {SECTION_TEXT}-character limit",
    )
    assert len(excerpt.note) <= NOTE_ROOM
    count = len(excerpt.lines)
    heading = f"*{label} {count} line{'s' if count != 1 else ''} of the script log*"
    block = f"{_FENCE}\n" + "\n".join(excerpt.lines) + f"\n{_FENCE}"
    if not excerpt.note:
        return f"{heading}\n{block}"
    note = f"_{excerpt.note}_"
    return f"{heading}\n{note}\n{block}" if from_end else f"{heading}\n{block}\n{note}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fit_limits(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload within Slack's limits, whatever a template made of it."""
    blocks = payload.get("blocks")
    if not isinstance(blocks, list):
        return payload
    if len(blocks) > MAX_BLOCKS:
        left_out = len(blocks) - MAX_BLOCKS + 1
        note = {"type": "mrkdwn", "text": f"… {left_out} more blocks not shown"}
        blocks = [*blocks[: MAX_BLOCKS - 1], {"type": "context", "elements": [note]}]
    for block in blocks:
        if not isinstance(block, dict):
            continue
        text = block.get("text")
        if isinstance(text, dict) and isinstance(text.get("text"), str):
            limit = HEADER_TEXT if block.get("type") == "header" else SECTION_TEXT
            text["text"] = _cut(text["text"], limit)
        fields = block.get("fields")
        if isinstance(fields, list):
            block["fields"] = fields = fields[:MAX_FIELDS]
            for field in fields:
                if isinstance(field, dict) and isinstance(field.get("text"), str):
                    field["text"] = _cut(field["text"], FIELD_TEXT)
        elements = block.get("elements")
        if block.get("type") == "actions" and isinstance(elements, list):
            block["elements"] = elements = elements[:ACTION_ELEMENTS]
            for element in elements:
                label = element.get("text") if isinstance(element, dict) else None
                if isinstance(label, dict) and isinstance(label.get("text"), str):
                    label["text"] = _cut(label["text"], BUTTON_TEXT)
    payload["blocks"] = blocks
    return payload


class SlackTarget(ChatTarget):
    username: str = "Qlik Sense"
    icon_emoji: str = ":ghost:"
    channel: str | None = None  # None: the webhook's own channel


class SlackDestination(ChatDestination):
    platform = "slack"
    target: SlackTarget

    def default_template(self, outcome: Outcome) -> Any:
        return FORMATTED

    def _identity(self) -> dict[str, Any]:
        identity: dict[str, Any] = {
            "username": self.target.username,
            "icon_emoji": self.target.icon_emoji,
        }
        if self.target.channel:
            identity["channel"] = self.target.channel
        return identity

    def formatted(self, template: Any, context: dict[str, Any]) -> Any:
        script_log = context["script_log"]
        excerpt = {
            "head": code_block("First", script_log["head"], from_end=False),
            "tail": code_block("Last", script_log["tail"], from_end=True),
        }
        payload = templating.render(template, {**context, "excerpt": excerpt})
        if not isinstance(payload, dict):
            raise templating.TemplateError("a Slack template must make a JSON object")
        return fit_limits({**self._identity(), **payload})

    def default_digest_template(self) -> Any:
        return DIGEST

    def digest_payload(self, template: Any, context: dict[str, Any]) -> tuple[Any, bool]:
        payload = templating.render(template, context)
        if not isinstance(payload, dict):
            raise templating.TemplateError("a Slack template must make a JSON object")
        blocks = payload.get("blocks")
        fits = not isinstance(blocks, list) or len(blocks) <= MAX_BLOCKS
        return fit_limits({**self._identity(), **payload}), fits

    def basic(self, context: dict[str, Any]) -> Any:
        links = context["links"]
        blocks: list[dict[str, Any]] = [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "emoji": True,
                    "text": _cut(context["basic_title"], HEADER_TEXT),
                },
            }
        ]
        if context["recovers"] is not None:
            recovers = context["recovers"]
            blocks.append(
                {
                    "type": "section",
                    "text": {
                        "type": "plain_text",
                        "text": _cut(
                            f"Task {context['task']['name']} is running again after the"
                            f" {recovers['kind']} at {recovers['occurred']}.",
                            SECTION_TEXT,
                        ),
                    },
                }
            )
        buttons = [
            _button(text, url[:BUTTON_URL])
            for text, url in (("Open QMC", links["qmc"]), ("Open Hub", links["hub"]))
            if url
        ]
        if buttons:
            blocks += [{"type": "divider"}, {"type": "actions", "elements": buttons}]
        return {
            **self._identity(),
            "text": mrkdwn(context["basic_title"]),
            "blocks": blocks,
        }


def destinations(settings: list[SlackTarget], context: Context) -> list[Destination]:
    """One destination per configured target, ``slack:<name>``."""
    return [SlackDestination(target, service=context.service) for target in settings]
