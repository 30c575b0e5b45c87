"""What an HTTP answer means to the runner (shared by every HTTP destination)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from herald_shared.delivery.destination import PermanentError, TransientError
from herald_shared.delivery.http import (
    RESPONSE_TEXT_LIMIT,
    Request,
    failure,
    retry_after,
    send,
    url_secrets,
)
from herald_shared.http_client import HttpClient
from herald_testkit.http import Answer, HttpReceiver


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_statuses_worth_another_try_are_transient(status: int) -> None:
    error = failure(status, f"answered {status}", "7")
    assert isinstance(error, TransientError)
    assert error.retry_after == 7.0
    assert error.reason == f"answered {status}"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422])
def test_other_statuses_are_permanent(status: int) -> None:
    assert isinstance(failure(status, "no"), PermanentError)


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    now = datetime(2026, 11, 27, 8, 0, 0, tzinfo=UTC)
    assert retry_after("120", now) == 120.0
    assert retry_after("Fri, 27 Nov 2026 08:01:30 GMT", now) == 90.0
    assert retry_after("Fri, 27 Nov 2026 07:00:00 GMT", now) == 0.0  # in the past: now
    assert retry_after("soon", now) is None
    assert retry_after(None, now) is None


def test_the_token_parts_of_a_secret_url_are_found() -> None:
    url = "https://hooks.slack.com/services/T0000/B0000AAAA/XXXXXXXXXXXXXXXXXXXXXXXX?code=abcdef123456&x=1"
    found = url_secrets(url)
    assert url in found
    assert "XXXXXXXXXXXXXXXXXXXXXXXX" in found
    assert "B0000AAAA" not in found  # too short to be a token; a word, left readable
    assert "abcdef123456" in found
    assert "1" not in found


SECRET = "tok-9f8e7d6c5b4a3921"


def _fragments(secret: str, size: int = 6) -> list[str]:
    return [secret[start : start + size] for start in range(len(secret) - size + 1)]


async def test_an_echoed_secret_is_redacted_before_the_servers_text_is_cut() -> None:
    # The token straddles the cut: cutting first, then redacting, would leave its start behind.
    text = "x" * (RESPONSE_TEXT_LIMIT - 8) + SECRET
    async with HttpReceiver() as server:
        server.default = Answer(status=400, body=text)
        client = HttpClient(timeout=5.0)
        with pytest.raises(PermanentError) as refused:
            await send(client, Request("POST", server.url), what="hook", secrets=[SECRET])
        await client.close()
    assert refused.value.reason.startswith("hook answered 400: xxx")
    assert refused.value.status == 400
    assert not [part for part in _fragments(SECRET) if part in refused.value.reason]


def test_a_requests_repr_shows_neither_its_url_nor_its_header_values() -> None:
    request = Request(
        "POST",
        f"https://hooks.example.com/{SECRET}",
        headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"},
        body=SECRET.encode(),
    )
    shown = repr(request)
    assert "Authorization" in shown
    assert "POST" in shown
    assert not [part for part in _fragments(SECRET) if part in shown]
