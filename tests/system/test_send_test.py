"""`herald send-test` tells the truth, like a contact point's Test button.

Every subscriber service runs as `herald up` runs it, against the shared Mosquitto, a real SMTP
server (aiosmtpd) and the HTTP stand-ins; `herald send-test` runs as a user runs it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from herald_shared import samples
from herald_testkit.chat_standins import Answer, ChatStandins
from herald_testkit.fixtures import broker_section
from herald_testkit.http import HttpReceiver
from herald_testkit.incident_standins import NewRelicStandIn, Signl4StandIn
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer
from herald_testkit.ports import free_port
from herald_testkit.processes import Child, herald
from herald_testkit.smtp_server import SmtpServer

SERVICES = ("emailer", "chat-notifier", "incident-forwarder", "metrics-writer", "log-archiver")
SLACK_TOKEN = "slack-ops-token"
SIGNL4_SECRET = "signl4-team-secret"
NEW_RELIC_ACCOUNT, NEW_RELIC_KEY = "1234567", "new-relic-insert-key"
RECIPIENT = "qlik-ops@example.com"
SMTP_USER, SMTP_PASSWORD = "herald", "send-test-Passw0rd"


@dataclass
class System:
    config: Path
    smtp: SmtpServer
    chat: ChatStandins
    webhook: HttpReceiver
    signl4: Signl4StandIn
    new_relic: NewRelicStandIn
    health_port: int
    logs: Path
    status: Observer

    async def send_test(self, *arguments: str) -> tuple[int, str, str]:
        return await herald("send-test", "--config", str(self.config), *arguments, within=90)

    async def reload_metrics(self) -> str:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{self.health_port}/metrics")
        return answer.text


def _config(
    tmp_path: Path,
    mosquitto: Mosquitto,
    prefix: str,
    smtp_port: int,
    smtp: SmtpServer,
    chat: ChatStandins,
    webhook: HttpReceiver,
    signl4: Signl4StandIn,
    new_relic: NewRelicStandIn,
    health_port: int,
) -> Path:
    state = tmp_path / "state"
    document = {
        "broker": broker_section(mosquitto, prefix),
        "health": {"host": "127.0.0.1", "port": health_port},
        "emailer": {
            "state_dir": str(state),
            "from_address": "qlik-alerts@example.com",
            "smtp": {
                "host": "127.0.0.1",
                "port": smtp_port,
                "tls": "starttls",
                "ca_file": str(smtp.ca_file),
                "username": SMTP_USER,
                "password": SMTP_PASSWORD,
            },
            "failed": {"recipients": [RECIPIENT]},
            # One retry line in the output, not one a second.
            "delivery": {"initial_backoff": "60s"},
        },
        "chat_notifier": {
            "state_dir": str(state),
            "slack": [{"name": "ops", "webhook_url": chat.slack_url(SLACK_TOKEN)}],
        },
        "incident_forwarder": {
            "state_dir": str(state),
            "webhooks": [{"name": "automation", "url": webhook.url}],
            "signl4": {"enabled": True, "url": signl4.url},
            "new_relic": {
                "accounts": [
                    {"name": "ops", "account_id": NEW_RELIC_ACCOUNT, "insert_key": NEW_RELIC_KEY}
                ],
                "event_url": new_relic.base_url,
                "event": {"enabled": True, "always_accounts": ["ops"]},
            },
        },
        "metrics_writer": {
            "state_dir": str(state),
            "influxdb": {"enabled": False},
            "prometheus": {"enabled": True},
        },
        "log_archiver": {"state_dir": str(state), "directory": str(tmp_path / "script-logs")},
    }
    path = tmp_path / "herald.yaml"
    path.write_text(json.dumps(document))  # JSON is YAML
    return path


@contextlib.asynccontextmanager
async def running_system(
    tmp_path: Path, mosquitto: Mosquitto, prefix: str, *, smtp_up: bool = True
) -> AsyncIterator[System]:
    health_port = free_port()
    async with (
        SmtpServer(tmp_path / "smtp", users={SMTP_USER: SMTP_PASSWORD}) as smtp,
        ChatStandins() as chat,
        HttpReceiver() as webhook,
        Signl4StandIn(SIGNL4_SECRET) as signl4,
        NewRelicStandIn({NEW_RELIC_ACCOUNT: NEW_RELIC_KEY}) as new_relic,
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/status/#") as status,
    ):
        smtp_port = smtp.port if smtp_up else free_port()  # nothing listens there: SMTP is down
        config = _config(
            tmp_path,
            mosquitto,
            prefix,
            smtp_port,
            smtp,
            chat,
            webhook,
            signl4,
            new_relic,
            health_port,
        )
        up = await Child.python("-m", "herald_shared.cli", "up", "--config", str(config))
        try:
            online = {f"{prefix}/v1/status/{service}/{prefix}" for service in SERVICES}
            await status.wait_for(
                lambda seen: online <= {s.topic for s in seen if s.payload == b"online"},
                within=60,
            )
            logs = tmp_path / "script-logs"
            yield System(config, smtp, chat, webhook, signl4, new_relic, health_port, logs, status)
        finally:
            up.terminate()
            await up.wait()
            await up.close()


async def test_with_smtp_down_and_slack_refusing_send_test_fails_and_says_why(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    async with running_system(tmp_path, mosquitto, topic_prefix, smtp_up=False) as system:
        refused = Answer(status=400, body="invalid_payload")
        system.chat.respond_with(refused, refused, to=SLACK_TOKEN)  # formatted, then basic
        code, out, err = await system.send_test("--timeout", "15")
    assert code == 1, out + err
    # The e-mail is retried: shown as pending, with the reason, not as a success.
    assert f"emailer: email-failed ({RECIPIENT}): pending, attempt 1 failed:" in out
    assert "herald: the test alert did not reach every destination:" in err
    assert f"emailer: email-failed ({RECIPIENT}): pending, attempt 1 failed:" in err
    assert "(after 15 s)" in err
    # Slack's 400 is a failure of the test, named as such.
    assert "chat-notifier: slack:ops: dead_lettered:" in out
    assert "chat-notifier: slack:ops: dead_lettered:" in err
    # What did work is shown too.
    assert "incident-forwarder: webhook:automation: delivered" in out
    assert "1 dead_lettered" in out
    assert "1 still pending" in out


async def test_every_destination_gets_a_labelled_test_and_send_test_exits_0(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    async with running_system(tmp_path, mosquitto, topic_prefix) as system:
        code, out, err = await system.send_test("--timeout", "60")
        assert code == 0, out + err
        # E-mail: [TEST] in the subject, the notice as the first line of the text.
        await system.smtp.wait_for_count(1)
        [mail] = system.smtp.to(RECIPIENT)
        assert mail.message["Subject"].startswith("[TEST] ")
        text = mail.message.get_body(("plain",))
        assert text is not None
        assert text.get_content().startswith("This is a test alert sent with herald send-test")
        html = mail.message.get_body(("html",))
        assert html is not None
        assert "This is a test alert" in html.get_content()
        # Slack: the header says test.
        [slack] = system.chat.accepted(SLACK_TOKEN)
        header = slack.payload["blocks"][0]
        assert header["type"] == "header"
        assert header["text"]["text"].startswith("[TEST] ")
        # Webhook and Signl4: a field says test.
        [hook] = system.webhook.accepted
        body = json.loads(hook.body)
        assert body["test"] == "true"
        assert body["herald_event"]["test"] is True
        [alert] = system.signl4.alerts
        assert alert["Test"] == "true"
        assert alert["Title"].startswith("[TEST] ")
        [posted] = system.new_relic.events
        assert [event["herald_test"] for event in posted.events] == ["true"]
    assert "emailer: email-failed (qlik-ops@example.com): delivered" in out
    assert "chat-notifier: slack:ops: delivered" in out
    assert "summary: " in out
    # The command is no service: it leaves no status behind (and needs no right to one).
    assert not system.status.matching(lambda seen: "/status/send-test/" in seen.topic)


async def test_a_test_goes_only_to_configured_recipients_never_to_the_samples_owner(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    sample = samples.sample_failed()
    assert sample.app is not None
    assert sample.app.owner is not None
    custom = [value for values in sample.task.custom_properties.values() for value in values]
    made_up = [*sample.app.owner.emails, *custom]
    async with running_system(tmp_path, mosquitto, topic_prefix) as system:
        code, out, err = await system.send_test("--timeout", "60")
        assert code == 0, out + err
        mails = await system.smtp.wait_for_count(1)
    assert [mail.recipients for mail in mails] == [[RECIPIENT]]
    for address in made_up:
        assert str(address) not in out


async def test_a_test_is_never_rate_limited_nor_counted_in_the_reload_dashboards(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    async with running_system(tmp_path, mosquitto, topic_prefix) as system:
        first = await system.send_test("--timeout", "60")
        second = await system.send_test("--timeout", "60")
        metrics = await system.reload_metrics()
        mails = await system.smtp.wait_for_count(2)
    for code, out, err in (first, second):
        assert code == 0, out + err
        assert "suppressed" not in out
        assert "email-failed (qlik-ops@example.com): delivered" in out
        assert "metrics-writer: prometheus: skipped: test alert" in out
        assert "log-archiver: archive: skipped: test alert" in out
    assert len(mails) == 2
    assert len(system.chat.accepted(SLACK_TOKEN)) == 2
    # No point for a fake task in the reload metrics, no failure in the archive.
    assert samples.sample_failed().task.name not in metrics
    assert not list(system.logs.rglob("*.log"))


async def test_every_destination_answers_even_when_it_does_not_take_the_test(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    async with running_system(tmp_path, mosquitto, topic_prefix) as system:
        code, out, err = await system.send_test("--kind", "aborted", "--timeout", "60")
    assert code == 0, out + err
    assert "emailer: email-failed: skipped: test alert: email-failed sends failed alerts" in out
    assert "emailer: email-aborted: skipped: test alert: emailer.aborted.recipients is empty" in out
    assert "chat-notifier: slack:ops: delivered" in out
