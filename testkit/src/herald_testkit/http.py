"""A real HTTP receiver on loopback that records what it accepts and misbehaves on request.

Tests script its answers: a status per request (``respond_with``), a delay, a hang (the
request is held open and never answered, like a destination that died mid-delivery), or an
echo of the request in the answer's body (as servers that quote what they refuse), or a
dropped connection. Only
requests that were answered with a 2xx count as accepted.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

from aiohttp import web

from herald_testkit.ports import free_port


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0  # what it was answered with; 0 while unanswered


@dataclass
class Answer:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False
    #: Append the request as received (URL, headers, body) to ``body``, as servers that quote
    #: the request in their error do: what a destination must not pass on.
    echo: bool = False
    #: Close the connection instead of answering, as a server that crashes mid-request.
    drop: bool = False


class LoopbackServer:
    """A real aiohttp server on a free loopback port; subclasses add their routes in
    :meth:`_routes` and call ``self._changed.set()`` when what they recorded changed."""

    client_max_size = 1024**2  # aiohttp's default largest request body

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def wait_for(self, predicate: Callable[[Self], bool], within: float = 20.0) -> None:
        """Until ``predicate(server)`` holds; TimeoutError after ``within`` seconds."""

        async def until() -> None:
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), within)

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=self.client_max_size)
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


class HttpReceiver(LoopbackServer):
    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.requests: list[Request] = []
        self._script: deque[Answer] = deque()
        self.default = Answer()
        self._release = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def respond_with(self, *answers: Answer) -> None:
        """Answer the next requests with these, in order; then with ``default``."""
        self._script.extend(answers)

    def release_hung(self) -> None:
        """Let go of hung requests (they are then answered 503, never accepted)."""
        self._release.set()

    @property
    def accepted(self) -> list[Request]:
        return [request for request in self.requests if 200 <= request.status < 300]

    async def _handle(self, http_request: web.Request) -> web.Response:
        request = Request(
            method=http_request.method,
            path=http_request.path_qs,
            headers=dict(http_request.headers),
            body=await http_request.read(),
        )
        self.requests.append(request)
        self._changed.set()
        answer = self._script.popleft() if self._script else self.default
        if answer.hang:
            await self._release.wait()
            request.status = 503
            return web.Response(status=503, text="released")
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if answer.drop and http_request.transport is not None:
            http_request.transport.close()
            raise web.HTTPInternalServerError  # never sent: the connection is gone
        request.status = answer.status
        self._changed.set()
        text = answer.body
        if answer.echo:
            quoted = f"{http_request.method} {http_request.url} {request.headers} {request.body!r}"
            text = f"{text} {quoted}"
        return web.Response(status=answer.status, text=text, headers=answer.headers)

    def _routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    async def __aexit__(self, *_: object) -> None:
        self._release.set()
        await super().__aexit__()


def accepted_webhook_ids(receiver: HttpReceiver) -> list[str]:
    """The event ids of the Herald webhooks (``herald_event``) the receiver accepted, in order."""
    return [json.loads(r.body)["herald_event"]["event_id"] for r in receiver.accepted]
