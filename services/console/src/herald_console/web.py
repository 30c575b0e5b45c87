"""The console's HTTP side: server-rendered pages, Server-Sent Events, and the JSON API's
routes (``herald_console.api``).

Pages are Jinja2 templates with autoescape on: nothing that came from Qlik (task and app names,
script logs, messages) reaches a page unescaped, and the Content-Security-Policy allows only the
console's own script and style sheet, so even a mistake could not run a script. Every asset is
served from the package (``static/``): no CDN, no build step. ``docs/console.md`` lists every
endpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Final, get_args
from urllib.parse import urlencode, urlsplit

import jinja2
import msgspec
from aiohttp import web

from herald_console import auth
from herald_console.actions import SCOPES, TEST_KINDS, ActionError, Actions
from herald_console.api import Api, instances, stored
from herald_console.feed import Feed
from herald_console.queries import event_filter, seconds, whole_number
from herald_shared import silence_command
from herald_shared.bus import BusError
from herald_shared.delivery.receipts import DeliveryState
from herald_shared.events import KINDS
from herald_shared.silences import Matcher

__all__ = ["Web"]

STATIC: Final = resources.files("herald_console") / "static"
_MEDIA: Final = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
#: The outcomes the filter offers; any other state a receipt carries is shown as it is.
OUTCOMES: Final = (*get_args(DeliveryState), "grouped", "taken", "retrying")
DURATIONS: Final = ("30m", "1h", "2h", "4h", "8h", "1d", "7d")
KEEPALIVE: Final = 15.0  # seconds between SSE comments, so proxies keep the stream open


def _when(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _web_link(url: str | None) -> str:
    """``url`` when it is http(s), else "": an event's links come from the configuration and the
    QRS, and a ``javascript:`` URL would run in the console's origin."""
    if url and urlsplit(url).scheme.lower() in ("http", "https"):
        return url
    return ""


