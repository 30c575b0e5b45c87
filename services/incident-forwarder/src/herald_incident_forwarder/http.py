"""One HTTP attempt and what its answer means to the runner.

2xx is delivered; 408, 425, 429 and 5xx, timeouts and network errors are transient (a server's
``Retry-After`` is passed on); any other status is permanent, with the response text so the
dead letter says why. The URL is never part of a reason: webhook URLs, Signl4 team secrets and
API keys live in it or next to it. Whatever the server echoes back is redacted too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from herald_shared import logs
from herald_shared.delivery.destination import PermanentError, TransientError

TRANSIENT_STATUSES = frozenset({408, 425, 429})
RESPONSE_TEXT_LIMIT = 500  # enough to say why, short enough for a receipt

# httpx logs every request's URL at INFO. `herald run` redacts on its handler, but the records
# also reach any other handler (a test's, an embedding application's): redact at the source.
_httpx_logger = logging.getLogger("httpx")
if logs.REDACTOR not in _httpx_logger.filters:
    _httpx_logger.addFilter(logs.REDACTOR)


#: Path segments and query values at least this long are taken for tokens (Slack's are 24
#: characters, a GUID 36, a Signl4 team secret about 10 and up); shorter ones are words.
TOKEN_LENGTH = 10


def url_secrets(url: str) -> list[str]:
    """What of a secret URL a server may echo back on its own: the URL, its password, and the
    path segments and query values long enough to be tokens."""
    parsed = httpx.URL(url)
    parts = [url, *parsed.path.split("/"), *(value for _, value in parsed.params.multi_items())]
    if parsed.password:
        parts.append(parsed.password)
    return [part for part in parts if part == url or len(part) >= TOKEN_LENGTH]


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, logs.REDACTED)
    return text


async def send(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    what: str,
    secrets: Iterable[str] = (),
) -> httpx.Response:
    """Send ``request``; the response when it is a 2xx, else the matching delivery error.

    ``what`` names the receiver in reasons (``Signl4``, ``New Relic account prod``), never by URL.
    """
    secrets = list(secrets)
    try:
        response = await client.send(request)
    except httpx.TimeoutException as error:
        raise TransientError(f"{what}: no answer in time ({type(error).__name__})") from None
    except httpx.TransportError as error:
        detail = redact(str(error), secrets) or type(error).__name__
        raise TransientError(f"{what}: {detail}") from None
    if response.is_success:
        return response
    text = redact(response.text.strip()[:RESPONSE_TEXT_LIMIT], secrets)
    reason = f"{what} answered {response.status_code}" + (f": {text}" if text else "")
    if response.status_code in TRANSIENT_STATUSES or response.status_code >= 500:
        raise TransientError(reason, retry_after=retry_after(response))
    raise PermanentError(reason)


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
