"""New Relic (events, logs), Signl4, webhooks (POST, GET) and Butler's MQTT topics against the
destination contract (``herald_testkit.contract``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from herald_incident_forwarder.destinations import butler_mqtt, new_relic, signl4, webhooks
from herald_shared import samples
from herald_shared.delivery.destination import Context, Destination, DestinationModule
from herald_shared.settings import BrokerSettings
from herald_testkit import contract
from herald_testkit.http import HttpReceiver
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.ports import free_port

TEAM_SECRET = "team-secret-8f2a61c0d9b34e7a"
INSERT_KEY = "NRII-prod-key-3f9c2b7e1a"
WEBHOOK_TOKEN = "whtoken-51c2e8a9f4"
HMAC_SECRET = "hmac-secret-Zq8vR3xK"
AUTHORIZATION = "Bearer hdr-secret-0c9d7e"
BROKER_PASSWORD = "broker-password-4d7e1f"
SECRETS = [TEAM_SECRET, INSERT_KEY, WEBHOOK_TOKEN, HMAC_SECRET, AUTHORIZATION]
SAMPLE = samples.sample_failed()


def _built(module: DestinationModule, settings: Any) -> Destination:
    context = Context(service=contract.SERVICE, broker=BrokerSettings())
    built: list[Destination] = module.destinations(settings, context)
    return built[0]


def _when(when: dict[str, Any] | None) -> dict[str, Any]:
    return {} if when is None else {"when": when}


def _signl4(url: str, *, timeout: float = 10.0, when: dict[str, Any] | None = None) -> Destination:
    settings = signl4.Signl4Settings.model_validate(
        {"enabled": True, "url": f"{url}webhook/{TEAM_SECRET}", "timeout": timeout, **_when(when)}
    )
    return _built(signl4, settings)


def _new_relic(api: str) -> contract.Build:
    def build(
        url: str, *, timeout: float = 10.0, when: dict[str, Any] | None = None
    ) -> Destination:
        account = {"name": "prod", "account_id": "1001", "insert_key": INSERT_KEY}
        settings = new_relic.NewRelicSettings.model_validate(
            {
                "accounts": [account],
                "event_url": url,
                "log_url": f"{url}log/v1",
                "timeout": timeout,
                api: {"enabled": True, "always_accounts": ["prod"], **_when(when)},
            }
        )
        return _built(new_relic, settings)

    return build


def _webhook(method: str) -> contract.Build:
    def build(
        url: str, *, timeout: float = 10.0, when: dict[str, Any] | None = None
    ) -> Destination:
        webhook = {
            "name": "ops",
            "method": method,
            "url": f"{url}hooks/{WEBHOOK_TOKEN}?code={WEBHOOK_TOKEN}x",
            "authorization": AUTHORIZATION,
            "hmac_secret": HMAC_SECRET,
            "timeout": timeout,
            **_when(when),
        }
        return _built(webhooks, [webhooks.WebhookSettings.model_validate(webhook)])

    return build


HTTP_BUILDERS: dict[str, contract.Build] = {
    "signl4": _signl4,
    "new-relic-event": _new_relic("event"),
    "new-relic-log": _new_relic("log"),
    "webhook-post": _webhook("POST"),
    "webhook-get": _webhook("GET"),
}
TARGETS = {"signl4": [""], "webhook-post": [""], "webhook-get": [""]}


@pytest.fixture(params=list(HTTP_BUILDERS))
def name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.mark.parametrize("row", contract.HTTP_STATUS_TABLE, ids=str)
async def test_every_status_means_what_the_contract_says(name: str, row: contract.Row) -> None:
    await contract.check_http_status(HTTP_BUILDERS[name], row, SAMPLE, SECRETS)


async def test_no_key_url_or_webhook_secret_leaks(name: str, tmp_path: Path) -> None:
    await contract.check_http_secrets(HTTP_BUILDERS[name], SAMPLE, SECRETS, tmp_path)


async def test_when_selects_the_events_and_each_target_is_one_delivery(
    name: str, tmp_path: Path
) -> None:
    async with HttpReceiver() as server:
        destination = HTTP_BUILDERS[name](server.url, when=contract.selecting(SAMPLE))
        targets = TARGETS.get(name, ["prod"])
        await contract.check_selection(destination, SAMPLE, targets, tmp_path)


# --- Butler's MQTT topics: a broker, not HTTP ---------------------------------------------------


def _butler_mqtt(port: int, when: dict[str, Any] | None = None) -> Destination:
    broker = {"host": "127.0.0.1", "port": port, "username": "herald", "password": BROKER_PASSWORD}
    settings = butler_mqtt.ButlerMqttSettings.model_validate(
        {"enabled": True, "broker": broker, **_when(when)}
    )
    return _built(butler_mqtt, settings)


async def test_butler_mqtt_with_no_broker_listening_is_transient_and_hides_its_password() -> None:
    destination = _butler_mqtt(free_port())
    with contract.captured_logs() as logged:
        await destination.start()
        try:
            attempted = await contract.attempt(destination, SAMPLE)
        finally:
            await destination.close()
    assert attempted.result == "transient"
    assert "127.0.0.1" in attempted.text
    contract.assert_hidden(
        [BROKER_PASSWORD], log=logged.getvalue(), reason=attempted.text, destination=destination
    )


async def test_butler_mqtt_when_selects_the_events_and_each_topic_is_one_delivery(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    destination = _butler_mqtt(mosquitto.port, when=contract.selecting(SAMPLE))
    await contract.check_selection(destination, SAMPLE, ["basic", "full"], tmp_path)
