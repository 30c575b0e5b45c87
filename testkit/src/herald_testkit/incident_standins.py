"""Stand-ins for New Relic's Event and Log APIs and Signl4's team webhook, on loopback.

Each is a real aiohttp server that checks what the real service checks (the key, the body's
shape, New Relic's attribute types and limits), records what it accepts, and answers scripted
statuses on request (``respond_with``), so tests see retries and dead letters as they happen.

- New Relic Event API: ``POST /v1/accounts/<id>/events`` with ``Api-Key`` (that account's insert
  key, else 403); a JSON array of objects, each with an ``eventType`` and only string or number
  attribute values (at most 254, each at most 4096 characters), else 400; answers 200.
- New Relic Log API: ``POST /log/v1`` with ``Api-Key`` (it names the account); the body
  ``[{"common": {"attributes": {…}}, "logs": [{"message": …}]}]``; answers 202.
- Signl4: ``POST /webhook/<team secret>`` with a JSON object carrying Title, Message,
  X-S4-Service, X-S4-ExternalID and X-S4-Status (new, acknowledged or resolved); answers 201.
  Each alert's X-Herald-Event-Id header is kept beside it (``alert_event_ids``).
"""

from __future__ import annotations

import json
import re
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from herald_testkit.http import LoopbackServer

MAX_ATTRIBUTES = 254
MAX_VALUE_LENGTH = 4096
_EVENT_TYPE = re.compile(r"^[A-Za-z0-9:_]{1,255}$")


@dataclass
class Scripted:
    """An answer given instead of the normal one."""

    status: int
    body: str = "scripted failure"
    headers: dict[str, str] = field(default_factory=dict)


