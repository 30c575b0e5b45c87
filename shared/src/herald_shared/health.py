"""``/livez``, ``/readyz`` and ``/metrics`` on the process's health port, and ``POST /-/reload``.

``/-/healthy`` and ``/-/ready`` are the same as ``/livez`` and ``/readyz``, for those used to
Prometheus and Alertmanager; ``POST /-/reload`` reloads the configuration as SIGHUP does and
answers 200 once it is applied, or 400 with the problems that kept the previous one running.

The server runs on its own thread, so ``/livez`` can tell that the event loop has stopped
making progress (a heartbeat older than ``health.stall_after``) and Kubernetes restarts a hung
process; an HTTP server on the loop itself would hang with it and say nothing. ``/livez`` also
fails when a service's vital task has ended (``herald_shared.supervision``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from herald_shared.settings import HealthSettings
from herald_shared.supervision import every

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], tuple[bool, str]]
LivenessCheck = ReadinessCheck
#: Called on the server's thread; returns (applied, what to answer).
ReloadHandler = Callable[[], tuple[bool, str]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # probes every few seconds would drown the service's own log


class HealthServer:
    def __init__(self, settings: HealthSettings, on_reload: ReloadHandler | None = None) -> None:
        self._settings = settings
        self._on_reload = on_reload
        self._checks: dict[str, ReadinessCheck] = {}
        self._liveness: dict[str, LivenessCheck] = {}
        self._heartbeat = time.monotonic()
        self._metrics_app = make_wsgi_app()
        self._server: _Server | None = None
        self._beating: asyncio.Task[None] | None = None
        # Not ready until every service of the process has started: a probe must not send
        # traffic (or a test its datagrams) to a process that is still binding its sockets.
        self._started = False

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the health server has no port before start()")
        return int(self._server.server_address[1])

    def add_check(
        self, name: str, check: ReadinessCheck, liveness: LivenessCheck | None = None
    ) -> None:
        """``check`` returns (ready, explanation); /readyz is 200 only when every check is ready.

        ``liveness`` likewise for /livez, beside the event loop's heartbeat.
        """
        self._checks[name] = check
        if liveness is not None:
            self._liveness[name] = liveness

    def remove_checks(self) -> None:
        """Forget every service's checks (their services stopped for a reload)."""
        self._checks.clear()
        self._liveness.clear()

    def mark_started(self, started: bool = True) -> None:
        self._started = started

    def start(self) -> None:
        self._server = make_server(
            self._settings.host,
            self._settings.port,
            self._app,
            server_class=_Server,
            handler_class=_QuietHandler,
        )
        threading.Thread(target=self._server.serve_forever, name="health", daemon=True).start()
        self._beating = asyncio.create_task(every(1, self._beat, what="the health heartbeat"))
        log.info(
            "health endpoints on http://%s:%d/ (livez, readyz, metrics)",
            self._settings.host,
            self.port,
        )

    def stop(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _beat(self) -> None:
        self._heartbeat = time.monotonic()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/-/reload":
            return self._reload(environ, start_response)
        if path in ("/livez", "/-/healthy"):
            return self._livez(start_response)
        if path in ("/readyz", "/-/ready"):
            if not self._started:
                return _text(start_response, 503, "not ready: starting\n")
            return _report(start_response, self._checks, "not ready")
        return _text(start_response, 404, "not found: try /livez, /readyz or /metrics\n")

    def _reload(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return _text(start_response, 405, "use POST to reload the configuration\n")
        if self._on_reload is None:
            return _text(start_response, 404, "this process cannot reload its configuration\n")
        applied, answer = self._on_reload()
        return _text(start_response, 200 if applied else 400, answer + "\n")

    def _livez(self, start_response: Callable[..., Any]) -> list[bytes]:
        stalled = time.monotonic() - self._heartbeat
        if stalled > self._settings.stall_after:
            return _text(start_response, 503, f"event loop stalled for {stalled:.0f} s\n")
        if not self._liveness:
            return _text(start_response, 200, "ok\n")
        return _report(start_response, self._liveness, "not alive")


def _report(
    start_response: Callable[..., Any], checks: dict[str, ReadinessCheck], failing: str
) -> list[bytes]:
    """200 with every check's line if all pass; 503 with them if one fails."""
    lines, passed = [], True
    for name, check in checks.items():
        ok, why = check()
        passed &= ok
        lines.append(f"{'ok' if ok else failing}: {name}: {why}")
    return _text(start_response, 200 if passed else 503, "\n".join(lines) + "\n")


def _text(start_response: Callable[..., Any], status: int, body: str) -> list[bytes]:
    reason = {
        200: "OK",
        400: "Bad Request",
        404: "Not Found",
        405: "Method Not Allowed",
        503: "Service Unavailable",
    }[status]
    data = body.encode()
    start_response(
        f"{status} {reason}",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))],
    )
    return [data]
