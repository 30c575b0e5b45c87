"""A Butler site moves over: its configuration, with every reload-alert destination enabled and
pointed at the stand-ins, goes through ``herald import-butler``; the Herald it produces runs (each
service in its own process) and a failed reload reaches every destination Butler would have sent
it to, to the same recipients, through the converted templates.

Only what Herald needs and Butler does not have is added to the imported file: the broker,
state folders, the health port, and the SMTP stand-in's CA (Herald verifies the certificate
where Butler's configuration turned verification off, as the import report says).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
import yaml

from herald_qlik_sim.data import TASK_FAILED_NAME
from herald_testkit.mqtt import Observer
from herald_testkit.pipeline import (
    INFLUX_DATABASE,
    NEW_RELIC_ACCOUNT,
    NEW_RELIC_KEY,
    PREFIX,
    SLACK_TOKEN,
    SMTP_PASSWORD,
    SMTP_USER,
    TEAMS_TOKEN,
    Pipeline,
    whole_system,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

TEMPLATES = Path(__file__).parents[1] / "herald_butler_import" / "fixtures" / "templates"
STATIC_RECIPIENT = "oncall@example.com"
# The sim's failed task lists these in Butler_FailedAlertSendToEmail.
PROPERTY_RECIPIENTS = ("finance-bi@example.com", "ops-oncall@example.com")
NEW_RELIC_NAME = "Acme Production"  # the task's Butler_FailedTask_Event_NewRelicAccount value


class ImportedPipeline(Pipeline):
    """The pipeline, configured by ``herald import-butler`` from a Butler file."""

    report = ""  # what the import printed

    def butler_config(self) -> dict[str, Any]:
        d = self.destinations
        influx = urlsplit(d.influx.url)
        reload_failure = {
            "enable": True,
            "rateLimit": 300,
            "headScriptLogLines": 10,
            "tailScriptLogLines": 10,
        }
        return {
            "Butler": {
                "configQRS": {"host": "127.0.0.1", "port": self.qrs_port, "useSSL": True,
                              "headers": {"static": [{"name": "X-Qlik-User", "value": "UserDirectory=INTERNAL; UserId=sa_repository"}]},
                              "rejectUnauthorized": False},
                "cert": {"clientCert": str(self.certs.client), "clientCertKey": str(self.certs.client_key),
                         "clientCertCA": str(self.certs.root)},
                "qlikSenseUrls": {"qmc": "https://sense.example.com/qmc", "hub": "https://sense.example.com/hub"},
                "udpServerConfig": {"enable": True, "serverHost": "127.0.0.1", "portTaskFailure": self.udp_port},
                "emailNotification": {
                    "enable": True,
                    "reloadTaskFailure": {
                        "enable": True,
                        "appOwnerAlert": {"enable": False},
                        "alertEnableByCustomProperty": {"enable": True, "customPropertyName": "Butler_FailedAlertEnableEmail", "enabledValue": "Yes"},
                        "alertEnabledByEmailAddress": {"customPropertyName": "Butler_FailedAlertSendToEmail"},
                        "rateLimit": 600, "priority": "high",
                        "subject": 'Reload failed: "{{taskName}}"',
                        "htmlTemplateFile": "failed-reload",
                        "fromAddress": "Qlik Sense <sense@example.com>",
                        "recipients": [STATIC_RECIPIENT],
                    },
                    "smtp": {"host": d.smtp.host, "port": d.smtp.port, "secure": False,
                             "tls": {"requireTLS": True, "rejectUnauthorized": False},
                             "auth": {"enable": True, "user": SMTP_USER, "password": SMTP_PASSWORD}},
                },
                "slackNotification": {"enable": True, "reloadTaskFailure": {
                    **reload_failure, "webhookURL": d.chat.slack_url(SLACK_TOKEN), "channel": "qlik",
                    "messageType": "formatted", "templateFile": "/butler/slack/failed-reload.handlebars",
                    "fromUser": "Qlik Sense", "iconEmoji": ":ghost:"}},
                "teamsNotification": {"enable": True, "reloadTaskFailure": {
                    **reload_failure, "webhookURL": d.chat.teams_url(TEAMS_TOKEN),
                    "messageType": "formatted", "templateFile": "/butler/teams/failed-reload.handlebars"}},
                "webhookNotification": {"enable": True, "reloadTaskFailure": {"rateLimit": 300, "webhooks": [
                    {"description": "ops", "webhookURL": d.webhook.url, "httpMethod": "POST"}]}},
                "mqttConfig": {"enable": True, "brokerHost": self.broker.host, "brokerPort": self.broker.port,
                               "taskFailureSendFull": True, "taskFailureTopic": "qliksense/task_failure",
                               "taskFailureFullTopic": "qliksense/task_failure_full"},
                "thirdPartyToolsCredentials": {"newRelic": [
                    {"accountName": NEW_RELIC_NAME, "accountId": NEW_RELIC_ACCOUNT, "insertApiKey": NEW_RELIC_KEY}]},
                "incidentTool": {
                    "signl4": {"enable": True, "url": d.signl4.url,
                               "reloadTaskFailure": {"enable": True, "rateLimit": 15, "serviceName": "Qlik Sense", "severity": 1}},
                    "newRelic": {"enable": True, "url": {"event": d.new_relic.base_url, "log": d.new_relic.log_url},
                                 "reloadTaskFailure": {
                                     "destination": {"event": {"enable": True, "sendToAccount": {
                                         "byCustomProperty": {"enable": True, "customPropertyName": "Butler_FailedTask_Event_NewRelicAccount"}}}},
                                     "sharedSettings": {"rateLimit": 15}}},
                },
                "influxDb": {"enable": True, "hostIP": influx.hostname, "hostPort": influx.port, "version": 1,
                             "v1Config": {"dbName": INFLUX_DATABASE},
                             "reloadTaskFailure": {"enable": True, "tailScriptLogLines": 20}},
                "scriptLog": {"storeOnDisk": {"clientManaged": {"reloadTaskFailure": {
                    "enable": True, "logDirectory": str(self.archive)}}}},
            }
        }  # fmt: skip

    def render_config(self) -> str:
        butler = self.workdir / "butler.yaml"
        butler.write_text(yaml.safe_dump(self.butler_config()))
        out = self.workdir / "imported"
        imported = subprocess.run(
            [sys.executable, "-m", "herald_shared.cli", "import-butler", str(butler),
             "--templates", str(TEMPLATES), "--out", str(out), "--write-secrets"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert imported.returncode == 0, imported.stderr
        self.report = imported.stdout
        document = yaml.safe_load((out / "herald.yaml").read_text())
        for section, body in document.items():  # qlik and the services' sections
            if section != "qlik":
                body["state_dir"] = str(self.workdir / "state" / section)
        document["broker"] = {"host": self.broker.host, "port": self.broker.port,
                              "topic_prefix": PREFIX, "instance": "butler-import", "reconnect_max": "2s"}  # fmt: skip
        document["health"] = {"host": "127.0.0.1", "port": 0}
        document["logging"] = {"level": "WARNING"}
        document["qlik"]["timezone"] = "UTC"
        document["emailer"]["smtp"]["ca_file"] = str(self.destinations.smtp.ca_file)
        return yaml.safe_dump(document)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ImportedPipeline]:
    work = tmp_path_factory.mktemp("butler-site")
    async with whole_system(work, pipeline=ImportedPipeline) as pipeline:
        assert isinstance(pipeline, ImportedPipeline)
        yield pipeline


OWED = {
    *(("emailer", "email-failed", r) for r in (STATIC_RECIPIENT, *PROPERTY_RECIPIENTS)),
    ("chat-notifier", "slack:butler-failed", ""),
    ("chat-notifier", "teams:butler-failed", ""),
    ("incident-forwarder", "new-relic-event", NEW_RELIC_NAME),
    ("incident-forwarder", "signl4", ""),
    ("incident-forwarder", "webhook:butler-1", ""),
    ("incident-forwarder", "butler-mqtt", "basic"),  # qliksense/task_failure
    ("incident-forwarder", "butler-mqtt", "full"),  # qliksense/task_failure_full
    ("metrics-writer", "influxdb", ""),
    ("metrics-writer", "prometheus", ""),  # Herald's own, on by default
    ("log-archiver", "archive", ""),
}


async def test_an_imported_butler_site_sends_each_alert_butler_would_to_the_same_recipients(
    site: ImportedPipeline,
) -> None:
    async with Observer(site.broker.host, site.broker.port, "qliksense/#") as iot:
        burst = await site.record(1)
        await site.send(burst)
        event_id = burst.event_ids()[0]
        deadline = asyncio.get_running_loop().time() + 90
        while asyncio.get_running_loop().time() < deadline:
            got = {
                (r.service, r.destination, r.target)
                for r in site.receipts_for({event_id})
                if r.outcome == "delivered"
            }
            if got >= OWED:
                break
            await asyncio.sleep(0.5)
    assert got == OWED
    d = site.destinations
    mails = [mail for mail in d.smtp.received if mail.message["X-Herald-Event-Id"] == event_id]
    assert sorted(r for mail in mails for r in mail.recipients) == sorted(
        (STATIC_RECIPIENT, *PROPERTY_RECIPIENTS)
    )
    # The converted Butler templates made the messages.
    mail = mails[0].message
    assert mail["Subject"] == f'Reload failed: "{TASK_FAILED_NAME}"'
    html = mail.get_body(("html",))
    assert html is not None
    assert f"<h2>Reload failed: {TASK_FAILED_NAME}</h2>" in html.get_content()
    slack = d.chat.accepted(SLACK_TOKEN)[-1].payload
    assert slack["blocks"][0]["text"]["text"] == f"Reload failed: {TASK_FAILED_NAME}"
    assert slack["channel"] == "qlik"
    teams = d.chat.accepted(TEAMS_TOKEN)[-1].payload
    assert f"Reload failed: {TASK_FAILED_NAME}" in str(teams)
    assert [m.topic for m in iot.seen] == ["qliksense/task_failure", "qliksense/task_failure_full"]
    assert iot.seen[0].payload.decode() == TASK_FAILED_NAME
    assert any(
        str(item.get("qs_taskName")) == TASK_FAILED_NAME
        for b in d.new_relic.events
        for item in b.events
    )
    # The import said what differs, and never printed a secret.
    assert "QoS 1" in site.report
    assert SMTP_PASSWORD not in site.report
    assert NEW_RELIC_KEY not in site.report
