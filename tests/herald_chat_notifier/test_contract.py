"""Slack and Teams (adaptive and message cards) against the destination contract
(``herald_testkit.contract``): the HTTP status table, secrets, ``when:`` and targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from herald_chat_notifier.destinations import slack, teams
from herald_shared import samples
from herald_shared.delivery.destination import Context, Destination
from herald_shared.settings import BrokerSettings
from herald_testkit import contract
from herald_testkit.http import HttpReceiver

TOKEN = "XoXoSeCrEtWeBhOoKtOkEn"  # the secret part of every webhook URL here
SAMPLE = samples.sample_failed()
CONTEXT = Context(service=contract.SERVICE, broker=BrokerSettings())


def _builder(module: Any, settings_class: Any, path: str, **extra: Any) -> contract.Build:
    """A target of ``module`` (slack or teams) posting to ``<url><path>/<TOKEN>``."""

    def build(
        url: str, *, timeout: float = 10.0, when: dict[str, Any] | None = None
    ) -> Destination:
        target = {"name": "ops", "webhook_url": f"{url}{path}/{TOKEN}", "timeout": timeout, **extra}
        if when is not None:
            target["when"] = when
        settings = settings_class.model_validate(target)
        built: list[Destination] = module.destinations([settings], CONTEXT)
        return built[0]

    return build


BUILDERS = {
    "slack": _builder(slack, slack.SlackTarget, "slack/services/T000/B000"),
    "teams": _builder(teams, teams.TeamsTarget, "teams/workflows"),
    "teams-message-card": _builder(
        teams, teams.TeamsTarget, "teams/connector", format="message_card"
    ),
}


@pytest.fixture(params=list(BUILDERS))
def build(request: pytest.FixtureRequest) -> contract.Build:
    return BUILDERS[request.param]


@pytest.mark.parametrize("row", contract.HTTP_STATUS_TABLE, ids=str)
async def test_every_status_means_what_the_contract_says(
    build: contract.Build, row: contract.Row
) -> None:
    await contract.check_http_status(build, row, SAMPLE, [TOKEN])


async def test_the_webhook_token_never_leaks(build: contract.Build, tmp_path: Path) -> None:
    await contract.check_http_secrets(build, SAMPLE, [TOKEN], tmp_path)


async def test_when_selects_the_events_and_each_target_is_one_delivery(
    build: contract.Build, tmp_path: Path
) -> None:
    async with HttpReceiver() as server:
        destination = build(server.url, when=contract.selecting(SAMPLE))
        await contract.check_selection(destination, SAMPLE, [""], tmp_path)