class _Bad(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _StandIn(LoopbackServer):
    """The scripted answers and the JSON checks; subclasses add routes."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.requests = 0  # every request, whatever it was answered
        self.rejected: list[tuple[int, str]] = []  # (status, why) of refused requests
        self._script: deque[Scripted] = deque()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def respond_with(self, *answers: Scripted) -> None:
        """Answer the next requests with these, in order; then normally again."""
        self._script.extend(answers)

    async def _answer(
        self, request: web.Request, accept: Callable[[Any], web.Response]
    ) -> web.Response:
        self.requests += 1
        self._changed.set()
        if self._script:
            scripted = self._script.popleft()
            self.rejected.append((scripted.status, scripted.body))
            return web.Response(
                status=scripted.status, text=scripted.body, headers=scripted.headers
            )
        try:
            if request.content_type != "application/json":
                raise _Bad(415, f"expected application/json, got {request.content_type}")
            try:
                body = json.loads(await request.read())
            except ValueError:
                raise _Bad(400, "the body is not JSON") from None
            response = accept(body)
        except _Bad as bad:
            self.rejected.append((bad.status, bad.message))
            self._changed.set()
            return web.json_response({"error": bad.message}, status=bad.status)
        self._changed.set()
        return response


# --- New Relic -------------------------------------------------------------------------------


@dataclass
class NewRelicEvents:
    account_id: str
    events: list[dict[str, Any]]


@dataclass
class NewRelicLogs:
    account_id: str
    payload: list[dict[str, Any]]

    @property
    def attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = self.payload[0]["common"]["attributes"]
        return attributes

    @property
    def message(self) -> str:
        message: str = self.payload[0]["logs"][0]["message"]
        return message


def _check_attributes(attributes: Any, where: str) -> None:
    if not isinstance(attributes, dict):
        raise _Bad(400, f"{where} must be an object")
    if len(attributes) > MAX_ATTRIBUTES:
        raise _Bad(400, f"{where} has {len(attributes)} attributes, at most {MAX_ATTRIBUTES}")
    for name, value in attributes.items():
        # bool is an int in Python, but not a type New Relic accepts.
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _Bad(400, f"{where}.{name}: {type(value).__name__} is not a string or number")
        if isinstance(value, str) and len(value) > MAX_VALUE_LENGTH:
            raise _Bad(400, f"{where}.{name}: longer than {MAX_VALUE_LENGTH} characters")


class NewRelicStandIn(_StandIn):
    def __init__(self, insert_keys: dict[str, str], host: str = "127.0.0.1") -> None:
        """``insert_keys``: account id -> the insert key that account accepts."""
        super().__init__(host)
        self.insert_keys = insert_keys
        self.events: list[NewRelicEvents] = []
        self.logs: list[NewRelicLogs] = []

    @property
    def log_url(self) -> str:
        return f"{self.base_url}/log/v1"

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/accounts/{account_id}/events", self._events)
        app.router.add_post("/log/v1", self._logs)

    async def _events(self, request: web.Request) -> web.Response:
        account_id = request.match_info["account_id"]

        def accept(body: Any) -> web.Response:
            if request.headers.get("Api-Key") != self.insert_keys.get(account_id):
                raise _Bad(403, "invalid insert key for this account")
            if not isinstance(body, list) or not body:
                raise _Bad(400, "expected a non-empty JSON array of events")
            for index, event in enumerate(body):
                _check_attributes(event, f"[{index}]")
                if not _EVENT_TYPE.match(str(event.get("eventType", ""))):
                    raise _Bad(400, f"[{index}]: missing or invalid eventType")
            self.events.append(NewRelicEvents(account_id, body))
            return web.json_response({"success": True, "uuid": str(uuid.uuid4())}, status=200)

        return await self._answer(request, accept)

    async def _logs(self, request: web.Request) -> web.Response:
        def accept(body: Any) -> web.Response:
            key = request.headers.get("Api-Key")
            accounts = [account for account, known in self.insert_keys.items() if known == key]
            if not accounts:
                raise _Bad(403, "invalid insert key")
            if not isinstance(body, list) or not body:
                raise _Bad(400, "expected a non-empty JSON array of log batches")
            for index, batch in enumerate(body):
                if not isinstance(batch, dict) or not isinstance(batch.get("logs"), list):
                    raise _Bad(400, f"[{index}]: expected an object with logs")
                _check_attributes(
                    batch.get("common", {}).get("attributes", {}), f"[{index}].common.attributes"
                )
                for entry in batch["logs"]:
                    if not isinstance(entry, dict) or not isinstance(entry.get("message"), str):
                        raise _Bad(400, f"[{index}].logs: every entry needs a message")
            self.logs.append(NewRelicLogs(accounts[0], body))
            return web.json_response({"requestId": str(uuid.uuid4())}, status=202)

        return await self._answer(request, accept)


# --- Signl4 ----------------------------------------------------------------------------------

SIGNL4_REQUIRED = ("Title", "Message", "X-S4-Service", "X-S4-ExternalID", "X-S4-Status")


class Signl4StandIn(_StandIn):
    def __init__(self, team_secret: str, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.team_secret = team_secret
        self.alerts: list[dict[str, Any]] = []
        #: each accepted alert's X-Herald-Event-Id header, in the order of ``alerts``
        self.alert_event_ids: list[str] = []

    @property
    def url(self) -> str:
        """The team webhook: the secret is in the URL."""
        return f"{self.base_url}/webhook/{self.team_secret}"

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/webhook/{secret}", self._webhook)

    async def _webhook(self, request: web.Request) -> web.Response:
        def accept(body: Any) -> web.Response:
            if request.match_info["secret"] != self.team_secret:
                raise _Bad(404, "unknown team")
            if not isinstance(body, dict):
                raise _Bad(400, "expected a JSON object")
            missing = [key for key in SIGNL4_REQUIRED if not isinstance(body.get(key), str)]
            if missing:
                raise _Bad(400, f"missing: {', '.join(missing)}")
            if body["X-S4-Status"] not in ("new", "acknowledged", "resolved"):
                raise _Bad(400, "X-S4-Status must be new, acknowledged or resolved")
            self.alerts.append(body)
            self.alert_event_ids.append(request.headers.get("X-Herald-Event-Id", ""))
            return web.json_response({"eventId": str(uuid.uuid4())}, status=201)

        return await self._answer(request, accept)
