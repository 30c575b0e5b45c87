"""Slack and Teams digests, with a real Mosquitto and stand-in webhooks that refuse what the real
platforms refuse: a storm becomes one message whose rows fit the platform's limits (Slack's 50
blocks and 3000-character sections, Teams' 28 KB), with "and N more" for the rest, and whose
receipt carries every event id."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec

from herald_chat_notifier.service import build
from herald_chat_notifier.settings import ChatNotifierSettings
from herald_shared.delivery.receipts import Receipt
from herald_shared.events import TaskFailed
from herald_shared.settings import BrokerSettings
from herald_testkit.chat_standins import ChatStandins, Received
from herald_testkit.made_events import failure
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer, Seen
from herald_testkit.subscribers import ServiceUnderTest, publish_events

SERVICE = "chat-notifier"
TOKEN = "DiGeStSeCrEtWeBhOoKtOkEn"
GROUP = {"by": ["stream"], "interval": "3s", "threshold": 0, "max_items": 50}

_service = ServiceUnderTest(build, SERVICE)


def _settings(tmp_path: Path, **platforms: list[dict[str, Any]]) -> ChatNotifierSettings:
    return ChatNotifierSettings.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            **platforms,
            "delivery": {"initial_backoff": 0.05, "max_backoff": 0.2, "shutdown_grace": 2.0},
        }
    )


def _storm(count: int, error_length: int) -> list[TaskFailed]:
    """Failures in one stream, each with a long error line (a long logMessage)."""
    return [
        msgspec.structs.replace(failure(n, "Finance"), log_message=f"{n:04d} " + "x" * error_length)
        for n in range(1, count + 1)
    ]


def _digest_receipt(seen: list[Seen], prefix: str) -> Receipt | None:
    found = [r for r in _service.receipts(seen, prefix) if r.kind == "digest"]
    return found[0] if found else None


def _listed(text: str) -> list[str]:
    return re.findall(r"task_failed-[0-9a-f]{32}", text)


async def _storm_through(
    tmp_path: Path,
    mosquitto: Mosquitto,
    broker_settings: BrokerSettings,
    chat: ChatStandins,
    platform: str,
    storm: list[TaskFailed],
) -> tuple[Received, Receipt]:
    """The storm sent to one target of ``platform``: its digest as the stand-in got it, and
    the digest's receipt; checks that the first alert went alone and the rest are grouped."""
    prefix = broker_settings.topic_prefix
    url = chat.slack_url(TOKEN) if platform == "slack" else chat.teams_url(TOKEN)
    target = {"name": "ops", "webhook_url": url, "rate_limit": None, "group": GROUP}
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        _service.running(_settings(tmp_path, **{platform: [target]}), broker_settings),
    ):
        await publish_events(mosquitto, prefix, *storm)
        seen = await observer.wait_for(lambda s: _digest_receipt(s, prefix) is not None, 30)
    receipt = _digest_receipt(seen, prefix)
    assert receipt is not None
    assert receipt.outcome == "delivered"
    per_alert = [r for r in _service.receipts(seen, prefix) if r.kind != "digest"]
    assert sorted(r.outcome for r in per_alert) == ["delivered"] + ["grouped"] * (len(storm) - 1)
    assert receipt.event_ids == [event.event_id for event in storm[1:]]
    received = chat.to(TOKEN)
    assert [r.accepted for r in received] == [True, True]  # the stand-in took both as valid
    alone, digest = received
    assert alone.event_id == storm[0].event_id
    assert digest.event_id == receipt.event_id  # the X-Herald-Event-Id header
    return digest, receipt


async def test_a_slack_digest_fits_50_blocks_and_3000_character_sections_and_says_how_many_more(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    storm = _storm(80, error_length=2500)
    async with ChatStandins() as chat:
        digest, receipt = await _storm_through(
            tmp_path, mosquitto, broker_settings, chat, "slack", storm
        )
    blocks = digest.payload["blocks"]
    assert len(blocks) <= 50
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["text"].startswith("79 reload tasks failed in Finance since ")
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert all(len(text) <= 3000 for text in sections)
    shown = [event_id for text in sections for event_id in _listed(text)]
    assert shown == (receipt.event_ids or [])[: len(shown)]
    more = [e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]]
    assert f"… and {79 - len(shown)} more" in more
    assert 40 < len(shown) < 50  # the blocks, not max_items, were the limit


async def test_a_teams_digest_stays_under_28_kb_and_says_how_many_more(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    storm = _storm(60, error_length=900)
    async with ChatStandins() as chat:
        digest, receipt = await _storm_through(
            tmp_path, mosquitto, broker_settings, chat, "teams", storm
        )
    assert len(digest.body) <= 28 * 1024
    [attachment] = digest.payload["attachments"]
    body = attachment["content"]["body"]
    assert body[0]["text"].startswith("59 reload tasks failed in Finance since ")
    rows = [element for element in body if element["type"] == "Container"]
    shown = [e for row in rows for item in row["items"] for e in _listed(item.get("text", ""))]
    assert shown == (receipt.event_ids or [])[: len(shown)]
    assert 0 < len(shown) < 50  # the size, not max_items, was the limit
    texts = [element.get("text") for element in body if element["type"] == "TextBlock"]
    assert f"… and {59 - len(shown)} more" in texts