class Web:
    def __init__(self, feed: Feed, actions: Actions, access: auth.Access, page_size: int) -> None:
        self.feed = feed
        self.store = feed.store
        self.actions = actions
        self.page_size = page_size
        self.closing = asyncio.Event()
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("herald_console", "templates"),
            autoescape=True,  # every template, whatever its name
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["when"] = _when
        self.templates.filters["web_link"] = _web_link
        self.app = web.Application(middlewares=[_security_headers, access.middleware])
        self.app.add_routes(
            [
                web.get("/", self.events_page),
                web.get("/events/{event_id}", self.event_page),
                web.get("/events/{event_id}/row", self.event_row),
                web.get("/events/{event_id}/deliveries", self.event_deliveries),
                web.get("/dead-letters", self.dead_letters_page),
                web.get("/silences", self.silences_page),
                web.get("/services", self.services_page),
                web.get("/test", self.test_page),
                web.get("/live", self.live),
                web.get("/static/{name}", self.static),
                web.post("/replay", self.replay_form),
                web.post("/silences", self.silence_form),
                web.post("/silences/{silence_id}/expire", self.expire_form),
                web.post("/test", self.test_form),
                *Api(feed, actions, page_size).routes(),
            ]
        )

    # --- rendering -------------------------------------------------------------------------

    def render(
        self, request: web.Request, name: str, status: int = 200, **values: Any
    ) -> web.Response:
        account = auth.account_of(request)
        html = self.templates.get_template(name).render(
            account=account, path=request.path, seq=self.feed.announcements.last, **values
        )
        return web.Response(text=html, status=status, content_type="text/html")

    # --- pages -----------------------------------------------------------------------------

    async def events_page(self, request: web.Request) -> web.Response:
        chosen = event_filter(request.query)
        offset = whole_number(request.query.get("offset", ""), "offset", 0, 10**9)
        rows = self.store.events(chosen, limit=self.page_size, offset=offset)
        query = {k: v for k, v in request.query.items() if k != "offset" and v}
        return self.render(
            request,
            "events.html",
            rows=rows,
            chosen=chosen,
            query=request.query,
            filters=urlencode(query),
            kinds=KINDS,
            outcomes=OUTCOMES,
            offset=offset,
            page_size=self.page_size,
            total=self.store.count(),
        )

    async def event_page(self, request: web.Request) -> web.Response:
        row = stored(self.feed, request.match_info["event_id"])
        event = row.event()
        body = msgspec.json.format(row.body, indent=2).decode()
        return self.render(
            request,
            "event.html",
            row=row,
            event=event,
            body=body,
            timeline=self.store.timeline(row.event_id),
            scopes=SCOPES,
            durations=DURATIONS,
        )

    async def event_row(self, request: web.Request) -> web.Response:
        """One row of the events table, for the live page: 204 when it does not match its filters."""
        event_id = request.match_info["event_id"]
        if not self.store.matches(event_id, event_filter(request.query)):
            return web.Response(status=204)
        row = stored(self.feed, event_id)
        return self.render(request, "_row.html", row=row)

    async def event_deliveries(self, request: web.Request) -> web.Response:
        row = stored(self.feed, request.match_info["event_id"])
        return self.render(
            request, "_deliveries.html", row=row, timeline=self.store.timeline(row.event_id)
        )

    async def dead_letters_page(self, request: web.Request) -> web.Response:
        return self.render(
            request,
            "dead_letters.html",
            letters=self.store.dead_letters(),
            replays=self.store.replays(),
            asked=request.query.get("asked", ""),
        )

    async def silences_page(self, request: web.Request) -> web.Response:
        now = datetime.now(UTC)
        shown = sorted(self.feed.silences.values(), key=lambda s: s.starts, reverse=True)
        return self.render(
            request,
            "silences.html",
            silences=[(s, silence_command.state(s, now)) for s in shown],
            durations=DURATIONS,
        )

    async def services_page(self, request: web.Request) -> web.Response:
        return self.render(request, "services.html", instances=instances(self.feed))

    async def test_page(self, request: web.Request) -> web.Response:
        return self.render(request, "test.html", kinds=TEST_KINDS)

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        asset = STATIC / name
        suffix = name[name.rfind(".") :] if "." in name else ""
        if "/" in name or suffix not in _MEDIA or not asset.is_file():
            raise web.HTTPNotFound(text="404: no such asset\n")
        return web.Response(
            body=asset.read_bytes(),
            content_type=_MEDIA[suffix],
            headers={"Cache-Control": "private, max-age=300"},
        )

    async def live(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: ``event: <what>`` / ``data: <id>`` for every change."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        since = request.headers.get("Last-Event-ID") or request.query.get("since", "")
        queue = self.feed.announcements.listen(int(since) if since.isdigit() else None)
        closing = asyncio.ensure_future(self.closing.wait())
        try:
            await response.write(b"retry: 2000\n\n")
            while not self.closing.is_set():
                taking = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {taking, closing}, timeout=KEEPALIVE, return_when=asyncio.FIRST_COMPLETED
                )
                if taking in done:
                    seq, kind, data = taking.result()
                    await response.write(f"id: {seq}\nevent: {kind}\ndata: {data}\n\n".encode())
                    continue
                taking.cancel()
                if closing in done:
                    break  # the console stops: the page's EventSource reconnects later
                await response.write(b": keepalive\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            closing.cancel()
            self.feed.announcements.forget(queue)
        return response

    # --- forms (operators) -----------------------------------------------------------------

    async def _form(
        self, request: web.Request, act: Callable[[Any, auth.Account], Awaitable[str]]
    ) -> web.StreamResponse:
        form = await request.post()
        try:
            where = await act(form, auth.account_of(request))
        except ActionError as error:
            return self.render(request, "problem.html", status=400, problem=str(error))
        except BusError as error:
            return self.render(request, "problem.html", status=503, problem=str(error))
        raise web.HTTPSeeOther(where)

    async def replay_form(self, request: web.Request) -> web.StreamResponse:
        async def act(form: Any, account: auth.Account) -> str:
            seqs = [int(v) for v in form.getall("letter", []) if str(v).isdigit()]
            asked = await self.actions.replay_dead_letters(seqs, account.name)
            return "/dead-letters?" + urlencode({"asked": ",".join(a.request.id for a in asked)})

        return await self._form(request, act)

    async def silence_form(self, request: web.Request) -> web.StreamResponse:
        async def act(form: Any, account: auth.Account) -> str:
            event_id = str(form.get("event_id", ""))
            if event_id:
                matchers = self.actions.matchers_for(event_id, str(form.get("scope", "")))
            else:
                key, _, value = str(form.get("match", "")).partition("=")
                matchers = [Matcher(key.strip(), value)] if value else []
            await self.actions.add_silence(
                matchers,
                seconds(str(form.get("duration", ""))),
                str(form.get("comment", "")),
                account.name,
            )
            return "/silences"

        return await self._form(request, act)

    async def expire_form(self, request: web.Request) -> web.StreamResponse:
        async def act(_form: Any, _account: auth.Account) -> str:
            await self.actions.expire_silence(request.match_info["silence_id"])
            return "/silences"

        return await self._form(request, act)

    async def test_form(self, request: web.Request) -> web.StreamResponse:
        async def act(form: Any, _account: auth.Account) -> str:
            event = await self.actions.send_test(str(form.get("kind", "failed")))
            return f"/events/{event.event_id}"

        return await self._form(request, act)


@web.middleware
async def _security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as error:
        error.headers.update(_HEADERS)
        raise
    if not response.prepared:
        response.headers.update(_HEADERS)
    return response
