"""What an HTTP answer means to the runner, for every destination that speaks HTTP.

2xx is delivered. 408, 425, 429 and 5xx are worth another try (passing on the server's
``Retry-After``); any other status will not change by asking again, so it is permanent and
the reason (the server's own words) goes into the dead letter. URLs of chat webhooks, Signl4
teams and the like are secrets: :func:`url_secrets` says which parts of one a server could echo
back, so they can be redacted from that reason.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from herald_shared.delivery.destination import DeliveryError, PermanentError, TransientError

TRANSIENT_STATUSES: Final = frozenset({408, 425, 429})
#: Path segments and query values at least this long are taken for tokens (Slack's are 24
#: characters, a GUID 36, a Signl4 team secret about 10 and up); shorter ones are words.
TOKEN_LENGTH: Final = 10


def is_transient(status: int) -> bool:
    return status in TRANSIENT_STATUSES or status >= 500


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header in seconds (it may be a number or an HTTP date), or None."""
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
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def failure(status: int, reason: str, retry_after_header: str | None = None) -> DeliveryError:
    """The error to raise for a non-2xx answer."""
    if is_transient(status):
        return TransientError(reason, retry_after=retry_after(retry_after_header))
    return PermanentError(reason)


def url_secrets(url: str) -> list[str]:
    """What of a secret URL a server may echo back on its own: the URL, its password, and the
    path segments and query values long enough to be tokens."""
    parts = urlsplit(url)
    found = [url, *parts.path.split("/"), *(value for _, value in parse_qsl(parts.query))]
    if parts.password:
        found.append(parts.password)
    return [part for part in found if part == url or len(part) >= TOKEN_LENGTH]
