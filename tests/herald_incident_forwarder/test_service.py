"""The incident forwarder as it runs: a real Mosquitto, events in; New Relic and Signl4 stand-ins,
a real webhook receiver and a second Mosquitto (Butler's IoT broker) out."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec
import pytest

from herald_incident_forwarder.service import build
from herald_incident_forwarder.settings import IncidentForwarderSettings
from herald_shared import events, samples
from herald_shared.events import Event
from herald_shared.settings import BrokerSettings
from herald_testkit import contract
from herald_testkit.http import Answer, HttpReceiver
from herald_testkit.incident_standins import NewRelicStandIn, Scripted, Signl4StandIn
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer, Seen
from herald_testkit.subscribers import ServiceUnderTest, publish_events

SERVICE = "incident-forwarder"
TEAM_SECRET = "team-secret-8f2a61c0d9b34e7a"
HMAC_SECRET = "hmac-secret-Zq8vR3xK"
INSERT_KEYS = {
    "1001": "NRII-prod-key-3f9c2b7e1a",
    "1002": "NRII-finance-key-7d1e4c9a0b",
    "1003": "NRII-ops-key-5a8b2c6d4e",
}
ACCOUNTS = [
    {"name": "prod", "account_id": "1001", "insert_key": INSERT_KEYS["1001"]},
    {"name": "finance", "account_id": "1002", "insert_key": INSERT_KEYS["1002"]},
    {"name": "ops", "account_id": "1003", "insert_key": INSERT_KEYS["1003"]},
]
BUTLER_WEBHOOK_KEYS = [
    "event",
    "hostName",
    "user",
    "taskName",
    "taskId",
    "appName",
    "appId",
    "appOwnerName",
    "appOwnerUserDirectory",
    "appOwnerUserId",
    "appOwnerEmail",
    "logTimeStamp",
    "logLevel",
    "executionId",
    "logMessage",
]

# Butler's payload on qliksense/task_failure_full for samples.sample_failed(), written out by
# hand from docs/butler-compatibility.md §4e: compact JSON, keys in Butler's order, no qs_appMetadata for failed.
FAILED_FULL = (
    b'{"hostName":"pro2-win1","user":"LAB\\\\goran",'
    b'"taskName":"Manually triggered reload of Test failing reloads 2",'
    b'"taskId":"dec2a02a-1680-44ef-8dc2-e2bfb180af87","appName":"Test failing reloads 2",'
    b'"appId":"e7af59a0-c243-480d-9571-08727551a66f","logTimeStamp":"2021-02-16 09:24:59,099",'
    b'"logLevel":"INFO","executionId":"14a81bf5-f81c-4047-b1a1-193b0920de28",'
    b'"logMessage":"Max retries reached","qs_appTags":["Sales"],'
    b'"qs_appCustomProperties":[{"name":"Department","value":"Finance"}],'
    b'"qs_taskTags":["Finance","Daily"],'
    b'"qs_taskCustomProperties":[{"name":"Butler_FailedAlertSendToEmail","value":"finance-bi@example.com"},'
    b'{"name":"Herald_Team","value":"finance"}],'
    b'"qs_taskMetadata":{"id":"dec2a02a-1680-44ef-8dc2-e2bfb180af87",'
    b'"name":"Manually triggered reload of Test failing reloads 2","taskType":0,'
    b'"isManuallyTriggered":true,"isPartialReload":false,"maxRetries":0,"taskSessionTimeout":1440,'
    b'"modifiedByUserName":"LAB\\\\goran","modifiedDate":"2021-02-10T08:12:45.000Z",'
    b'"app":{"id":"e7af59a0-c243-480d-9571-08727551a66f","name":"Test failing reloads 2"},'
    b'"customProperties":[{"definition":{"name":"Butler_FailedAlertSendToEmail"},"value":"finance-bi@example.com"},'
    b'{"definition":{"name":"Herald_Team"},"value":"finance"}],'
    b'"tags":[{"name":"Finance"},{"name":"Daily"}],'
    b'"operational":{"nextExecution":"1753-01-01T00:00:00.000Z"}}}'
)
ABORTED_APP_METADATA = (
    b'"qs_appMetadata":{"id":"e7af59a0-c243-480d-9571-08727551a66f","name":"Test failing reloads 2",'
    b'"description":"Sales figures per region, reloaded every morning","fileSize":2408112,'
    b'"published":true,"publishTime":"2021-01-04T10:00:00.000Z",'
    b'"lastReloadTime":"2021-02-15T06:00:12.000Z","modifiedByUserName":"LAB\\\\goran",'
    b'"modifiedDate":"2021-02-15T06:00:12.000Z",'
    b'"stream":{"id":"aaec8d41-5201-43ab-809f-3063750dfafd","name":"Finance"},'
    b'"owner":{"id":"5c1f8a3e-1f6a-4b2d-9f0e-6a7b8c9d0e1f","userId":"goran","userDirectory":"LAB",'
    b'"name":"G\xc3\xb6ran Sander"},'
    b'"customProperties":[{"definition":{"name":"Department"},"value":"Finance"}],'
    b'"tags":[{"name":"Sales"}]},'
)


# --- helpers -------------------------------------------------------------------------------


def _settings(tmp_path: Path, **sections: Any) -> IncidentForwarderSettings:
    return IncidentForwarderSettings.model_validate(
        {
            "state_dir": tmp_path / "state",
            "delivery": {
                "initial_backoff": 0.05,
                "max_backoff": 0.2,
                "deadline": 3600,
                "shutdown_grace": 2,
            },
            **sections,
        }
    )


_service = ServiceUnderTest(build, SERVICE)
_running, _receipts, _dead_letters = _service.running, _service.receipts, _service.dead_letters
_publish = publish_events


def _receipts_for(prefix: str, destination: str, count: int) -> Callable[[list[Seen]], bool]:
    def found(seen: list[Seen]) -> bool:
        receipts = [r for r in _receipts(seen, prefix) if r.destination == destination]
        return len(receipts) >= count

    return found


def _with_custom_property(event: Event, name: str, values: list[str]) -> Event:
    task = msgspec.structs.replace(
        event.task, custom_properties={**event.task.custom_properties, name: values}
    )
    return msgspec.structs.replace(event, task=task)


# --- Signl4 --------------------------------------------------------------------------------


async def test_signl4_opens_an_alert_on_failure_and_resolves_it_when_the_task_succeeds(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    failed = samples.sample_failed()
    recovered = samples.sample_succeeded(recovers=failed)
    async with Signl4StandIn(TEAM_SECRET) as signl4:
        settings = _settings(tmp_path, signl4={"enabled": True, "url": signl4.url})
        async with (
            Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
            _running(settings, broker_settings),
        ):
            await _publish(mosquitto, prefix, failed)
            await signl4.wait_for(lambda s: len(s.alerts) == 1)
            await _publish(mosquitto, prefix, recovered)
            await signl4.wait_for(lambda s: len(s.alerts) == 2)
            await observer.wait_for(_receipts_for(prefix, "signl4", 2))

    opened, resolved = signl4.alerts
    assert opened == {
        "Title": "Qlik Sense reload task failed",
        "Message": "Task: Manually triggered reload of Test failing reloads 2",
        "Severity": 1,
        "X-S4-Service": "Qlik Sense",
        "X-S4-ExternalID": failed.task.id,
        "X-S4-Status": "new",
    }
    assert resolved["X-S4-Status"] == "resolved"
    assert resolved["X-S4-ExternalID"] == opened["X-S4-ExternalID"]
    assert [r.outcome for r in _receipts(observer.seen, prefix)] == ["delivered", "delivered"]
    # Butler's body has no event id; the X-Herald-Event-Id header names each alert's event.
    assert signl4.alert_event_ids == [failed.event_id, recovered.event_id]


async def test_a_success_that_recovers_nothing_sends_nothing_to_signl4(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    aborted = samples.sample_aborted()
    async with Signl4StandIn(TEAM_SECRET) as signl4:
        settings = _settings(tmp_path, signl4={"enabled": True, "url": signl4.url})
        async with (
            Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
            _running(settings, broker_settings),
        ):
            # A success without `recovers` first: if it were sent, it would arrive first.
            await _publish(mosquitto, prefix, samples.sample_succeeded(), aborted)
            await observer.wait_for(_receipts_for(prefix, "signl4", 1))

    [alert] = signl4.alerts
    assert alert["Title"] == "Qlik Sense task aborted"
    assert alert["Severity"] == 10
    assert alert["X-S4-Status"] == "new"


# --- New Relic -----------------------------------------------------------------------------


async def test_new_relic_routes_each_task_to_its_accounts_and_the_always_accounts_once(
    mosquitto: Mosquitto,
    broker_settings: BrokerSettings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    prefix = broker_settings.topic_prefix
    # The task names finance and prod (prod is also an always-account) and one unknown account.
    failed = _with_custom_property(
        samples.sample_failed(),
        "Butler_FailedTask_Event_NewRelicAccount",
        ["finance", "prod", "no-such-account"],
    )
    async with NewRelicStandIn(INSERT_KEYS) as new_relic:
        settings = _settings(
            tmp_path,
            new_relic={
                "accounts": ACCOUNTS,
                "event_url": new_relic.base_url,
                "log_url": new_relic.log_url,
                "static_attributes": {"site": "lab"},
                "event": {"enabled": True, "always_accounts": ["prod"]},
                # The task names no log account: only the always-account gets the log.
                "log": {"enabled": True, "always_accounts": ["ops"], "tail_lines": 3},
            },
        )
        with caplog.at_level(logging.INFO):
            async with (
                Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
                _running(settings, broker_settings),
            ):
                await _publish(mosquitto, prefix, failed)
                await observer.wait_for(
                    lambda seen: (
                        _receipts_for(prefix, "new-relic-event", 2)(seen)
                        and _receipts_for(prefix, "new-relic-log", 1)(seen)
                    )
                )

    assert sorted(batch.account_id for batch in new_relic.events) == ["1001", "1002"]
    assert [batch.account_id for batch in new_relic.logs] == ["1003"]
    assert new_relic.rejected == []
    assert "no-such-account" in caplog.text

    [event] = new_relic.events[0].events
    assert event["eventType"] == "qs_reloadTaskFailedEvent"
    assert event["site"] == "lab"
    assert event["qs_user"] == "LAB/goran"
    assert event["qs_taskId"] == failed.task.id
    assert event["qs_executionId"] == failed.execution.id
    assert event["qs_taskTag_Finance"] == "true"
    assert event["qs_appTag_Sales"] == "true"
    assert event["qs_appCustomProperties.0.name"] == "Department"
    assert event["qs_taskMetadata.isManuallyTriggered"] == "true"
    assert event["qs_taskMetadata.operational.nextExecution"] == "1753-01-01T00:00:00.000Z"
    assert "qs_taskTags" not in event
    assert "qs_appTags" not in event

    logs = new_relic.logs[0]
    assert logs.attributes["logtype"] == "qs_reloadTaskFailedLog"
    assert logs.attributes["qs_exeuctionStatusText"] == "FinishedFail"  # sic, Butler's
    assert logs.attributes["qs_executionStatusText"] == "FinishedFail"
    assert logs.attributes["qs_executionStatusNum"] == 8
    assert logs.attributes["qs_scriptLogTailCount"] == 3
    assert logs.message == (
        "2021-02-16T08:24:40.000Z\tChanging task state from Triggered to Started\n"
        "2021-02-16T08:24:40.000Z\tReference to scriptlog added\n"
        "2021-02-16T08:24:59.099Z\tChanging task state from Started to FinishedFail\n"
        "\r\n-------------------------------\r\n\r\n"
        "20210216T092459.000+0100      Path not found: \\\\fileserver\\qlik\\data\\sales_2021.qvd\r\n"
        "20210216T092459.000+0100 Execution Failed\r\n"
        "20210216T092459.000+0100 Execution finished."
    )


# --- webhooks ------------------------------------------------------------------------------


async def test_get_post_and_put_webhooks_carry_butlers_keys_and_a_signature_that_verifies(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    failed = samples.sample_failed()
    async with HttpReceiver() as receiver:
        settings = _settings(
            tmp_path,
            webhooks=[
                {
                    "name": method.lower(),
                    "url": f"{receiver.url}hooks/{method.lower()}?code=abc",
                    "method": method,
                    "hmac_secret": HMAC_SECRET,
                }
                for method in ("GET", "POST", "PUT")
            ],
        )
        async with _running(settings, broker_settings):
            await _publish(mosquitto, prefix, failed)
            await receiver.wait_for(lambda r: len(r.accepted) == 3)

    by_method = {request.method: request for request in receiver.accepted}
    expected = {
        "event": "Qlik Sense reload failed",
        "hostName": "pro2-win1",
        "user": "LAB\\goran",
        "taskName": "Manually triggered reload of Test failing reloads 2",
        "taskId": "dec2a02a-1680-44ef-8dc2-e2bfb180af87",
        "appName": "Test failing reloads 2",
        "appId": "e7af59a0-c243-480d-9571-08727551a66f",
        "appOwnerName": "Göran Sander",
        "appOwnerUserDirectory": "LAB",
        "appOwnerUserId": "goran",
        "appOwnerEmail": "goran@example.com",
        "logTimeStamp": "2021-02-16 09:24:59,099",
        "logLevel": "INFO",
        "executionId": "14a81bf5-f81c-4047-b1a1-193b0920de28",
        "logMessage": "Max retries reached",
    }
    for method in ("POST", "PUT"):
        request = by_method[method]
        assert request.path == f"/hooks/{method.lower()}?code=abc"
        assert request.headers["Content-Type"] == "application/json"
        body = json.loads(request.body)
        assert list(body)[: len(BUTLER_WEBHOOK_KEYS)] == BUTLER_WEBHOOK_KEYS
        assert {key: body[key] for key in BUTLER_WEBHOOK_KEYS} == expected
        assert events.decode(json.dumps(body["herald_event"])) == failed
        mac = hmac.new(HMAC_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request.headers["X-Herald-Signature-256"], f"sha256={mac}")

    get = by_method["GET"]
    query = urlsplit(get.path).query
    assert "Qlik+Sense+reload+failed" in query  # URLSearchParams encodes spaces as +
    pairs = parse_qsl(query)
    assert pairs[0] == ("code", "abc")  # the URL's own query is kept
    assert dict(pairs[1:]) == expected
    assert [key for key, _ in pairs[1:]] == BUTLER_WEBHOOK_KEYS
    mac = hmac.new(HMAC_SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(get.headers["X-Herald-Signature-256"], f"sha256={mac}")


async def test_a_5xx_is_retried_until_it_succeeds_and_a_4xx_is_dead_lettered_with_its_text(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    failed = samples.sample_failed()
    async with HttpReceiver() as flaky, HttpReceiver() as strict:
        flaky.respond_with(Answer(status=503), Answer(status=500), Answer(status=502))
        strict.respond_with(Answer(status=422, body="field 'severity' is required"))
        settings = _settings(
            tmp_path,
            webhooks=[
                {"name": "flaky", "url": f"{flaky.url}hook"},
                {"name": "strict", "url": f"{strict.url}hook"},
            ],
        )
        async with (
            Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
            _running(settings, broker_settings),
        ):
            await _publish(mosquitto, prefix, failed)
            await observer.wait_for(
                lambda seen: (
                    _receipts_for(prefix, "webhook:flaky", 1)(seen)
                    and bool(_dead_letters(seen, prefix))
                )
            )

    receipts = {r.destination: r for r in _receipts(observer.seen, prefix)}
    assert receipts["webhook:flaky"].outcome == "delivered"
    assert receipts["webhook:flaky"].attempts == 4
    assert [r.status for r in flaky.requests] == [503, 500, 502, 200]
    [letter] = _dead_letters(observer.seen, prefix)
    assert letter.destination == "webhook:strict"
    assert letter.attempts == 1
    assert letter.reason == "webhook strict answered 422: field 'severity' is required"
    assert letter.event == failed
    assert len(strict.requests) == 1


# --- Butler's MQTT topics ------------------------------------------------------------------


BUTLER_STATUS = "qliksense/butler/mqtt/status"


def _alerts(seen: list[Seen]) -> list[Seen]:
    return [message for message in seen if message.topic != BUTLER_STATUS]


async def test_butlers_mqtt_topics_carry_butlers_payloads_byte_for_byte_on_another_broker(
    mosquitto: Mosquitto,
    private_mosquitto: Mosquitto,
    broker_settings: BrokerSettings,
    tmp_path: Path,
) -> None:
    prefix = broker_settings.topic_prefix
    failed, aborted = samples.sample_failed(), samples.sample_aborted()
    settings = _settings(
        tmp_path,
        butler_mqtt={
            "enabled": True,
            "broker": {"host": private_mosquitto.host, "port": private_mosquitto.port},
        },
    )
    async with (
        Observer(private_mosquitto.host, private_mosquitto.port, "qliksense/#") as iot,
        _running(settings, broker_settings) as service,
    ):
        await _publish(mosquitto, prefix, failed)
        await iot.wait_for(lambda seen: len(_alerts(seen)) == 2)
        await _publish(mosquitto, prefix, samples.sample_succeeded(), aborted)
        await iot.wait_for(lambda seen: len(_alerts(seen)) == 4)
        assert service.readiness() == (True, "connected, destinations ready")

    # Butler's connect notice, on its fixed topic, once: the connection was made once.
    [notice] = [seen.payload for seen in iot.seen if seen.topic == BUTLER_STATUS]
    where = f"{private_mosquitto.host}:{private_mosquitto.port}"
    client = f"herald-incident-forwarder-butler-mqtt-{broker_settings.instance}"
    assert notice == f"Connected to MQTT broker {where} with client ID {client}".encode()
    by_topic = {seen.topic: seen.payload for seen in _alerts(iot.seen)}
    assert list(by_topic) == [
        "qliksense/task_failure",
        "qliksense/task_failure_full",
        "qliksense/task_aborted",
        "qliksense/task_aborted_full",
    ]
    assert by_topic["qliksense/task_failure"] == (
        b"Manually triggered reload of Test failing reloads 2"
    )
    assert by_topic["qliksense/task_failure_full"] == FAILED_FULL
    assert by_topic["qliksense/task_aborted"] == by_topic["qliksense/task_failure"]
    # The aborted payload: its own datagram fields, and qs_appMetadata before qs_taskMetadata.
    expected_aborted = (
        FAILED_FULL.replace(b'"pro2-win1"', b'"sense-node-2"')
        .replace(b'"LAB\\\\goran","taskName"', b'"CORP\\\\anna","taskName"')
        .replace(b"2021-02-16 09:24:59,099", b"2024-10-10 15:35:25,412")
        .replace(b"14a81bf5-f81c-4047-b1a1-193b0920de28", b"5d0e7c11-2b6a-4f3e-9d1c-0a1b2c3d4e5f")
        .replace(b"Max retries reached", b"Execution State Change to Aborting")
        .replace(b'"qs_taskMetadata"', ABORTED_APP_METADATA + b'"qs_taskMetadata"')
    )
    assert by_topic["qliksense/task_aborted_full"] == expected_aborted
    assert not any(seen.retain for seen in iot.seen)


# --- secrets -------------------------------------------------------------------------------


async def test_keys_urls_and_webhook_secrets_never_reach_a_log_line_receipt_or_dead_letter(
    mosquitto: Mosquitto,
    broker_settings: BrokerSettings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    prefix = broker_settings.topic_prefix
    failed = _with_custom_property(
        samples.sample_failed(), "Butler_FailedTask_Event_NewRelicAccount", ["finance"]
    )
    webhook_token = "whtoken-51c2e8a9f4"
    header_secret = "Bearer hdr-secret-0c9d7e"
    wrong_key = "NRII-revoked-key-9e8d7c"
    async with (
        NewRelicStandIn(INSERT_KEYS) as new_relic,
        Signl4StandIn(TEAM_SECRET) as signl4,
        HttpReceiver() as receiver,
    ):
        # Servers that echo the request back in their error: the reasons must not carry it on.
        signl4.respond_with(Scripted(503, f"upstream down for {signl4.url}"))
        receiver.respond_with(Answer(status=400, body=f"bad token {webhook_token}"))
        accounts = [dict(ACCOUNTS[0], insert_key=wrong_key), *ACCOUNTS[1:]]
        settings = _settings(
            tmp_path,
            new_relic={
                "accounts": accounts,
                "event_url": new_relic.base_url,
                "event": {"enabled": True, "always_accounts": ["prod"]},
            },
            signl4={"enabled": True, "url": signl4.url},
            webhooks=[
                {
                    "name": "ops",
                    "url": f"{receiver.url}hooks/{webhook_token}",
                    "hmac_secret": HMAC_SECRET,
                    "authorization": header_secret,
                }
            ],
        )
        secrets = [wrong_key, *INSERT_KEYS.values(), TEAM_SECRET, webhook_token, HMAC_SECRET]
        secrets.append(header_secret)
        with caplog.at_level(logging.DEBUG):
            async with (
                Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
                _running(settings, broker_settings),
            ):
                await _publish(mosquitto, prefix, failed)
                await observer.wait_for(lambda seen: len(_receipts(seen, prefix)) == 4)

    outcomes = {(r.destination, r.target): r.outcome for r in _receipts(observer.seen, prefix)}
    assert outcomes == {
        ("new-relic-event", "prod"): "dead_lettered",  # 403: the key was revoked
        ("new-relic-event", "finance"): "delivered",
        ("signl4", ""): "delivered",  # after the 503
        ("webhook:ops", ""): "dead_lettered",
    }
    reasons = sorted(letter.reason for letter in _dead_letters(observer.seen, prefix))
    assert reasons == [
        'New Relic account prod answered 403: {"error": "invalid insert key for this account"}',
        "webhook ops answered 400: bad token ***",
    ]
    assert any("Signl4 answered 503: upstream down for ***" in r.message for r in caplog.records)
    published = b"".join(seen.payload for seen in observer.seen).decode()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    contract.assert_hidden(secrets, published=published, log=logged, settings=settings)


async def test_a_429_is_retried_after_the_servers_retry_after(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    prefix = broker_settings.topic_prefix
    async with NewRelicStandIn(INSERT_KEYS) as new_relic:
        new_relic.respond_with(Scripted(429, "slow down", headers={"Retry-After": "0"}))
        settings = _settings(
            tmp_path,
            new_relic={
                "accounts": ACCOUNTS,
                "event_url": new_relic.base_url,
                "event": {"enabled": True, "always_accounts": ["ops"]},
            },
        )
        async with (
            Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/#") as observer,
            _running(settings, broker_settings),
        ):
            await _publish(mosquitto, prefix, samples.sample_aborted())
            await observer.wait_for(_receipts_for(prefix, "new-relic-event", 1))

    [receipt] = _receipts(observer.seen, prefix)
    assert (receipt.outcome, receipt.attempts) == ("delivered", 2)
    [batch] = new_relic.events
    assert batch.account_id == "1003"
    assert batch.events[0]["eventType"] == "qs_reloadTaskAbortedEvent"
    assert batch.events[0]["qs_user"] == "CORP/anna"
