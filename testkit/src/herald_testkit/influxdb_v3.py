"""An InfluxDB 3 write endpoint stand-in: ``POST /api/v3/write_lp`` checked as InfluxDB 3 does.

Debian has no InfluxDB 3, so this aiohttp server answers like one: 401 without the expected
``Authorization: Bearer <token>``, 400 for a wrong ``db``/``precision`` or a body that is not
valid line protocol, 204 otherwise. It parses every accepted line (:func:`parse_line`) so tests
can look at the points.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aiohttp import web

from herald_testkit.ports import free_port


@dataclass
class ParsedPoint:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, float | bool | str]
    time_ns: int


class _Scanner:
    """One pass over a line-protocol body, as InfluxDB reads it: names and tags end at an
    unescaped separator, a string field value runs to its closing quote (across lines)."""

    def __init__(self, body: str) -> None:
        self.text = body
        self.at = 0

    def _peek(self) -> str:
        return self.text[self.at] if self.at < len(self.text) else ""

    def name(self, stops: str) -> str:
        """Up to an unescaped character of ``stops``; escapes of ``,= `` removed."""
        out = []
        while self.at < len(self.text) and self.text[self.at] not in stops + "\n":
            char = self.text[self.at]
            if char == "\\" and self.at + 1 < len(self.text) and self.text[self.at + 1] in ",= ":
                out.append(self.text[self.at + 1])
                self.at += 2
                continue
            out.append(char)
            self.at += 1
        return "".join(out)

    def expect(self, char: str) -> None:
        if self._peek() != char:
            raise ValueError(f"expected {char!r} at {self.at}, found {self._peek()!r}")
        self.at += 1

    def field_value(self) -> float | bool | str:
        if self._peek() == '"':
            self.at += 1
            out = []
            while True:
                if self.at >= len(self.text):
                    raise ValueError("unterminated string field")
                char = self.text[self.at]
                if char == "\\" and self._next_is('"\\'):
                    out.append(self.text[self.at + 1])
                    self.at += 2
                elif char == '"':
                    self.at += 1
                    return "".join(out)
                else:
                    out.append(char)
                    self.at += 1
        raw = self.name(", ")
        if raw in ("t", "T", "true", "True", "TRUE"):
            return True
        if raw in ("f", "F", "false", "False", "FALSE"):
            return False
        if raw.endswith(("i", "u")):
            return float(int(raw[:-1]))
        return float(raw)

    def _next_is(self, chars: str) -> bool:
        return self.at + 1 < len(self.text) and self.text[self.at + 1] in chars

    def point(self) -> ParsedPoint:
        measurement = self.name(", ")
        if not measurement:
            raise ValueError("missing measurement")
        tags = {}
        while self._peek() == ",":
            self.at += 1
            key = self.name("=")
            self.expect("=")
            value = self.name(", ")
            if not key or not value:
                raise ValueError(f"invalid tag {key!r}={value!r}")
            tags[key] = value
        self.expect(" ")
        fields: dict[str, float | bool | str] = {}
        while True:
            key = self.name("=")
            self.expect("=")
            if not key:
                raise ValueError("empty field key")
            fields[key] = self.field_value()
            if self._peek() != ",":
                break
            self.at += 1
        self.expect(" ")
        stamp = self.name(" ")
        if not re.fullmatch(r"-?\d+", stamp):
            raise ValueError(f"invalid timestamp {stamp!r}")
        if self._peek() not in ("", "\n"):
            raise ValueError(f"unexpected {self._peek()!r} after the timestamp")
        return ParsedPoint(measurement, tags, fields, int(stamp))


def parse_points(body: str) -> list[ParsedPoint]:
    """Every point of a line-protocol body; ValueError when it is not valid."""
    scanner = _Scanner(body)
    points = []
    while scanner.at < len(body):
        if body[scanner.at] == "\n":
            scanner.at += 1
            continue
        points.append(scanner.point())
    return points


@dataclass
class WriteRequest:
    path: str
    query: dict[str, str]
    authorization: str | None
    body: str
    status: int = 0
    error: str = ""


@dataclass
class InfluxDB3StandIn:
    database: str
    token: str
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    requests: list[WriteRequest] = field(default_factory=list)
    points: list[ParsedPoint] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _handle(self, http_request: web.Request) -> web.Response:
        request = WriteRequest(
            path=http_request.path,
            query=dict(http_request.query),
            authorization=http_request.headers.get("Authorization"),
            body=(await http_request.read()).decode("utf-8", errors="replace"),
        )
        self.requests.append(request)
        status, error = self._check(request)
        request.status, request.error = status, error
        if status != 204:
            return web.json_response({"error": error}, status=status)
        return web.Response(status=204)

    def _check(self, request: WriteRequest) -> tuple[int, str]:
        if request.path != "/api/v3/write_lp":
            return 404, f"no route {request.path}"
        if request.authorization != f"Bearer {self.token}":
            return 401, "unauthorized access"
        if request.query.get("db") != self.database:
            return 400, f"database not found: {request.query.get('db')}"
        if request.query.get("precision") != "nanosecond":
            return 400, f"unexpected precision {request.query.get('precision')}"
        try:
            parsed = parse_points(request.body)
        except ValueError as error:
            return 400, f"parsing failed for write_lp endpoint: {error}"
        self.points.extend(parsed)
        return 204, ""

    async def __aenter__(self) -> InfluxDB3StandIn:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()
