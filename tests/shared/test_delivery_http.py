"""What an HTTP answer means to the runner (shared by every HTTP destination)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from herald_shared.delivery.destination import PermanentError, TransientError
from herald_shared.delivery.http import failure, retry_after, url_secrets


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
