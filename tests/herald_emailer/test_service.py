"""The emailer as it runs: a real Mosquitto, events in, mail out through a real SMTP server
that requires STARTTLS and AUTH, receipts and dead letters on the broker."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import REGISTRY

from herald_emailer.service import build, send_test_message
from herald_emailer.settings import EmailerSettings
from herald_shared import events, samples
from herald_shared.events import TaskAborted, TaskFailed, TaskSucceeded
from herald_shared.settings import BrokerSettings
from herald_testkit import contract
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer, Seen
from herald_testkit.smtp_server import ReceivedMail, SmtpServer
from herald_testkit.subscribers import ServiceUnderTest, publish_events

SERVICE = "emailer"
SENDER = "Qlik Sense alerts <alerts@example.com>"

# --- helpers -------------------------------------------------------------------------------


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _settings(
    tmp_path: Path, smtp: SmtpServer, overrides: dict[str, Any] | None = None
) -> EmailerSettings:
    [(user, password)] = smtp.users.items()
    password_file = tmp_path / "smtp-password"
    password_file.write_text(password + "\n")
    data: dict[str, Any] = {
        "state_dir": str(tmp_path / "state"),
        "from_address": SENDER,
        "smtp": {
            "host": smtp.host,
            "port": smtp.port,
            "tls": "starttls",
            "username": user,
            "password_file": str(password_file),  # a mounted Kubernetes Secret
            "ca_file": str(smtp.ca_file),
            "timeout": 5,
        },
        "delivery": {
            "initial_backoff": 0.05,
            "max_backoff": 0.3,
            "deadline": 3600,
            "shutdown_grace": 2,
        },
    }
    return EmailerSettings.model_validate(_merge(data, overrides or {}))


_service = ServiceUnderTest(build, SERVICE)
_running, _receipts, _dead_letters = _service.running, _service.receipts, _service.dead_letters
_publish = publish_events


def _receipt_count(prefix: str, count: int) -> Callable[[list[Seen]], bool]:
    return lambda seen: len(_receipts(seen, prefix)) >= count


def _attempts(destination: str, result: str) -> float:
    labels = {"service": SERVICE, "destination": destination, "result": result}
    return REGISTRY.get_sample_value("herald_delivery_attempts_total", labels) or 0.0


def _deliveries(destination: str, outcome: str) -> float:
    labels = {"service": SERVICE, "destination": destination, "outcome": outcome}
    return REGISTRY.get_sample_value("herald_deliveries_total", labels) or 0.0


async def _eventually(condition: Callable[[], bool], within: float = 20.0) -> None:
    async def until() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(until(), within)


def _with_task(event: Any, **changes: Any) -> Any:
    return msgspec.structs.replace(event, task=msgspec.structs.replace(event.task, **changes))


def _another_execution(event: TaskFailed, n: int) -> TaskFailed:
    execution_id = f"{n:08d}-0000-4000-8000-000000000000"
    return msgspec.structs.replace(
        event,
        event_id=events.event_id_for("task_failed", execution_id),
        execution=msgspec.structs.replace(event.execution, id=execution_id),
    )


async def _alert_ops_of_a_failure_of(
    task_name: str,
    mosquitto: Mosquitto,
    broker_settings: BrokerSettings,
    smtp: SmtpServer,
    tmp_path: Path,
) -> list[Any]:
    """One failure of a task so named, mailed to ops@example.com only; its dead letters."""
    prefix = broker_settings.topic_prefix
    settings = _settings(
        tmp_path,
        smtp,
        {"failed": {"recipients": ["ops@example.com"], "app_owner": {"enabled": False}}},
    )
    failed = _with_task(samples.sample_failed(), name=task_name, custom_properties={})
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        _running(settings, broker_settings),
    ):
        await _publish(mosquitto, prefix, failed)
        await observer.wait_for(
            lambda seen: bool(_receipts(seen, prefix) or _dead_letters(seen, prefix))
        )
    return list(_dead_letters(observer.seen, prefix))


def _parts(mail: ReceivedMail) -> tuple[str, str]:
    message = mail.message
    assert message.get_content_type() == "multipart/alternative"
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    assert isinstance(text_part, EmailMessage)
    assert isinstance(html_part, EmailMessage)
    text, html = text_part.get_content(), html_part.get_content()
    assert isinstance(text, str)
    assert isinstance(html, str)
    return text, html


def _assert_reads_well(mail: ReceivedMail) -> None:
    """Both parts present, the HTML a whole document, no field empty, None or unrendered."""
    text, html = _parts(mail)
    assert re.match(r"\s*<!DOCTYPE html>\s*<html", html)
    assert html.rstrip().endswith("</html>")
    for marker in ("<head>", "</head>", "<body", "</body>", '<meta charset="utf-8">'):
        assert marker in html
    for body in (text, html, str(mail.message["Subject"])):
        assert "None" not in body
        assert "{{" not in body
        assert "{%" not in body
        assert "Undefined" not in body
    assert not re.search(r"<td[^>]*>\s*</td>", html)
    assert not re.search(r"^[A-Za-z ]+:\s*$", text, re.MULTILINE)  # a label without a value
    for label in ("Task", "App", "App owner", "Node", "Status", "Duration", "Started", "Stopped"):
        assert re.search(rf"^{label}:\s+\S", text, re.MULTILINE), label
        assert f">{label}</td>" in html
    assert "Execution details" in html
    assert "Changing task state from Triggered to Started" in html
    assert '<pre style="' in html
    assert "Consolas" in html  # the script log in monospace
    assert "https://sense.example.com/qmc" in html
    assert "https://sense.example.com/hub" in html
    assert "https://wiki.example.com/qlik/reload-runbook" in html
    assert mail.tls
    assert mail.login == "alerts"


# --- tests ---------------------------------------------------------------------------------

_RECIPIENT_PROPERTIES = {
    "Butler_FailedAlertSendToEmail": [
        "finance-bi@example.com",
        "FINANCE-BI@example.com",  # the same mailbox: one message only
        "not an address",  # skipped with a warning; the others still get theirs
    ],
    "Butler_AbortedAlertSendToEmail": ["aborts@example.com"],
    "Butler_SuccessAlertSendToEmail": ["success@example.com"],
}


async def test_each_outcome_reaches_exactly_its_recipients_with_its_subject_and_both_parts(
    mosquitto: Mosquitto,
    broker_settings: BrokerSettings,
    smtp: SmtpServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    prefix = broker_settings.topic_prefix
    settings = _settings(
        tmp_path,
        smtp,
        {
            "failed": {"recipients": ["ops@example.com"]},  # + property + owner (include_all)
            "aborted": {
                "recipients": ["Ops@Example.com"],
                "app_owner": {"exclude": [{"directory": "LAB", "user_id": "goran"}]},
            },
            "succeeded": {"enabled": True, "recipients": ["ops@example.com"]},
            # recovered: the defaults, i.e. the failure's property and the owner
        },
    )
    failed = _with_task(samples.sample_failed(), custom_properties=_RECIPIENT_PROPERTIES)
    aborted = _with_task(samples.sample_aborted(), custom_properties=_RECIPIENT_PROPERTIES)
    succeeded = _with_task(samples.sample_succeeded(), custom_properties=_RECIPIENT_PROPERTIES)
    recovered = _with_task(
        samples.sample_succeeded(recovers=failed), custom_properties=_RECIPIENT_PROPERTIES
    )
    recovered = msgspec.structs.replace(
        recovered, event_id=events.event_id_for("task_succeeded", "recovery-execution")
    )
    assert isinstance(aborted, TaskAborted)
    assert isinstance(succeeded, TaskSucceeded)
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        _running(settings, broker_settings),
    ):
        await _publish(mosquitto, prefix, failed, aborted, succeeded, recovered)
        await observer.wait_for(_receipt_count(prefix, 9))
        await asyncio.sleep(0.3)  # time for a wrong extra message to show itself

    def sent(subject_start: str) -> list[str]:
        return sorted(
            mail.recipients[0]
            for mail in smtp.received
            if str(mail.message["Subject"]).startswith(subject_start)
        )

    name = failed.task.name
    assert sent(f'Qlik Sense reload failed: "{name}"') == [
        "finance-bi@example.com",
        "goran@example.com",
        "ops@example.com",
    ]
    assert sent(f'Qlik Sense reload aborted: "{name}"') == ["Ops@example.com", "aborts@example.com"]
    assert sent(f'✅ Qlik Sense reload success: "{name}"') == [
        "ops@example.com",
        "success@example.com",
    ]
    assert sent(f'✅ Qlik Sense reload recovered: "{name}"') == [
        "finance-bi@example.com",
        "goran@example.com",
    ]
    assert len(smtp.received) == 9
    for mail in smtp.received:
        assert len(mail.recipients) == 1  # a message of their own, never a shared To/CC line
        assert mail.message["To"] == mail.recipients[0]
        assert mail.message["From"] == SENDER
        assert mail.sender == "alerts@example.com"
        _assert_reads_well(mail)
    [failure_mail, *_] = smtp.to("ops@example.com")
    assert failure_mail.message["X-Priority"] == "1 (Highest)"  # Butler's failed: priority high

    receipts = _receipts(observer.seen, prefix)
    assert {receipt.outcome for receipt in receipts} == {"delivered"}
    assert sorted({receipt.destination for receipt in receipts}) == [
        "email-aborted",
        "email-failed",
        "email-recovered",
        "email-succeeded",
    ]
    assert all("OK queued as herald-test-" in (receipt.detail or "") for receipt in receipts)
    assert "skipping the invalid address 'not an address'" in caplog.text
    assert smtp.connections <= 4  # smtp.connections: kept open and reused for all nine


async def test_addresses_under_company_domains_such_as_local_lan_internal_and_corp_get_their_mail(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, smtp: SmtpServer, tmp_path: Path
) -> None:
    # email-validator's default refuses these as "special-use or reserved"; they are where many
    # Qlik sites keep their mail. Static, custom-property and owner addresses alike.
    prefix = broker_settings.topic_prefix
    settings = _settings(tmp_path, smtp, {"failed": {"recipients": ["qlik-alerts@bench.local"]}})
    failed = _with_task(
        samples.sample_failed(),
        custom_properties={"Butler_FailedAlertSendToEmail": ["bi@team.lan", "ops@finance.corp"]},
    )
    assert failed.app is not None
    assert failed.app.owner is not None
    owner = msgspec.structs.replace(failed.app.owner, emails=["goran@qlik.internal"])
    failed = msgspec.structs.replace(failed, app=msgspec.structs.replace(failed.app, owner=owner))
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        _running(settings, broker_settings),
    ):
        await _publish(mosquitto, prefix, failed)
        await observer.wait_for(_receipt_count(prefix, 4))
    assert sorted(mail.recipients[0] for mail in smtp.received) == [
        "bi@team.lan",
        "goran@qlik.internal",
        "ops@finance.corp",
        "qlik-alerts@bench.local",
    ]
    assert {receipt.outcome for receipt in _receipts(observer.seen, prefix)} == {"delivered"}


async def test_a_task_name_with_markup_and_accents_is_escaped_in_html_and_readable_in_the_subject(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, smtp: SmtpServer, tmp_path: Path
) -> None:
    name = "Sales <Q1> & \"Umsätze\" 'Größe' Ørsted"
    dead_letters = await _alert_ops_of_a_failure_of(
        name, mosquitto, broker_settings, smtp, tmp_path
    )

    assert dead_letters == []
    [mail] = smtp.received
    assert str(mail.message["Subject"]) == f'Qlik Sense reload failed: "{name}"'
    raw_subject = re.search(rb"^Subject:(.*(?:\r\n[ \t].*)*)", mail.raw, re.MULTILINE)
    assert raw_subject is not None
    assert raw_subject.group(1).isascii()
    assert b"=?utf-8?" in raw_subject.group(1).lower()  # RFC 2047 encoded words
    text, html = _parts(mail)
    assert "Sales &lt;Q1&gt; &amp; &#34;Umsätze&#34; &#39;Größe&#39; Ørsted" in html
    assert "<Q1>" not in html
    assert f"Task:                {name}" in text  # the text part is not HTML: no entities
    _assert_reads_well(mail)


async def test_a_task_name_of_20000_characters_is_delivered_with_a_capped_folded_subject(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, smtp: SmtpServer, tmp_path: Path
) -> None:
    name = "Sales_" + "x" * 19_994  # one word: nowhere for a folder to break it
    dead_letters = await _alert_ops_of_a_failure_of(
        name, mosquitto, broker_settings, smtp, tmp_path
    )

    assert dead_letters == []  # before: "500 Line too long (see RFC5321 4.5.3.1.6)"
    [mail] = smtp.received
    full_subject = f'Qlik Sense reload failed: "{name}"'
    assert str(mail.message["Subject"]) == full_subject[:249] + "…"
    head = mail.raw.partition(b"\r\n\r\n")[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78  # RFC 5322's recommended length
    assert max(len(line) for line in mail.raw.split(b"\r\n")) <= 998  # and its limit, everywhere
    text, _ = _parts(mail)
    assert f"Task:                {name}\n" in text  # the body keeps the whole name


async def test_three_failures_within_the_window_give_one_message_per_recipient(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, smtp: SmtpServer, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    settings = _settings(
        tmp_path,
        smtp,
        {
            "failed": {
                "recipients": ["ops@example.com", "bi@example.com"],
                "recipients_custom_property": None,
                "app_owner": {"enabled": False},
            }
        },
    )
    first = samples.sample_failed()
    failures = [first, _another_execution(first, 2), _another_execution(first, 3)]
    suppressed = _deliveries("email-failed", "suppressed")
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        _running(settings, broker_settings),
    ):
        await _publish(mosquitto, prefix, *failures)
        await observer.wait_for(_receipt_count(prefix, 6))

    assert sorted(mail.recipients[0] for mail in smtp.received) == [
        "bi@example.com",
        "ops@example.com",
    ]
    receipts = _receipts(observer.seen, prefix)
    by_outcome: dict[str, list[str]] = {}
    for receipt in receipts:
        by_outcome.setdefault(receipt.outcome, []).append(receipt.target)
    assert sorted(by_outcome["delivered"]) == ["bi@example.com", "ops@example.com"]
    assert sorted(by_outcome["suppressed"]) == ["bi@example.com"] * 2 + ["ops@example.com"] * 2
    assert all(
        "rate limit: one per 600 s" in (r.detail or "")
        for r in receipts
        if r.outcome == "suppressed"
    )
    assert _deliveries("email-failed", "suppressed") == suppressed + 4


async def test_a_mail_server_that_is_down_is_retried_until_it_is_back(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, smtp: SmtpServer, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    settings = _settings(
        tmp_path,
        smtp,
        {
            "failed": {
                "recipients": ["ops@example.com"],
                "recipients_custom_property": None,
                "app_owner": {"enabled": False},
            }
        },
    )
    failed = samples.sample_failed()
    await smtp.stop()
    transient = _attempts("email-failed", "transient_error")
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        _running(settings, broker_settings) as service,
    ):
        await _publish(mosquitto, prefix, failed)
        await _eventually(lambda: _attempts("email-failed", "transient_error") >= transient + 3)
        assert (
            service.runner.ledger.state_of(failed.event_id, "email-failed", "ops@example.com")
            == "pending"
        )
        assert _receipts(observer.seen, prefix) == []

        await smtp.start()
        await observer.wait_for(_receipt_count(prefix, 1))

    [receipt] = _receipts(observer.seen, prefix)
    assert receipt.outcome == "delivered"
    assert receipt.attempts >= 4
    [mail] = smtp.received
    assert mail.recipients == ["ops@example.com"]
    assert _dead_letters(observer.seen, prefix) == []


async def test_a_dropped_connection_is_reopened_and_the_message_still_sent_at_once(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, smtp: SmtpServer, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    settings = _settings(
        tmp_path,
        smtp,
        {
            "failed": {
                "recipients": ["ops@example.com"],
                "recipients_custom_property": None,
                "app_owner": {"enabled": False},
            }
        },
    )
    first = samples.sample_failed()
    # Another task, so the rate limit (per task and recipient) does not hold the second back.
    second = _with_task(_another_execution(first, 2), id="0e6f3a5c-1111-4222-8333-944455566677")
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        _running(settings, broker_settings),
    ):
        await _publish(mosquitto, prefix, first)
        await observer.wait_for(_receipt_count(prefix, 1))
        smtp.drop_connections()  # what a server does to an idle client
        await asyncio.sleep(0.2)
        await _publish(mosquitto, prefix, second)
        await observer.wait_for(_receipt_count(prefix, 2))

    assert len(smtp.received) == 2
    assert smtp.connections == 2
    assert [receipt.attempts for receipt in _receipts(observer.seen, prefix)] == [1, 1]


async def test_a_slow_mail_server_gets_messages_in_parallel_over_a_few_reused_connections(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, smtp: SmtpServer, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    recipients = [f"user{n}@example.com" for n in range(12)]
    settings = _settings(
        tmp_path,
        smtp,
        {
            "failed": {
                "recipients": recipients,
                "recipients_custom_property": None,
                "app_owner": {"enabled": False},
            },
            "smtp": {"connections": 3},
        },
    )
    smtp.delay = 0.3  # a server that scans every message before it answers
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        _running(settings, broker_settings),
    ):
        await _publish(mosquitto, prefix, samples.sample_failed())
        await observer.wait_for(_receipt_count(prefix, len(recipients)))

    assert sorted(mail.recipients[0] for mail in smtp.received) == sorted(recipients)
    assert smtp.busiest == 3  # three messages in flight at once, never more
    assert smtp.connections == 3  # each connection carried four messages
    assert {r.outcome for r in _receipts(observer.seen, prefix)} == {"delivered"}
    assert [r.attempts for r in _receipts(observer.seen, prefix)] == [1] * len(recipients)


async def test_a_refused_recipient_is_dead_lettered_and_the_others_still_get_their_mail(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, smtp: SmtpServer, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    smtp.refuse["gone@example.com"] = "550 5.1.1 <gone@example.com>: mailbox unavailable"
    settings = _settings(
        tmp_path,
        smtp,
        {
            "failed": {
                "recipients": ["ops@example.com", "gone@example.com", "bi@example.com"],
                "recipients_custom_property": None,
                "app_owner": {"enabled": False},
            },
            "smtp": {"connections": 1},
        },
    )
    failed = samples.sample_failed()
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        _running(settings, broker_settings),
    ):
        await _publish(mosquitto, prefix, failed)
        await observer.wait_for(
            lambda seen: _receipt_count(prefix, 3)(seen) and bool(_dead_letters(seen, prefix))
        )

    assert sorted(mail.recipients[0] for mail in smtp.received) == [
        "bi@example.com",
        "ops@example.com",
    ]
    [letter] = _dead_letters(observer.seen, prefix)
    assert letter.destination == "email-failed"
    assert letter.target == "gone@example.com"
    assert letter.attempts == 1  # a permanent refusal is not retried
    assert "550 5.1.1 <gone@example.com>: mailbox unavailable" in letter.reason
    assert letter.event == failed
    outcomes = {r.target: r.outcome for r in _receipts(observer.seen, prefix)}
    assert outcomes == {
        "ops@example.com": "delivered",
        "gone@example.com": "dead_lettered",
        "bi@example.com": "delivered",
    }
    assert smtp.connections == 1  # the refusal did not cost the connection


async def test_wrong_credentials_give_a_clear_dead_letter_quickly_and_never_the_password(
    mosquitto: Mosquitto,
    broker_settings: BrokerSettings,
    smtp: SmtpServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    prefix = broker_settings.topic_prefix
    wrong = "Wr0ng-But-Secret-Passw0rd"
    settings = _settings(
        tmp_path,
        smtp,
        {
            "failed": {
                "recipients": ["ops@example.com"],
                "recipients_custom_property": None,
                "app_owner": {"enabled": False},
            },
        },
    )
    settings = settings.model_copy(
        update={"smtp": settings.smtp.model_copy(update={"password": _secret(wrong)})}
    )
    failed = samples.sample_failed()
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        _running(settings, broker_settings),
    ):
        await _publish(mosquitto, prefix, failed)
        # Well within one SMTP timeout per login mechanism: a refused login must not hang.
        await observer.wait_for(lambda seen: bool(_dead_letters(seen, prefix)), within=15)
        await observer.wait_for(_receipt_count(prefix, 1))

    [letter] = _dead_letters(observer.seen, prefix)
    assert letter.attempts == 1
    assert "refused the login of user 'alerts'" in letter.reason
    assert "535" in letter.reason
    assert "check emailer.smtp.username and password" in letter.reason
    assert smtp.received == []
    assert smtp.logins
    assert not any(ok for _, ok in smtp.logins)
    published = b"".join(seen.payload for seen in observer.seen).decode()
    contract.assert_hidden(
        [wrong, *smtp.users.values()], published=published, log=caplog.text, settings=settings
    )


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


async def test_a_template_that_fails_at_runtime_sends_a_plain_text_alert_instead(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, smtp: SmtpServer, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    templates = tmp_path / "templates"
    templates.mkdir()
    # Fine for every sample event (so it passes the start-up check), broken for one task.
    (templates / "failed.html").write_text(
        '{% extends "base.html" %}\n'
        "{% block title %}Failed: {{ task_name }}{% endblock %}\n"
        "{% block accent %}#b42318{% endblock %}\n"
        '{% block lead %}{% if task_name == "Explode" %}{{ no_such_field }}{% endif %}{% endblock %}\n'
    )
    settings = _settings(
        tmp_path,
        smtp,
        {
            "template_dir": str(templates),
            "failed": {
                "recipients": ["ops@example.com"],
                "recipients_custom_property": None,
                "app_owner": {"enabled": False},
            },
        },
    )
    failed = _with_task(samples.sample_failed(), name="Explode")
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
        _running(settings, broker_settings),
    ):
        await _publish(mosquitto, prefix, failed)
        await observer.wait_for(_receipt_count(prefix, 1))

    [mail] = smtp.received
    assert mail.message.get_content_type() == "text/plain"
    assert str(mail.message["Subject"]) == 'Qlik Sense reload failed: "Explode"'
    body = mail.message.get_content()
    assert "template could not be rendered" in body
    assert "'no_such_field' is undefined" in body
    assert "Task:     Explode" in body
    assert "Execution Failed" in body  # the script log's tail
    [receipt] = _receipts(observer.seen, prefix)
    assert receipt.outcome == "delivered"
    assert "plain-text fallback" in (receipt.detail or "")


async def test_send_test_message_reports_the_servers_answer(
    smtp: SmtpServer, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, smtp)
    answer = await send_test_message(settings, "admin@example.com")
    assert "OK queued as herald-test-1" in answer
    [mail] = smtp.received
    assert mail.recipients == ["admin@example.com"]
    assert str(mail.message["Subject"]).startswith("Herald test message: ")
    _assert_reads_well(mail)
