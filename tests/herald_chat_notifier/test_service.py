"""The chat notifier as it runs: a real Mosquitto, events in, stand-in Slack and Teams webhooks
that validate what they get, receipts and dead letters out."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import REGISTRY

from herald_chat_notifier.service import build
from herald_chat_notifier.settings import ChatNotifierSettings
from herald_shared import samples
from herald_shared.events import Event, ScriptLog
from herald_shared.settings import BrokerSettings
from herald_testkit import contract
from herald_testkit.chat_standins import Answer, ChatStandins, Received
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer, Seen
from herald_testkit.subscribers import ServiceUnderTest, publish_events

SERVICE = "chat-notifier"
TOKEN = "XoXoSeCrEtWeBhOoKtOkEn"  # the secret part of every webhook URL in these tests


# --- helpers -------------------------------------------------------------------------------


def _settings(
    tmp_path: Path, *, slack: list[dict[str, Any]], teams: list[dict[str, Any]]
) -> ChatNotifierSettings:
    return ChatNotifierSettings.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "slack": slack,
            "teams": teams,
            "delivery": {"initial_backoff": 0.05, "max_backoff": 0.2, "shutdown_grace": 2.0},
        }
    )


_service = ServiceUnderTest(build, SERVICE)
_running, _receipts, _dead_letters = _service.running, _service.receipts, _service.dead_letters
_publish = publish_events


def _receipts_count(prefix: str, count: int) -> Callable[[list[Seen]], bool]:
    return lambda seen: len(_receipts(seen, prefix)) >= count


def _fallbacks(destination: str, reason: str) -> float:
    labels = {"service": SERVICE, "destination": destination, "reason": reason}
    return REGISTRY.get_sample_value("herald_chat_fallbacks_total", labels) or 0.0


def _renamed(event: Event, suffix: str) -> Event:
    return msgspec.structs.replace(event, event_id=f"{event.event_id}-{suffix}")


def _slack_texts(received: Received) -> list[str]:
    texts = []
    for block in received.payload["blocks"]:
        if isinstance(block.get("text"), dict):
            texts.append(block["text"]["text"])
        texts += [field["text"] for field in block.get("fields", [])]
    return texts


def _card(received: Received) -> dict[str, Any]:
    [attachment] = received.payload["attachments"]
    card: dict[str, Any] = attachment["content"]
    return card


def _card_texts(received: Received) -> list[str]:
    found = []
    for element in _card(received)["body"]:
        found.append(element.get("text") or element.get("codeSnippet") or "")
        found += [f"{fact['title']}: {fact['value']}" for fact in element.get("facts", [])]
    return found


# --- tests ---------------------------------------------------------------------------------


async def test_each_outcome_reaches_the_targets_that_want_it_on_both_platforms(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    failed, aborted = samples.sample_failed(), samples.sample_aborted()
    succeeded = _renamed(samples.sample_succeeded(), "plain")
    recovered = samples.sample_succeeded(recovers=failed)
    async with ChatStandins() as chat:
        settings = _settings(
            tmp_path,
            slack=[
                {"name": "ops", "webhook_url": chat.slack_url("slackops")},  # failed and aborted
                {
                    "name": "finance",
                    "webhook_url": chat.slack_url("finance"),
                    "outcomes": ["failed", "succeeded", "recovered"],
                    "when": {"task_tags": ["Finance"]},
                    "channel": "#finance-bi",
                },
                {
                    "name": "hr",
                    "webhook_url": chat.slack_url("hr"),
                    "outcomes": ["failed", "aborted", "succeeded", "recovered"],
                    "when": {"task_names": ["HR *"]},
                },
            ],
            teams=[
                {
                    "name": "ops",
                    "webhook_url": chat.teams_url("teamsops"),
                    "outcomes": ["aborted", "recovered"],
                },
                {
                    "name": "legacy",
                    "webhook_url": chat.connector_url("legacy"),
                    "format": "message_card",
                    "outcomes": ["failed"],
                },
            ],
        )
        async with (
            Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
            _running(settings, broker_settings),
        ):
            await _publish(mosquitto, prefix, failed, aborted, succeeded, recovered)
            # ops: 2, finance: 3, teams ops: 2, legacy: 1
            await observer.wait_for(_receipts_count(prefix, 8))

    assert all(r.accepted for r in chat.received), [r.error for r in chat.received]
    titles = {
        token: [r.payload["blocks"][0]["text"]["text"] for r in chat.accepted(token)]
        for token in ("slackops", "finance", "hr")
    }
    assert sorted(titles["slackops"]) == ["Qlik Sense reload aborted", "Qlik Sense reload failed"]
    assert sorted(titles["finance"]) == [
        "Qlik Sense reload failed",
        "Qlik Sense reload succeeded",
        "Qlik Sense task is running again",
    ]
    assert titles["hr"] == []
    assert {r.payload["channel"] for r in chat.accepted("finance")} == {"#finance-bi"}
    [slack_recovery] = [r for r in chat.accepted("finance") if "running again" in r.body.decode()]
    recovery_text = "\n".join(_slack_texts(slack_recovery))
    assert "is running again" in recovery_text
    assert "follows the failure at 2021-02-16 08:24:59 UTC" in recovery_text

    teams = chat.accepted("teamsops")
    assert [_card(r)["body"][0]["text"] for r in teams] == [
        "Qlik Sense reload aborted",
        "Qlik Sense task is running again",
    ]
    assert all(_card(r)["version"] == "1.5" for r in teams)
    assert "follows the failure at 2021-02-16 08:24:59 UTC" in "\n".join(_card_texts(teams[1]))
    actions = {a["title"]: a["url"] for a in _card(teams[0])["actions"]}
    assert actions["Open QMC"] == "https://sense.example.com/qmc"
    assert actions["Reload runbook"] == "https://wiki.example.com/qlik/reload-runbook"
    [legacy] = chat.accepted("legacy")
    assert legacy.payload["@type"] == "MessageCard"
    assert legacy.payload["title"] == "Qlik Sense reload failed"
    # Each request names its alert in X-Herald-Event-Id: which event, and whether sent twice.
    assert sorted(r.event_id for r in chat.accepted("slackops")) == sorted(
        [failed.event_id, aborted.event_id]
    )
    assert [r.event_id for r in teams] == [aborted.event_id, recovered.event_id]
    assert legacy.event_id == failed.event_id

    receipts = _receipts(observer.seen, prefix)
    assert {r.outcome for r in receipts} == {"delivered"}
    assert sorted(r.destination for r in receipts) == sorted(
        ["slack:ops"] * 2 + ["slack:finance"] * 3 + ["teams:ops"] * 2 + ["teams:legacy"]
    )


NASTY_LINES = [
    r"Path not found: \\fileserver\qlik\data\sales_2021.qvd",
    'SET vQuote = "It\'s \\"quoted\\"";',
    "Col1\tCol2\tCol3",
    "Emoji: 🚀 ✅ 😱 and Ünïcödé",
    "<b>bold</b> <script>alert('x')</script> <!channel> & more",
    "A literal backslash-n: \\n stays two characters",
]


def _nasty_event() -> Event:
    failed = samples.sample_failed()
    lines = [f"{n:05d} {NASTY_LINES[n % len(NASTY_LINES)]}" for n in range(5000)]
    text = "\r\n".join(lines)
    # Ingest splits on LF; a CRLF log keeps the CRs, which must not reach the message.
    crlf_lines = [line + "\r" for line in lines]
    script_log = ScriptLog(
        head=crlf_lines[:2500],
        tail=crlf_lines[2500:],
        total_lines=5000,
        size_bytes=len(text.encode()),
        full_text=text,
    )
    return msgspec.structs.replace(failed, script_log=script_log)


async def test_nasty_script_logs_arrive_valid_readable_and_within_limits(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    event = _nasty_event()
    async with ChatStandins() as chat:
        lines = {"head_lines": 2500, "tail_lines": 2500}
        short = {"head_lines": 6, "tail_lines": 6}
        settings = _settings(
            tmp_path,
            slack=[
                {"name": "long", "webhook_url": chat.slack_url("slacklong"), **lines},
                {"name": "short", "webhook_url": chat.slack_url("slackshort"), **short},
            ],
            teams=[
                {"name": "long", "webhook_url": chat.teams_url("teamslong"), **lines},
                {"name": "short", "webhook_url": chat.teams_url("teamsshort"), **short},
            ],
        )
        async with (
            Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
            _running(settings, broker_settings),
        ):
            await _publish(mosquitto, prefix, event)
            await observer.wait_for(_receipts_count(prefix, 4))

    # Valid: the validating stand-ins accepted every formatted message at the first try.
    assert sorted(r.status for r in chat.received) == [200, 200, 202, 202]
    receipts = _receipts(observer.seen, prefix)
    assert all(r.detail and r.detail.startswith("formatted message sent") for r in receipts)

    [short_slack] = chat.accepted("slackshort")
    text = html.unescape("\n".join(_slack_texts(short_slack)))
    for line in NASTY_LINES:
        assert line in text  # every character arrives as it was in the log
    assert "\r" not in text
    assert "not shown" not in text

    [long_slack] = chat.accepted("slacklong")
    texts = _slack_texts(long_slack)
    head = next(t for t in texts if t.startswith("*First"))
    tail = next(t for t in texts if t.startswith("*Last"))
    assert len(head) <= 3000
    assert len(tail) <= 3000
    assert "```\n00000 " in head  # a real line break after the fence, not the text "\n"
    assert head.count("\n") > 20
    assert "lines not shown (Slack's 3000-character limit)" in head
    assert "lines not shown (Slack's 3000-character limit)" in tail
    assert (
        tail.rstrip("`")
        .rstrip()
        .endswith(
            f"04999 {NASTY_LINES[4999 % 6]}".replace("&", "&amp;")
            .replace("<", "&lt;")
            .replace(">", "&gt;")
        )
    )
    assert "&lt;!channel&gt;" in head  # Slack mrkdwn escaping: no channel-wide ping

    [short_teams] = chat.accepted("teamsshort")
    snippets = [e["codeSnippet"] for e in _card(short_teams)["body"] if e["type"] == "CodeBlock"]
    assert len(snippets) == 2
    for line in NASTY_LINES:
        assert line in "\n".join(snippets)
    assert "\r" not in "".join(snippets)

    [long_teams] = chat.accepted("teamslong")
    assert len(long_teams.body) <= 28 * 1024
    notes = [e["text"] for e in _card(long_teams)["body"] if "not shown" in e.get("text", "")]
    assert len(notes) == 2
    assert all("Teams' message size limit" in note for note in notes)
    long_snippets = [
        e["codeSnippet"] for e in _card(long_teams)["body"] if e["type"] == "CodeBlock"
    ]
    assert long_snippets[0].startswith("00000 ")
    assert long_snippets[0].count("\n") > 20
    assert long_snippets[1].endswith(f"04999 {NASTY_LINES[4999 % 6]}")


async def test_a_rejected_or_unrenderable_formatted_message_is_replaced_by_the_basic_one(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "failed.yaml").write_text(
        "blocks:\n  - type: header\n    text: {type: plain_text, text: '{{ no_such_field.name }}'}\n"
    )
    failed = samples.sample_failed()
    before = {
        ("slack:rejected", "rejected"): _fallbacks("slack:rejected", "rejected"),
        ("slack:broken", "render"): _fallbacks("slack:broken", "render"),
        ("teams:rejected", "rejected"): _fallbacks("teams:rejected", "rejected"),
    }
    async with ChatStandins() as chat:
        settings = _settings(
            tmp_path,
            slack=[
                {"name": "rejected", "webhook_url": chat.slack_url("slackrejected")},
                {
                    "name": "broken",
                    "webhook_url": chat.slack_url("slackbroken"),
                    "template_dir": str(templates),
                },
            ],
            teams=[{"name": "rejected", "webhook_url": chat.teams_url("teamsrejected")}],
        )
        # The formatted messages to the two "rejected" targets get 400.
        chat.respond_with(Answer(400, "invalid_blocks"), to="slackrejected")
        chat.respond_with(
            Answer(400, '{"error": {"code": "InvalidRequestContent"}}'), to="teamsrejected"
        )
        async with (
            Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
            _running(settings, broker_settings),
        ):
            await _publish(mosquitto, prefix, failed)
            await observer.wait_for(_receipts_count(prefix, 3))

    receipts = {r.destination: r for r in _receipts(observer.seen, prefix)}
    assert {r.outcome for r in receipts.values()} == {"delivered"}
    assert all(r.attempts == 1 for r in receipts.values())  # the fallback is in the same attempt
    for token in ("slackrejected", "teamsrejected"):
        first, second = chat.to(token)
        assert first.status == 400
        assert second.accepted
    [slack_basic] = chat.accepted("slackrejected")
    assert [b["type"] for b in slack_basic.payload["blocks"]] == ["header", "divider", "actions"]
    assert slack_basic.payload["blocks"][0]["text"]["text"] == (
        "Qlik Sense reload failed: Manually triggered reload of Test failing reloads 2"
    )
    [broken] = chat.to("slackbroken")
    assert broken.accepted
    assert broken.payload["blocks"][0]["type"] == "header"
    [teams_basic] = chat.accepted("teamsrejected")
    assert [a["title"] for a in _card(teams_basic)["actions"]] == ["Open QMC", "Open Hub"]
    assert "rejected: HTTP 400: invalid_blocks" in (receipts["slack:rejected"].detail or "")
    assert "the template failed" in (receipts["slack:broken"].detail or "")
    for (destination, reason), value in before.items():
        assert _fallbacks(destination, reason) == value + 1


async def test_the_rate_limit_suppresses_a_second_message_for_the_same_task(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    first = samples.sample_failed()
    second = _renamed(first, "again")
    async with ChatStandins() as chat:
        settings = _settings(
            tmp_path, slack=[{"name": "ops", "webhook_url": chat.slack_url("ops")}], teams=[]
        )
        async with (
            Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
            _running(settings, broker_settings),
        ):
            await _publish(mosquitto, prefix, first, second)
            await observer.wait_for(_receipts_count(prefix, 2))

    outcomes = {r.event_id: r for r in _receipts(observer.seen, prefix)}
    assert outcomes[first.event_id].outcome == "delivered"
    assert outcomes[second.event_id].outcome == "suppressed"
    assert "rate limit: one per 300 s" in (outcomes[second.event_id].detail or "")
    assert len(chat.received) == 1


async def test_retry_after_is_honoured_and_a_500_and_a_timeout_are_retried_until_delivered(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    failed = samples.sample_failed()
    async with ChatStandins() as chat:
        settings = _settings(
            tmp_path,
            slack=[
                {
                    "name": "ops",
                    "webhook_url": chat.slack_url("ops"),
                    "rate_limit": None,
                    "timeout": 0.5,
                }
            ],
            teams=[],
        )
        chat.respond_with(
            Answer(429, "rate_limited", {"Retry-After": "1"}),
            Answer(500, "internal_error"),
            Answer(200, "ok", delay=3.0),  # slower than the target's timeout
        )
        async with (
            Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
            _running(settings, broker_settings),
        ):
            await _publish(mosquitto, prefix, failed)
            await observer.wait_for(_receipts_count(prefix, 1))

    [receipt] = _receipts(observer.seen, prefix)
    assert receipt.outcome == "delivered"
    assert receipt.attempts == 4
    assert [r.status for r in chat.received[:2]] == [429, 500]
    assert chat.received[3].status == 200
    assert chat.received[1].at - chat.received[0].at >= 1.0  # no earlier than Retry-After


async def test_other_4xx_are_dead_lettered_with_the_error_text_and_urls_never_show(
    mosquitto: Mosquitto,
    broker_settings: BrokerSettings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    prefix = broker_settings.topic_prefix
    failed = samples.sample_failed()
    async with ChatStandins() as chat:
        settings = _settings(
            tmp_path,
            slack=[{"name": "gone", "webhook_url": chat.slack_url(TOKEN)}],
            teams=[{"name": "gone", "webhook_url": chat.teams_url(TOKEN)}],
        )
        chat.respond_with(
            Answer(500, "oops"),
            Answer(500, "oops"),
            Answer(404, "no_service"),
            Answer(404, "no_service"),
        )
        async with (
            Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
            _running(settings, broker_settings),
        ):
            await _publish(mosquitto, prefix, failed)
            await observer.wait_for(
                lambda seen: (
                    len(_dead_letters(seen, prefix)) >= 2 and _receipts_count(prefix, 2)(seen)
                )
            )

    letters = {letter.destination: letter for letter in _dead_letters(observer.seen, prefix)}
    assert set(letters) == {"slack:gone", "teams:gone"}
    for letter in letters.values():
        assert letter.reason == "HTTP 404: no_service"
        assert letter.attempts == 2
        assert letter.event == failed
    # The token reached the stand-in (it is in the URL), but nowhere Herald reports to.
    assert all(TOKEN in r.path for r in chat.received)
    published = "\n".join(seen.payload.decode() for seen in observer.seen)
    contract.assert_hidden([TOKEN], published=published, log=caplog.text, settings=settings)
