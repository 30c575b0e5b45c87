"""One HTTP attempt and what its answer means to the runner.

2xx is delivered; 408, 425, 429 and 5xx, timeouts and network errors are transient (a server's
``Retry-After`` is passed on); any other status is permanent, with the response text so the
dead letter says why. The URL is never part of a reason: webhook URLs, Signl4 team secrets and
API keys live in it or next to it. Whatever the server echoes back is redacted too.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx

from herald_shared import logs
from herald_shared.delivery.destination import TransientError
from herald_shared.delivery.http import failure

RESPONSE_TEXT_LIMIT = 500  # enough to say why, short enough for a receipt


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
        detail = logs.redact(str(error), secrets) or type(error).__name__
        raise TransientError(f"{what}: {detail}") from None
    if response.is_success:
        return response
    text = logs.redact(response.text.strip()[:RESPONSE_TEXT_LIMIT], secrets)
    reason = f"{what} answered {response.status_code}" + (f": {text}" if text else "")
    raise failure(response.status_code, reason, response.headers.get("Retry-After"))
