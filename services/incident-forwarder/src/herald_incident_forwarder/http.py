"""One HTTP attempt and what its answer means to the runner.

2xx is delivered; 408, 425, 429 and 5xx, timeouts and network errors are transient (a server's
``Retry-After`` is passed on); any other status is permanent, with the response text so the
dead letter says why. The URL is never part of a reason: webhook URLs, Signl4 team secrets and
API keys live in it or next to it. Whatever the server echoes back is redacted too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from herald_shared import logs
from herald_shared.delivery.destination import TransientError
from herald_shared.delivery.http import failure
from herald_shared.http_client import Answer, HttpClient, Unreachable

RESPONSE_TEXT_LIMIT = 500  # enough to say why, short enough for a receipt
# httpx's pool size, which these destinations had before: the runner decides how many
# deliveries are in flight (8 by default), and a smaller pool would make them queue for a
# connection, the wait counting against their timeout.
CONNECTIONS = 100


@dataclass(frozen=True)
class Request:
    """One request as it goes out, built once per attempt (a signature covers exactly this)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None


async def send(
    client: HttpClient,
    request: Request,
    *,
    what: str,
    secrets: Iterable[str] = (),
) -> Answer:
    """Send ``request``; the answer when it is a 2xx, else the matching delivery error.

    ``what`` names the receiver in reasons (``Signl4``, ``New Relic account prod``), never by URL.
    """
    secrets = list(secrets)
    try:
        answer = await client.request(
            request.method, request.url, body=request.body, headers=request.headers
        )
    except Unreachable as error:  # a timeout or a network/TLS error; it never holds the URL
        raise TransientError(f"{what}: {logs.redact(str(error), secrets)}") from None
    if answer.ok:
        return answer
    text = logs.redact(answer.text.strip()[:RESPONSE_TEXT_LIMIT], secrets)
    reason = f"{what} answered {answer.status}" + (f": {text}" if text else "")
    raise failure(answer.status, reason, answer.headers.get("Retry-After"))
