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

from herald_shared.config import reveal
from herald_shared.delivery.http import EVENT_ID_HEADER, Request, answer_text, send
from herald_shared.http_client import HttpClient

_HEADERS: Final = {"User-Agent": "herald-chat-notifier", "Content-Type": "application/json"}

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
        self._client = HttpClient(timeout=timeout, headers=_HEADERS, secrets=self._secrets)

    async def close(self) -> None:
        await self._client.close()

    async def post(self, payload: Any, event_id: str) -> int | Rejected:
        """The 2xx status, or :class:`Rejected` for a 400; raises for anything else."""
        headers = {EVENT_ID_HEADER: event_id}
        request = Request("POST", self._url, headers=headers, body=encode(payload))
        answer = await send(self._client, request, secrets=self._secrets, accept=(400,))
        if answer.status == 400:
            return Rejected(answer_text(answer, self._secrets))
        return answer.status
