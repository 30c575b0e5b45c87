"""The console's JSON API (``/api/v1/…``): the history, the dead letters, the replays, the
silences and the services as JSON, and the operators' actions. ``docs/console.md`` lists every
endpoint."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from herald_console import auth
from herald_console.actions import ActionError, Actions
from herald_console.feed import Feed
from herald_console.queries import event_filter, iso, seconds, whole_number
from herald_console.store import EventRow
from herald_shared import silence_command
from herald_shared.bus import BusError
from herald_shared.silences import Matcher

__all__ = ["Api", "instances", "stored"]


def _event_json(row: EventRow) -> dict[str, Any]:
    return {
        "event_id": row.event_id,
        "kind": row.kind,
        "task_name": row.task_name,
        "app_name": row.app_name,
        "stream": row.stream,
        "occurred_at": iso(row.occurred_at),
        "received_at": iso(row.received_at),
        "test": row.test,
        "deliveries": [_delivery_json(d) for d in row.deliveries],
    }


def _delivery_json(delivery: Any) -> dict[str, Any]:
    found = dataclasses.asdict(delivery)
    found["at"] = iso(delivery.at)
    found["next_attempt_at"] = iso(delivery.next_attempt_at)
    return found


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(data), status=status, content_type="application/json"
    )


def stored(feed: Feed, event_id: str) -> EventRow:
    row = feed.store.event(event_id)
    if row is None:
        raise web.HTTPNotFound(text=f"404: no event {event_id} in the history\n")
    return row


def instances(feed: Feed) -> list[dict[str, Any]]:
    """Every service instance the broker told of, with when its service last reported."""
    return [
        {
            "service": i.service,
            "instance": i.instance,
            "status": i.status,
            "online": i.online,
            "destinations": i.destinations,
            "status_seen_at": iso(i.status_at),
            "last_report_at": iso(feed.last_seen.get(i.service)),
            # What the instance says of itself; None until it has (or after a clean stop).
            "self_report": None if i.report is None else msgspec.to_builtins(i.report),
        }
        for i in sorted(feed.instances.values(), key=lambda i: (i.service, i.instance))
    ]


class Api:
    def __init__(self, feed: Feed, actions: Actions, page_size: int) -> None:
        self.feed = feed
        self.store = feed.store
        self.actions = actions
        self.page_size = page_size

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v1/session", self.api_session),
            web.get("/api/v1/events", self.api_events),
            web.get("/api/v1/events/{event_id}", self.api_event),
            web.get("/api/v1/dead-letters", self.api_dead_letters),
            web.get("/api/v1/replays", self.api_replays),
            web.get("/api/v1/silences", self.api_silences),
            web.get("/api/v1/services", self.api_services),
            web.post("/api/v1/replay", self.api_replay),
            web.post("/api/v1/silences", self.api_add_silence),
            web.post("/api/v1/silences/{silence_id}/expire", self.api_expire_silence),
            web.post("/api/v1/test", self.api_test),
        ]

    async def api_session(self, request: web.Request) -> web.Response:
        account = auth.account_of(request)
        return _json(
            {"account": account.name, "role": account.role, "csrf_token": account.csrf_token}
        )

    async def api_events(self, request: web.Request) -> web.Response:
        limit = whole_number(request.query.get("limit", ""), "limit", self.page_size, 500)
        offset = whole_number(request.query.get("offset", ""), "offset", 0, 10**9)
        rows = self.store.events(event_filter(request.query), limit=limit, offset=offset)
        return _json({"events": [_event_json(row) for row in rows], "offset": offset})

    async def api_event(self, request: web.Request) -> web.Response:
        row = stored(self.feed, request.match_info["event_id"])
        return _json(
            {
                **_event_json(row),
                "event": msgspec.json.decode(row.body),
                "timeline": [
                    {**dataclasses.asdict(entry), "at": iso(entry.at)}
                    for entry in self.store.timeline(row.event_id)
                ],
            }
        )

    async def api_dead_letters(self, request: web.Request) -> web.Response:
        letters = self.store.dead_letters(
            whole_number(request.query.get("limit", ""), "limit", 200, 1000)
        )
        return _json({"dead_letters": [{**x, "at": iso(x["at"])} for x in letters]})

    async def api_replays(self, request: web.Request) -> web.Response:
        return _json({"replays": self.store.replays()})

    async def api_silences(self, request: web.Request) -> web.Response:
        now = datetime.now(UTC)
        return _json(
            {
                "silences": [
                    {**msgspec.to_builtins(s), "state": silence_command.state(s, now)}
                    for s in self.feed.silences.values()
                ]
            }
        )

    async def api_services(self, request: web.Request) -> web.Response:
        return _json({"instances": instances(self.feed)})

    async def _api(
        self, request: web.Request, act: Callable[[Any, auth.Account], Awaitable[Any]]
    ) -> web.Response:
        try:
            body = await request.json(loads=msgspec.json.decode) if request.can_read_body else {}
        except (msgspec.DecodeError, ValueError):
            return _json({"error": "the body is not JSON"}, 400)
        if not isinstance(body, dict):
            return _json({"error": "the body must be a JSON object"}, 400)
        try:
            return _json(await act(body, auth.account_of(request)))
        except ActionError as error:
            return _json({"error": str(error)}, 400)
        except BusError as error:
            return _json({"error": str(error)}, 503)
        except (TypeError, KeyError) as error:
            return _json({"error": f"unexpected body: {error}"}, 400)

    async def api_replay(self, request: web.Request) -> web.Response:
        async def act(body: dict[str, Any], account: auth.Account) -> Any:
            if "dead_letters" in body:
                asked = await self.actions.replay_dead_letters(
                    [int(seq) for seq in body["dead_letters"]], account.name
                )
            else:
                asked = [
                    await self.actions.replay(
                        str(body["service"]),
                        [str(e) for e in body.get("event_ids", [])],
                        body.get("destination"),
                        account.name,
                    )
                ]
            return {
                "requests": [
                    {"service": a.service, **msgspec.to_builtins(a.request)} for a in asked
                ]
            }

        return await self._api(request, act)

    async def api_add_silence(self, request: web.Request) -> web.Response:
        async def act(body: dict[str, Any], account: auth.Account) -> Any:
            if "event_id" in body:
                matchers = self.actions.matchers_for(
                    str(body["event_id"]), str(body.get("scope", "task"))
                )
            else:
                matchers = [
                    Matcher(str(m["key"]), str(m["value"])) for m in body.get("matchers", [])
                ]
            silence = await self.actions.add_silence(
                matchers,
                seconds(str(body.get("duration", ""))),
                str(body.get("comment", "")),
                account.name,
            )
            return msgspec.to_builtins(silence)

        return await self._api(request, act)

    async def api_expire_silence(self, request: web.Request) -> web.Response:
        async def act(_body: dict[str, Any], _account: auth.Account) -> Any:
            await self.actions.expire_silence(request.match_info["silence_id"])
            return {"expired": request.match_info["silence_id"]}

        return await self._api(request, act)

    async def api_test(self, request: web.Request) -> web.Response:
        async def act(body: dict[str, Any], _account: auth.Account) -> Any:
            event = await self.actions.send_test(str(body.get("kind", "failed")))
            return {"event_id": event.event_id, "task_name": event.task.name}

        return await self._api(request, act)
