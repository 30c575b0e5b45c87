"""Outgoing webhooks: Butler's keys (docs/butler-compatibility.md §4d), plus the whole Herald event.

One destination per configured webhook, ``webhook:<name>``. POST and PUT send a JSON body with
Butler's keys in Butler's order and the Herald event under ``herald_event``; GET sends Butler's
keys as query parameters (spaces as ``+``, like ``URLSearchParams``). Butler *replaces* the URL's
query string; Herald keeps it and appends, because a URL's query often carries the receiver's
token (``?code=…``). yarl encodes the query, as aiohttp sends it: characters a query may carry
as they are (``:``, ``@``, ``/``, ``,``) are not percent-encoded; any decoder reads them alike.

With ``hmac_secret`` the request carries ``<signature_header>: sha256=<hex>``, the HMAC-SHA256
of the exact body bytes (for GET, of the query string sent), so the receiver can trust it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BeforeValidator, Field, SecretStr
from yarl import URL

from herald_incident_forwarder import butler
from herald_shared import events
from herald_shared.config import Duration, Section, reveal
from herald_shared.delivery.destination import Context, Destination, Target
from herald_shared.delivery.http import CONNECTIONS, Request, send, url_secrets
from herald_shared.events import Event, TaskAborted
from herald_shared.http_client import HttpClient
from herald_shared.matcher import MATCH_ALL, When
from herald_shared.outcomes import Outcome, outcome_of, problem_outcomes
from herald_shared.tls import client_context

KEY = "webhooks"
HERALD_EVENT_KEY = "herald_event"


def _upper(value: object) -> object:
    # Butler accepts the method in any case (docs/butler-compatibility.md §4d).
    return value.upper() if isinstance(value, str) else value


class WebhookSettings(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")  # the destination is webhook:<name>
    url: SecretStr  # a URL can carry a token, so it is treated as a secret (or url_file)
    method: Annotated[Literal["GET", "POST", "PUT"], BeforeValidator(_upper)] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)  # extra request headers, not secret
    # Sent as the Authorization header (e.g. "Bearer …"): a secret (or authorization_file).
    authorization: SecretStr | None = None
    # `recovered` is a success that ends a failure or an abort; unlisted, it is a `succeeded`.
    outcomes: list[Outcome] = Field(default_factory=problem_outcomes, min_length=1)
    when: When = MATCH_ALL
    ca_file: Path | None = None  # None: the system's trust store
    verify: bool = True
    timeout: Duration = 10.0
    # With a secret, <signature_header>: sha256=<hex HMAC-SHA256 of the body (GET: the query)>.
    hmac_secret: SecretStr | None = None
    signature_header: str = "X-Herald-Signature-256"
    rate_limit: Duration | None = 300.0  # per task and outcome


def butler_fields(event: Event) -> dict[str, str]:
    """Butler's webhook keys, in Butler's order (appOwner* included, as the code sends them)."""
    owner = event.app.owner if event.app is not None else None
    # Butler sends the aborted user raw and the failed one with double backslashes collapsed.
    user = event.user if isinstance(event, TaskAborted) else butler.user_collapsed(event.user)
    fields = {
        "event": butler.outcome_words(event),
        "hostName": event.sense_host,
        "user": user,
        "taskName": event.task.name,
        "taskId": event.task.id,
        "appName": butler.app_name(event),
        "appId": butler.app_id(event),
        "appOwnerName": owner.name if owner is not None else "",
        "appOwnerUserDirectory": owner.directory if owner is not None else "",
        "appOwnerUserId": owner.user_id if owner is not None else "",
        "appOwnerEmail": owner.emails[0] if owner is not None and owner.emails else "",
        "logTimeStamp": event.log_timestamp,
        "logLevel": event.log_level,
        "executionId": event.execution.id,
        "logMessage": event.log_message,
    }
    if event.test:
        fields["test"] = "true"  # after Butler's keys: a receiver can drop test alerts
    return fields


def signature(secret: str, signed: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


class WebhookDestination(Destination):
    def __init__(self, settings: WebhookSettings) -> None:
        self.name = f"webhook:{settings.name}"
        self._settings = settings
        self._url = reveal(settings.url) or ""
        self._outcomes = frozenset(settings.outcomes)
        self._hmac_secret = reveal(settings.hmac_secret)
        self._headers = dict(settings.headers)
        authorization = reveal(settings.authorization)
        if authorization:
            self._headers["Authorization"] = authorization
        self._secrets = [
            # As configured and as yarl normalises it (how aiohttp would quote it in an error).
            *dict.fromkeys([*url_secrets(self._url), *url_secrets(str(URL(self._url)))]),
            *(secret for secret in (self._hmac_secret, authorization) if secret),
        ]
        self.when = settings.when
        self.rate_limit = settings.rate_limit
        self._client = HttpClient(
            timeout=settings.timeout,
            tls=client_context(ca_file=settings.ca_file, verify=settings.verify),
            connections=CONNECTIONS,
            secrets=self._secrets,
        )

    def targets(self, event: Event) -> Sequence[Target]:
        if outcome_of(event, self._outcomes) is None:
            return ()
        # The event kind keeps the rate keys already in the ledger valid across upgrades.
        return [Target(rate_key=f"{event.kind}|{event.task.id}")]

    def body(self, event: Event) -> dict[str, Any]:
        return {**butler_fields(event), HERALD_EVENT_KEY: events.to_builtins(event)}

    async def close(self) -> None:
        await self._client.close()

    def request(self, event: Event) -> Request:
        headers = dict(self._headers)
        body: bytes | None = None
        if self._settings.method == "GET":
            # The URL is built here rather than through HttpClient's params so that what is
            # signed is the query exactly as it goes out (yarl parses str(target) back to itself).
            target = URL(self._url).extend_query(butler_fields(event))
            url, signed = str(target), target.raw_query_string.encode()
        else:
            url = self._url
            body = signed = msgspec.json.encode(self.body(event))
            headers["Content-Type"] = "application/json"
        if self._hmac_secret:
            headers[self._settings.signature_header] = signature(self._hmac_secret, signed)
        return Request(self._settings.method, url, headers, body)

    async def deliver(self, event: Event, target: str) -> str | None:
        what = f"webhook {self._settings.name}"
        answer = await send(self._client, self.request(event), what=what, secrets=self._secrets)
        return f"{what} answered {answer.status} to {self._settings.method}"


def destinations(settings: list[WebhookSettings], context: Context) -> list[Destination]:
    """One destination per configured webhook."""
    return [WebhookDestination(webhook) for webhook in settings]
