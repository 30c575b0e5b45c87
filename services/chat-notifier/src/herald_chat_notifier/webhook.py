"""Posting a payload to a chat webhook and telling the runner what the answer means.

The webhook URL is a secret: it is never part of a reason, a detail or a log line, and what the
platform echoes back is redacted as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec
from pydantic import SecretStr
from yarl import URL

from herald_shared import logs
from herald_shared.config import reveal
from herald_shared.delivery.destination import TransientError
from herald_shared.delivery.http import failure
from herald_shared.http_client import Answer, HttpClient, Unreachable

REDACTED: Final = "<webhook>"
ERROR_TEXT_LIMIT: Final = 300

_encoder = msgspec.json.Encoder()


def encode(payload: Any) -> bytes:
    return _encoder.encode(payload)


@dataclass(frozen=True)
class Rejected:
    """A 400: the platform did not accept this payload (the caller may fall back)."""

    error: str


class Webhook:
    """One target's webhook: a keep-alive client and the URL it must never reveal."""

    def __init__(self, url: SecretStr, timeout: float) -> None:
        self._url = reveal(url) or ""
        # The path (and query) carry the token; the whole URL and the path are both redacted.
        path = URL(self._url).raw_path_qs if self._url else ""
        self._secrets = {self._url, path} - {"", "/"}
        self._timeout = timeout
        self._client = HttpClient(
            timeout=timeout,
            headers={"User-Agent": "herald-chat-notifier", "Content-Type": "application/json"},
            secrets=self._secrets,
        )

    async def start(self) -> None:
        pass  # the client connects on first use

    async def close(self) -> None:
        await self._client.close()

    def redact(self, text: str) -> str:
        return logs.redact(text, self._secrets, REDACTED)

    async def post(self, payload: Any) -> int | Rejected:
        """The 2xx status, or :class:`Rejected` for a 400; raises for anything else."""
        try:
            answer = await self._client.request("POST", self._url, body=encode(payload))
        except Unreachable as error:
            raise TransientError(f"cannot reach the webhook: {self.redact(str(error))}") from None
        if answer.ok:
            return answer.status
        text = self.redact(_error_text(answer))
        if answer.status == 400:
            return Rejected(text)
        what = "HTTP 429 (rate limited)" if answer.status == 429 else f"HTTP {answer.status}"
        raise failure(answer.status, f"{what}: {text}", answer.headers.get("Retry-After"))


def _error_text(answer: Answer) -> str:
    text = answer.text.strip() or answer.reason
    text = " ".join(text.split())
    return text if len(text) <= ERROR_TEXT_LIMIT else text[:ERROR_TEXT_LIMIT] + "…"
