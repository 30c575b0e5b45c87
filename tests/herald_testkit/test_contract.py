"""The destination contract has teeth: a destination that breaks a row, leaks a secret or
ignores ``when:`` fails it, naming what went wrong (never the secret)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from herald_shared import samples
from herald_shared.delivery.destination import Destination, PermanentError
from herald_shared.delivery.http import CONNECTIONS, Request, send, url_secrets
from herald_shared.events import Event
from herald_shared.http_client import HttpClient
from herald_shared.matcher import When
from herald_testkit import contract
from herald_testkit.http import HttpReceiver

TOKEN = "tok-7f3a9c1e5b2d"
SAMPLE = samples.sample_failed()


class Careless(Destination):
    """Posts to ``<url>hook/<TOKEN>`` and, when told to, gets the contract wrong."""

    name = "careless"

    def __init__(self, url: str, timeout: float, when: Any, *, fault: str = "") -> None:
        self._url = f"{url}hook/{TOKEN}"
        self._fault = fault
        self._client = HttpClient(timeout=timeout, connections=CONNECTIONS)
        if when is not None and fault != "ignores when":
            self.when = When.model_validate(when)

    async def deliver(self, event: Event, target: str) -> str | None:
        try:
            request = Request("POST", self._url, body=b"{}")
            secrets = () if self._fault == "unredacted" else url_secrets(self._url)
            answer = await send(self._client, request, secrets=secrets)
        except PermanentError:
            if self._fault == "leaks the url":
                raise PermanentError(f"{self._url} refused it") from None
            raise
        if self._fault == "unredacted":
            return f"HTTP {answer.status}: {answer.text}"
        return f"HTTP {answer.status}"

    async def close(self) -> None:
        await self._client.close()


def _careless(fault: str) -> contract.Build:
    def build(
        url: str, *, timeout: float = 10.0, when: dict[str, Any] | None = None
    ) -> Destination:
        return Careless(url, timeout, when, fault=fault)

    return build


async def test_a_destination_that_leaks_its_url_into_the_dead_letter_fails(tmp_path: Path) -> None:
    with pytest.raises(AssertionError) as failed:
        await contract.check_http_secrets(_careless("leaks the url"), SAMPLE, [TOKEN], tmp_path)
    assert "secret #0 in the receipts and dead letters" in str(failed.value)
    assert TOKEN not in str(failed.value)


@pytest.mark.parametrize("status", ["200", "500", "404"])
async def test_a_destination_that_passes_the_servers_words_on_unredacted_fails(
    status: str,
) -> None:
    [row] = [row for row in contract.HTTP_STATUS_TABLE if row.name == status]
    with pytest.raises(AssertionError, match="secret #0 in the reason"):
        await contract.check_http_status(_careless("unredacted"), row, SAMPLE, [TOKEN])


async def test_a_careful_destination_passes_every_row() -> None:
    for row in contract.HTTP_STATUS_TABLE:
        await contract.check_http_status(_careless(""), row, SAMPLE, [TOKEN])


async def test_a_destination_that_ignores_when_fails(tmp_path: Path) -> None:
    async with HttpReceiver() as server:
        destination = _careless("ignores when")(server.url, when=contract.selecting(SAMPLE))
        with pytest.raises(AssertionError):
            await contract.check_selection(destination, SAMPLE, [""], tmp_path)
