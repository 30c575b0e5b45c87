"""Stand-in Slack and Microsoft Teams webhook servers on loopback that check payloads as the
platforms do, record what they accept (with the X-Herald-Event-Id header that names the alert),
and misbehave on request.

- Slack incoming webhooks (``/slack/services/…``): Block Kit block types, required fields and
  limits (50 blocks; section text 3000, fields 10 × 2000; header plain_text 150; actions 25
  elements; button text 75, URL 3000; context 10 elements), answering 400 with Slack's error
  text (``invalid_payload``, ``no_text``, ``invalid_blocks``) and 200 ``ok`` when accepted.
- Teams Workflows (``/teams/workflows/…``): the message envelope with an Adaptive Card
  attachment (``type``, ``version`` up to 1.5, ``body`` required, known element and action
  types), 413 over 28 KB, 400 with an error object otherwise, 202 when accepted.
- Teams legacy connectors (``/teams/connector/…``): a MessageCard; 200 ``1`` when accepted.

Scripted answers (``respond_with``) take precedence over validation: 400, 429 with Retry-After,
500, or a delay.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from herald_testkit.http import LoopbackServer

TEAMS_SIZE_LIMIT = 28 * 1024


@dataclass
class Answer:
    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    platform: str  # slack, teams, connector
    path: str
    body: bytes
    at: float  # time.monotonic() when it arrived
    status: int = 0
    error: str = ""
    event_id: str = ""  # the X-Herald-Event-Id header: which alert this message carries

    @property
    def payload(self) -> Any:
        return json.loads(self.body)

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


class Invalid(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


# --- Slack -----------------------------------------------------------------------------------

_SLACK_BLOCKS = {"section", "header", "divider", "actions", "context", "image", "rich_text"}
_SLACK_KEYS = {
    "section": {"type", "text", "fields", "accessory", "block_id", "expand"},
    "header": {"type", "text", "block_id"},
    "divider": {"type", "block_id"},
    "actions": {"type", "elements", "block_id"},
    "context": {"type", "elements", "block_id"},
    "image": {"type", "image_url", "alt_text", "title", "block_id"},
    "rich_text": {"type", "elements", "block_id"},
}


def _slack_text(obj: Any, limit: int, *, plain_only: bool = False) -> None:
    if not isinstance(obj, dict) or obj.get("type") not in (
        ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    ):
        raise Invalid(400, "invalid_blocks")
    if set(obj) - {"type", "text", "emoji", "verbatim"}:
        raise Invalid(400, "invalid_blocks")
    text = obj.get("text")
    if not isinstance(text, str) or not 1 <= len(text) <= limit:
        raise Invalid(400, "invalid_blocks")


def _slack_button(element: Any) -> None:
    if not isinstance(element, dict) or element.get("type") != "button":
        raise Invalid(400, "invalid_blocks")
    if set(element) - {"type", "text", "url", "style", "action_id", "value", "accessibility_label"}:
        raise Invalid(400, "invalid_blocks")
    _slack_text(element.get("text"), 75, plain_only=True)
    url = element.get("url")
    if url is not None and (not isinstance(url, str) or not 1 <= len(url) <= 3000):
        raise Invalid(400, "invalid_blocks")
    if element.get("style") not in (None, "primary", "danger"):
        raise Invalid(400, "invalid_blocks")


def validate_slack(payload: Any) -> None:
    if not isinstance(payload, dict):
        raise Invalid(400, "invalid_payload")
    blocks = payload.get("blocks")
    text = payload.get("text")
    if not blocks and not (isinstance(text, str) and text.strip()):
        raise Invalid(400, "no_text")
    if blocks is None:
        return
    if not isinstance(blocks, list) or len(blocks) > 50:
        raise Invalid(400, "invalid_blocks")
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in _SLACK_BLOCKS or set(block) - _SLACK_KEYS[kind]:
            raise Invalid(400, "invalid_blocks")
        if len(block.get("block_id", "")) > 255:
            raise Invalid(400, "invalid_blocks")
        if kind == "header":
            _slack_text(block.get("text"), 150, plain_only=True)
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                raise Invalid(400, "invalid_blocks")
            if "text" in block:
                _slack_text(block["text"], 3000)
            if "fields" in block:
                fields = block["fields"]
                if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
                    raise Invalid(400, "invalid_blocks")
                for item in fields:
                    _slack_text(item, 2000)
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
                raise Invalid(400, "invalid_blocks")
            for element in elements:
                _slack_button(element)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                raise Invalid(400, "invalid_blocks")
            for element in elements:
                _slack_text(element, 3000)


# --- Teams -----------------------------------------------------------------------------------

_CARD_ELEMENTS = {
    "TextBlock",
    "FactSet",
    "ActionSet",
    "Container",
    "ColumnSet",
    "Image",
    "CodeBlock",
    "RichTextBlock",
}
_CARD_ACTIONS = {"Action.OpenUrl", "Action.ShowCard", "Action.ToggleVisibility"}


def _teams_error(message: str) -> Invalid:
    return Invalid(
        400, json.dumps({"error": {"code": "InvalidRequestContent", "message": message}})
    )


def _card_action(action: Any) -> None:
    if not isinstance(action, dict) or action.get("type") not in _CARD_ACTIONS:
        raise _teams_error(
            f"unknown action type {action.get('type') if isinstance(action, dict) else action!r}"
        )
    if action["type"] == "Action.OpenUrl" and not (
        isinstance(action.get("url"), str) and action["url"]
    ):
        raise _teams_error("Action.OpenUrl requires a url")


def _card_element(element: Any) -> None:
    kind = element.get("type") if isinstance(element, dict) else None
    if kind not in _CARD_ELEMENTS:
        raise _teams_error(f"unknown element type {kind!r}")
    assert isinstance(element, dict)
    if kind == "TextBlock" and not isinstance(element.get("text"), str):
        raise _teams_error("TextBlock requires text")
    if kind == "CodeBlock" and not isinstance(element.get("codeSnippet"), str):
        raise _teams_error("CodeBlock requires codeSnippet")
    if kind == "FactSet":
        facts = element.get("facts")
        if not isinstance(facts, list) or not all(
            isinstance(f, dict)
            and isinstance(f.get("title"), str)
            and isinstance(f.get("value"), str)
            for f in facts
        ):
            raise _teams_error("FactSet requires facts with title and value")
    if kind == "ActionSet":
        for action in element.get("actions") or [None]:
            _card_action(action)
    if kind == "Container":
        for item in element.get("items") or []:
            _card_element(item)


def validate_adaptive(payload: Any, size: int) -> None:
    if size > TEAMS_SIZE_LIMIT:
        raise Invalid(413, "RequestEntityTooLarge: the message is larger than 28 KB")
    if not isinstance(payload, dict) or payload.get("type") != "message":
        raise _teams_error("the payload must be a message with attachments")
    attachments = payload.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        raise _teams_error("attachments are required")
    for attachment in attachments:
        if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
            raise _teams_error("contentType must be application/vnd.microsoft.card.adaptive")
        card = attachment.get("content")
        if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
            raise _teams_error("content.type must be AdaptiveCard")
        version = card.get("version")
        try:
            major, minor = (int(part) for part in str(version).split("."))
        except ValueError:
            raise _teams_error(f"invalid version {version!r}") from None
        if (major, minor) > (1, 5) or major < 1:
            raise _teams_error(f"version {version} is not supported (at most 1.5)")
        body = card.get("body")
        if not isinstance(body, list):
            raise _teams_error("body is required")
        for element in body:
            _card_element(element)
        for action in card.get("actions") or []:
            _card_action(action)


def validate_message_card(payload: Any) -> None:
    if not isinstance(payload, dict) or payload.get("@type") != "MessageCard":
        raise Invalid(400, "Summary or Text is required.")
    if not any(
        isinstance(payload.get(key), str) and payload[key] for key in ("summary", "text", "title")
    ):
        raise Invalid(400, "Summary or Text is required.")


# --- the server ------------------------------------------------------------------------------


class ChatStandins(LoopbackServer):
    """Slack and Teams on one loopback port; URLs by path."""

    client_max_size = 4 * 1024 * 1024  # room for any payload: the stand-in's checks decide

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.received: list[Received] = []
        self._scripts: dict[str, deque[Answer]] = {}

    def slack_url(self, token: str) -> str:
        return f"http://{self.host}:{self.port}/slack/services/T000/B000/{token}"

    def teams_url(self, token: str) -> str:
        return (
            f"http://{self.host}:{self.port}/teams/workflows/{token}/triggers/manual/paths/invoke"
        )

    def connector_url(self, token: str) -> str:
        return f"http://{self.host}:{self.port}/teams/connector/{token}"

    def respond_with(self, *answers: Answer, to: str = "") -> None:
        """Answer the next requests (to URLs containing ``to``, or any) with these, in order,
        instead of validating them."""
        self._scripts.setdefault(to, deque()).extend(answers)

    def _scripted(self, path: str) -> Answer | None:
        for key, script in self._scripts.items():
            if key in path and script:
                return script.popleft()
        return None

    def accepted(self, token: str | None = None) -> list[Received]:
        return [r for r in self.received if r.accepted and (token is None or token in r.path)]

    def to(self, token: str) -> list[Received]:
        return [r for r in self.received if token in r.path]

    async def _handle(self, request: web.Request) -> web.Response:
        platform = request.match_info["platform"]
        received = Received(platform, request.path, await request.read(), time.monotonic())
        received.event_id = request.headers.get("X-Herald-Event-Id", "")
        self.received.append(received)
        self._changed.set()
        answer = self._scripted(request.path)
        if answer is not None:
            if answer.delay:
                await asyncio.sleep(answer.delay)
            return self._answer(received, answer.status, answer.body, answer.headers)
        try:
            payload = json.loads(received.body)
        except ValueError:
            return self._answer(received, 400, "invalid_payload")
        try:
            if platform == "slack":
                validate_slack(payload)
            elif platform == "workflows":
                validate_adaptive(payload, len(received.body))
            else:
                validate_message_card(payload)
        except Invalid as error:
            return self._answer(received, error.status, error.text)
        if platform == "slack":
            return self._answer(received, 200, "ok")
        if platform == "workflows":
            return self._answer(received, 202, "")
        return self._answer(received, 200, "1")

    def _answer(
        self, received: Received, status: int, text: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        received.status = status
        received.error = "" if 200 <= status < 300 else text
        self._changed.set()
        return web.Response(status=status, text=text, headers=headers)

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/{platform:slack}/services/{tail:.*}", self._handle)
        app.router.add_post("/teams/{platform:workflows|connector}/{tail:.*}", self._handle)
