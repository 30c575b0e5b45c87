"""Microsoft Teams: an Adaptive Card in the Workflows message envelope, or a legacy MessageCard.

Microsoft retired the Office 365 connectors; a Workflows webhook ("when a Teams webhook request
is received") takes ``{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "content": <AdaptiveCard>}]}``. Teams refuses messages
over about 28 KB, so the script-log excerpt is trimmed until the whole payload fits, and a digest
lists as many alerts as fit, then "and N more".
"""

from __future__ import annotations

from typing import Any, Final, Literal

from herald_chat_notifier import templating
from herald_chat_notifier.chat import ChatDestination, ChatTarget
from herald_chat_notifier.context import fit_lines
from herald_chat_notifier.webhook import encode
from herald_shared.delivery.destination import Context, Destination
from herald_shared.outcomes import Outcome

KEY = "teams"

#: Teams' limit is "about 28 KB"; stay clearly below it.
PAYLOAD_LIMIT: Final = 27 * 1024
ADAPTIVE_CARD: Final = "application/vnd.microsoft.card.adaptive"
SCHEMA: Final = "http://adaptivecards.io/schemas/adaptive-card.json"
INITIAL_EXCERPT_BYTES: Final = 12_000  # per excerpt, before the size check
TITLE_TEXT: Final = 200


def _json_size(line: str) -> int:
    return len(encode(line)) - 2  # as it travels: UTF-8 bytes and JSON escapes, no quotes


def _open_url(title: str, url: str, condition: str | None = None) -> dict[str, Any]:
    action: dict[str, Any] = {"type": "Action.OpenUrl", "title": title, "url": url}
    return {"$if": condition, **action} if condition else action


def _fact(title: str, value: str) -> dict[str, str]:
    return {"title": title, "value": value}


def _excerpt_blocks(which: str) -> list[dict[str, Any]]:
    return [
        {
            "$if": f"excerpt.{which}",
            "type": "TextBlock",
            "text": f"{{{{ excerpt.{which}_label }}}}",
            "weight": "Bolder",
            "wrap": True,
        },
        {
            "$if": f"excerpt.{which}_note",
            "type": "TextBlock",
            "text": f"{{{{ excerpt.{which}_note }}}}",
            "isSubtle": True,
            "wrap": True,
        },
        {
            "$if": f"excerpt.{which}",
            "type": "CodeBlock",
            "codeSnippet": f"{{{{ excerpt.{which} }}}}",
            "language": "PlainText",
        },
    ]


def _title(text: str, color: str) -> dict[str, Any]:
    return {
        "type": "TextBlock",
        "text": text,
        "size": "Large",
        "weight": "Bolder",
        "wrap": True,
        "color": color,
    }


def _adaptive_message(body: list[Any], actions: list[Any]) -> dict[str, Any]:
    """An Adaptive Card structure in the Workflows message envelope."""
    card = {
        "$schema": SCHEMA,
        "type": "AdaptiveCard",
        "version": "{{ card_version }}",
        "msteams": {"width": "Full"},
        "body": body,
        "actions": actions,
    }
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": card}],
    }


ADAPTIVE: Final = _adaptive_message(
    body=[
        _title(
            "{{ title }}", "{{ 'Good' if outcome in ('succeeded', 'recovered') else 'Attention' }}"
        ),
        {
            "$if": "recovers",
            "type": "TextBlock",
            "wrap": True,
            "text": "Task {{ task.name|teams_text }} is running again. It follows the"
            " {{ recovers.kind|teams_text }} at {{ recovers.occurred|teams_text }}.",
        },
        {
            "type": "FactSet",
            "facts": [
                _fact("Task", "{{ task.name|teams_text }}"),
                _fact("Task ID", "{{ task.id|teams_text }}"),
                _fact("App", "{{ app.name|teams_text }}"),
                _fact("App owner", "{{ app.owner|teams_text }}"),
                _fact(
                    "Result",
                    "{{ execution.status|teams_text }} ({{ execution.status_code|teams_text }})",
                ),
                _fact("Node", "{{ execution.node|teams_text }}"),
                _fact("User", "{{ user|teams_text }}"),
                _fact("Started", "{{ execution.started|teams_text }}"),
                _fact("Duration", "{{ execution.duration|teams_text }}"),
                _fact("Message", "{{ log_message|teams_text }}"),
            ],
        },
        *_excerpt_blocks("head"),
        *_excerpt_blocks("tail"),
        {
            "$if": "enrichment.status == 'partial'",
            "type": "TextBlock",
            "isSubtle": True,
            "wrap": True,
            "text": "Partial details: {{ enrichment.reasons|join('; ')|teams_text }}",
        },
    ],
    actions=[
        _open_url("Open QMC", "{{ links.qmc }}", "links.qmc"),
        _open_url("Open Hub", "{{ links.hub }}", "links.hub"),
        _open_url("Open app", "{{ links.app }}", "links.app"),
        {
            "$for": "link in links.generic",
            "$do": _open_url("{{ link.text }}", "{{ link.url }}"),
        },
    ],
)

