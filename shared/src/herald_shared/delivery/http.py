"""What an HTTP answer means to the runner, for every destination that speaks HTTP.

2xx is delivered. 408, 425, 429 and 5xx are worth another try (passing on the server's
``Retry-After``); any other status will not change by asking again, so it is permanent and
the reason (the server's own words) goes into the dead letter. That includes a 3xx: redirects
are not followed (``http_client.py``), so the administrator fixes the URL instead. URLs of chat webhooks, Signl4
teams and the like are secrets: :func:`url_secrets` says which parts of one a server could echo
back, so they can be redacted from that reason.

:func:`send` is the one place that does this for every destination: the server's text is
redacted *before* it is cut to length (cutting first could leave the start of a token behind),
and a :class:`Request`'s repr shows neither its URL nor its header values.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from herald_shared import logs
from herald_shared.delivery.destination import DeliveryError, PermanentError, TransientError
from herald_shared.http_client import Answer, HttpClient, Unreachable

__all__ = [
    "CONNECTIONS",
    "EVENT_ID_HEADER",
    "RESPONSE_TEXT_LIMIT",
    "TOKEN_LENGTH",
    "TRANSIENT_STATUSES",
    "Request",
    "answer_text",
    "failure",
    "is_transient",
    "retry_after",
    "send",
    "url_secrets",
]

TRANSIENT_STATUSES: Final = frozenset({408, 425, 429})
#: Path segments and query values at least this long are taken for tokens (Slack's are 24
#: characters, a GUID 36, a Signl4 team secret about 10 and up); shorter ones are words.
TOKEN_LENGTH: Final = 10
#: The request header that names the event a message is about, as the e-mail's header of the same
#: name does: Slack, Teams and Signl4 take no idempotency key, so this is how a receiver, a proxy
#: log or a test tells which alert a request carries, and spots one sent twice.
EVENT_ID_HEADER: Final = "X-Herald-Event-Id"
RESPONSE_TEXT_LIMIT: Final = 500  # enough to say why, short enough for a receipt
#: Connections per destination's client: the runner decides how many deliveries are in flight
#: (8 by default), and a smaller pool would make them queue for a connection, the wait counting
#: against their timeout (100 is httpx's pool size, which these destinations had before).
CONNECTIONS: Final = 100


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
    return PermanentError(reason, status=status)


@dataclass(frozen=True)
class Request:
    """One request as it goes out, built once per attempt (a signature covers exactly this).

    Its repr names the method, the header names and the body's size only: the URL and the
    header values (``Authorization``, ``Api-Key``) are where the secrets are.
    """

    method: str
    url: str = field(repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    body: bytes | None = field(default=None, repr=False)
    params: Mapping[str, str] | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        size = 0 if self.body is None else len(self.body)
        return f"Request({self.method}, headers={sorted(self.headers)}, body={size} bytes)"


def answer_text(answer: Answer, secrets: Iterable[str]) -> str:
    """The server's words on one line, secrets redacted first, then cut to a receipt's size."""
    text = logs.redact(answer.text.strip() or answer.reason, secrets)
    text = " ".join(text.split())
    return text if len(text) <= RESPONSE_TEXT_LIMIT else text[:RESPONSE_TEXT_LIMIT] + "…"


async def send(
    client: HttpClient,
    request: Request,
    *,
    what: str = "",
    secrets: Iterable[str] = (),
    accept: Collection[int] = (),
) -> Answer:
    """Send ``request``; the answer when it is a 2xx (or in ``accept``), else the matching
    :class:`TransientError` or :class:`PermanentError`.

    ``what`` names the receiver in reasons (``Signl4``, ``New Relic account prod``), never by
    URL; without it a reason starts ``HTTP <status>``.
    """
    secrets = [secret for secret in secrets if secret]
    try:
        answer = await client.request(
            request.method,
            request.url,
            body=request.body,
            headers=request.headers,
            params=request.params,
        )
    except Unreachable as error:  # a timeout or a network/TLS error; it never holds the URL
        text = logs.redact(str(error), secrets)
        raise TransientError(f"{what}: {text}" if what else f"no answer: {text}") from None
    if answer.ok or answer.status in accept:
        return answer
    text = answer_text(answer, secrets)
    head = f"{what} answered {answer.status}" if what else f"HTTP {answer.status}"
    raise failure(
        answer.status, f"{head}: {text}" if text else head, answer.headers.get("Retry-After")
    )


def url_secrets(url: str) -> list[str]:
    """What of a secret URL a server may echo back on its own: the URL, its password, and the
    path segments and query values long enough to be tokens."""
    parts = urlsplit(url)
    found = [url, *parts.path.split("/"), *(value for _, value in parse_qsl(parts.query))]
    if parts.password:
        found.append(parts.password)
    return [part for part in found if part == url or len(part) >= TOKEN_LENGTH]
