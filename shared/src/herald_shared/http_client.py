"""Outgoing HTTP for the services: one kept-alive aiohttp session per destination or API.

aiohttp rather than httpx: measured here, an httpx request cost about 0.8 ms of CPU against
about 0.1 ms for aiohttp, and Herald makes up to eight requests per event (three to the QRS,
Slack, Teams, New Relic, Signl4, a webhook). What a caller gets back is the whole answer, already
read (:class:`Answer`), or :class:`Unreachable` with a message that never holds the URL: URLs of
chat webhooks and Signl4 teams are secrets, and so may be what a server echoes back. Redirects
are not followed: a 3xx is the answer, so no request (and no key in its headers) goes to a host
that was not configured.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
from multidict import CIMultiDictProxy
from yarl import URL

from herald_shared import logs

__all__ = ["Answer", "HttpClient", "Unreachable"]


class Unreachable(Exception):
    """No answer: a timeout, a refused connection, a TLS failure. Never names the URL."""


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    headers: CIMultiDictProxy[str]  # case-insensitive, as HTTP headers are
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is not."""
        try:
            return msgspec.json.decode(self.body)
        except msgspec.DecodeError as error:
            raise ValueError(str(error)) from None


class HttpClient:
    """Requests to one service, over connections kept open between them.

    The session is made on first use, inside the running event loop (aiohttp requires it).
    ``secrets``: strings redacted from any error message (a webhook's URL and token).
    """

    def __init__(
        self,
        *,
        timeout: float,
        tls: ssl.SSLContext | None = None,
        headers: Mapping[str, str] | None = None,
        connections: int = 8,
        secrets: Iterable[str] = (),
    ) -> None:
        self.timeout = timeout
        self._tls = tls
        self._headers = dict(headers or {})
        self._connections = connections
        self._secrets = {secret for secret in secrets if secret}
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(
                    ssl=self._tls if self._tls is not None else True,
                    limit=self._connections,
                    keepalive_timeout=60.0,
                ),
                headers=self._headers,
                cookie_jar=aiohttp.DummyCookieJar(),  # an API client keeps no cookies
                trust_env=False,
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Answer:
        """The answer, whatever its status; :class:`Unreachable` when there is none."""
        target = URL(url)
        if params:
            target = target.extend_query(params)  # keeps the URL's own query string
        try:
            # No redirects: aiohttp would re-send the request, with headers such as New
            # Relic's Api-Key, to whatever host the Location names; a 3xx is an answer
            # (permanent, see herald_shared.delivery.http) that the administrator can act on.
            request = self._open().request(
                method, target, data=body, headers=headers, allow_redirects=False
            )
            async with request as response:
                content = await response.read()
                return Answer(response.status, response.reason or "", response.headers, content)
        except TimeoutError:  # aiohttp's own timeouts are TimeoutErrors too
            raise Unreachable(f"no answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as error:
            text = logs.redact(str(error), self._secrets) if str(error) else ""
            raise Unreachable(
                f"{type(error).__name__}: {text}" if text else type(error).__name__
            ) from None

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
            # Lets the TLS transports finish closing before the loop does (aiohttp's advice).
            await asyncio.sleep(0)