MESSAGE_CARD: Final[dict[str, Any]] = {
    "@type": "MessageCard",
    "@context": "https://schema.org/extensions",
    "summary": "{{ title }}: {{ task.name|teams_text }}",
    "themeColor": "{{ '2EB886' if outcome in ('succeeded', 'recovered') else 'D70000' }}",
    "title": "{{ title }}",
    "sections": [
        {
            "activityTitle": "{{ task.name|teams_text }}",
            "activitySubtitle": "{% if recovers %}Running again after the {{ recovers.kind|teams_text }}"
            " at {{ recovers.occurred|teams_text }}{% endif %}",
            "facts": [
                {"name": "App", "value": "{{ app.name|teams_text }}"},
                {
                    "name": "Result",
                    "value": "{{ execution.status|teams_text }} ({{ execution.status_code|teams_text }})",
                },
                {"name": "Node", "value": "{{ execution.node|teams_text }}"},
                {"name": "Started", "value": "{{ execution.started|teams_text }}"},
                {"name": "Duration", "value": "{{ execution.duration|teams_text }}"},
            ],
        },
        {
            "$if": "excerpt.head",
            "title": "{{ excerpt.head_label }}",
            "text": "```\n{{ excerpt.head|unfenced }}\n```\n{{ excerpt.head_note }}",
        },
        {
            "$if": "excerpt.tail",
            "title": "{{ excerpt.tail_label }}",
            "text": "{{ excerpt.tail_note }}\n```\n{{ excerpt.tail|unfenced }}\n```",
        },
    ],
    "potentialAction": [
        {
            "$if": "links.qmc",
            "@type": "OpenUri",
            "name": "Qlik Sense QMC",
            "targets": [{"os": "default", "uri": "{{ links.qmc }}"}],
        },
        {
            "$if": "links.hub",
            "@type": "OpenUri",
            "name": "Qlik Sense Hub",
            "targets": [{"os": "default", "uri": "{{ links.hub }}"}],
        },
        {
            "$if": "links.app",
            "@type": "OpenUri",
            "name": "Open app",
            "targets": [{"os": "default", "uri": "{{ links.app }}"}],
        },
    ],
}


_DIGEST_SUBTITLE: Final = "{{ item.app_name|teams_text }} · {{ item.time }} · {{ item.event_id }}"
_DIGEST_ERROR: Final = "{{ item.error[:1000]|teams_text }}"
_DIGEST_FOOTER: Final = "Digest {{ digest_id }}, {{ count }} alerts since {{ since }}"

DIGEST_ADAPTIVE: Final = _adaptive_message(
    body=[
        _title("{{ title|teams_text }}", "{{ 'Attention' if problem else 'Good' }}"),
        {
            "$for": "item in items",
            "$do": {
                "type": "Container",
                "separator": True,
                "items": [
                    {
                        "type": "TextBlock",
                        "text": "{{ item.task_name|teams_text }}",
                        "weight": "Bolder",
                        "wrap": True,
                    },
                    {
                        "type": "TextBlock",
                        "text": _DIGEST_SUBTITLE,
                        "isSubtle": True,
                        "spacing": "None",
                        "wrap": True,
                    },
                    {
                        "type": "TextBlock",
                        "text": _DIGEST_ERROR,
                        "spacing": "None",
                        "wrap": True,
                    },
                    {
                        "$if": "item.links.app",
                        "type": "ActionSet",
                        "actions": [_open_url("Open app", "{{ item.links.app }}")],
                    },
                ],
            },
        },
        {
            "$if": "more",
            "type": "TextBlock",
            "text": "… and {{ more }} more",
            "weight": "Bolder",
            "wrap": True,
        },
        {"type": "TextBlock", "text": _DIGEST_FOOTER, "isSubtle": True, "wrap": True},
    ],
    actions=[
        _open_url("Open QMC", "{{ links.qmc }}", "links.qmc"),
        _open_url("Open Hub", "{{ links.hub }}", "links.hub"),
    ],
)

