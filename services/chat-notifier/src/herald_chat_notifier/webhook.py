"""Posting a payload to a chat webhook and telling the runner what the answer means.

The webhook URL is a secret: it is never part of a reason, a detail or a log line. httpx logs
every request's URL at INFO, so its records are redacted here too (the process-wide redaction
filter covers the handlers ``herald run`` installs, not others a host application adds).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

import httpx
import msgspec
from pydantic import SecretStr

from herald_shared import logs
from herald_shared.config import reveal
from herald_shared.delivery.destination import TransientError
from herald_shared.delivery.http import failure

REDACTED: Final = "<webhook>"
ERROR_TEXT_LIMIT: Final = 300

_encoder = msgspec.json.Encoder()


# httpx's request log names the webhook: "POST <webhook>" keeps it readable and secret.
_REDACTOR: Final = logs.Redactor(replacement=REDACTED)
logging.getLogger("httpx").addFilter(_REDACTOR)


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
        parsed = httpx.URL(self._url)
        # The path (and query) carry the token; the whole URL and the path are both redacted.
        self._secrets = {self._url, parsed.raw_path.decode("ascii", "replace")} - {"", "/"}
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        _REDACTOR.add(self._secrets)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout),
            limits=httpx.Limits(max_keepalive_connections=8, keepalive_expiry=60.0),
            headers={"User-Agent": "herald-chat-notifier"},
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def redact(self, text: str) -> str:
        return logs.redact(text, self._secrets, REDACTED)

    async def post(self, payload: Any) -> int | Rejected:
        """The 2xx status, or :class:`Rejected` for a 400; raises for anything else."""
        assert self._client is not None, "start() was not called"
        body = encode(payload)
        try:
            response = await self._client.post(
                self._url, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.TimeoutException as error:
            raise TransientError(
                f"no answer within {self._timeout:g} s ({type(error).__name__})"
            ) from None
        except httpx.HTTPError as error:
            raise TransientError(
                f"cannot reach the webhook: {type(error).__name__}: {self.redact(str(error))}"
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return status
        text = self.redact(_error_text(response))
        if status == 400:
            return Rejected(text)
        what = "HTTP 429 (rate limited)" if status == 429 else f"HTTP {status}"
        raise failure(status, f"{what}: {text}", response.headers.get("Retry-After"))


def _error_text(response: httpx.Response) -> str:
    text = response.text.strip() or response.reason_phrase
    text = " ".join(text.split())
    return text if len(text) <= ERROR_TEXT_LIMIT else text[:ERROR_TEXT_LIMIT] + "…"