DIGEST_MESSAGE_CARD: Final[dict[str, Any]] = {
    "@type": "MessageCard",
    "@context": "https://schema.org/extensions",
    "summary": "{{ title|teams_text }}",
    "themeColor": "{{ 'D70000' if problem else '2EB886' }}",
    "title": "{{ title|teams_text }}",
    "sections": [
        {
            "$for": "item in items",
            "$do": {
                "activityTitle": "{{ item.task_name|teams_text }}",
                "activitySubtitle": _DIGEST_SUBTITLE,
                "text": _DIGEST_ERROR,
            },
        },
        {"$if": "more", "text": "… and {{ more }} more"},
        {"text": _DIGEST_FOOTER},
    ],
    "potentialAction": [
        {
            "$if": "links.qmc",
            "@type": "OpenUri",
            "name": "Qlik Sense QMC",
            "targets": [{"os": "default", "uri": "{{ links.qmc }}"}],
        },
    ],
}


def _excerpt(context: dict[str, Any], budget: int) -> dict[str, str]:
    script_log = context["script_log"]
    excerpt: dict[str, str] = {}
    for which, label, from_end in (("head", "First", False), ("tail", "Last", True)):
        lines = script_log[which]
        fitted = fit_lines(
            lines, budget, from_end=from_end, measure=_json_size, reason="Teams' message size limit"
        )
        excerpt[which] = "\n".join(fitted.lines)
        count = len(fitted.lines)
        excerpt[f"{which}_label"] = (
            f"{label} {count} line{'s' if count != 1 else ''} of the script log"
        )
        excerpt[f"{which}_note"] = fitted.note
    return excerpt


class TeamsTarget(ChatTarget):
    # adaptive_card: a Workflows webhook ("when a Teams webhook request is received");
    # message_card: a legacy Office 365 connector webhook.
    format: Literal["adaptive_card", "message_card"] = "adaptive_card"
    card_version: Literal["1.4", "1.5"] = "1.5"


class TeamsDestination(ChatDestination):
    platform = "teams"
    target: TeamsTarget

    def default_template(self, outcome: Outcome) -> Any:
        return ADAPTIVE if self.target.format == "adaptive_card" else MESSAGE_CARD

    def formatted(self, template: Any, context: dict[str, Any]) -> Any:
        context = {**context, "card_version": self.target.card_version}
        budget = INITIAL_EXCERPT_BYTES
        for _ in range(12):
            payload = templating.render(template, {**context, "excerpt": _excerpt(context, budget)})
            if not isinstance(payload, dict):
                raise templating.TemplateError("a Teams template must make a JSON object")
            size = len(encode(payload))
            if size <= PAYLOAD_LIMIT:
                return payload
            if budget == 0:
                break
            # Both excerpts shrink by half the overflow (and a margin for the notes).
            budget = max(0, budget - (size - PAYLOAD_LIMIT) // 2 - 256)
        raise templating.TemplateError(
            f"the card is {size} bytes even without the script log; Teams takes about 28 KB"
        )

    def default_digest_template(self) -> Any:
        return DIGEST_ADAPTIVE if self.target.format == "adaptive_card" else DIGEST_MESSAGE_CARD

    def digest_payload(self, template: Any, context: dict[str, Any]) -> tuple[Any, bool]:
        payload = templating.render(template, {**context, "card_version": self.target.card_version})
        if not isinstance(payload, dict):
            raise templating.TemplateError("a Teams template must make a JSON object")
        return payload, len(encode(payload)) <= PAYLOAD_LIMIT

    def basic(self, context: dict[str, Any]) -> Any:
        title = templating.teams_text(context["basic_title"][:TITLE_TEXT])
        links = context["links"]
        recovers = context["recovers"]
        if self.target.format == "message_card":
            return {
                "@type": "MessageCard",
                "@context": "https://schema.org/extensions",
                "summary": title,
                "themeColor": "0078D7",
                "title": title,
                "potentialAction": [
                    {"@type": "OpenUri", "name": name, "targets": [{"os": "default", "uri": url}]}
                    for name, url in (
                        ("Qlik Sense QMC", links["qmc"]),
                        ("Qlik Sense Hub", links["hub"]),
                    )
                    if url
                ],
            }
        body: list[dict[str, Any]] = [
            {"type": "TextBlock", "text": title, "size": "Large", "weight": "Bolder", "wrap": True}
        ]
        if recovers is not None:
            body.append(
                {
                    "type": "TextBlock",
                    "wrap": True,
                    "text": f"Running again after the {recovers['kind']} at {recovers['occurred']}.",
                }
            )
        card: dict[str, Any] = {
            "$schema": SCHEMA,
            "type": "AdaptiveCard",
            "version": self.target.card_version,
            "body": body,
            "actions": [
                {"type": "Action.OpenUrl", "title": title_, "url": url}
                for title_, url in (("Open QMC", links["qmc"]), ("Open Hub", links["hub"]))
                if url
            ],
        }
        return {
            "type": "message",
            "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": card}],
        }


def destinations(settings: list[TeamsTarget], context: Context) -> list[Destination]:
    """One destination per configured target, ``teams:<name>``."""
    return [TeamsDestination(target, service=context.service) for target in settings]
