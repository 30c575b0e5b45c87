"""Requests to reload the configuration, from SIGHUP and ``POST /-/reload``, answered in order.

Both arrive off the path of the running services: a signal handler, and the health server's own
thread. They queue here, and the runtime's loop takes them one at a time, so two reloads never
overlap. A signal gets no answer (the log says what happened); the HTTP request waits for its
answer, at most ``answer_within`` seconds, because a reload that stops services gives in-flight
deliveries their grace period first.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

__all__ = ["Reload", "ReloadRequests"]

#: Set to the answer's text when applied; to a ConfigError (or another error) when refused.
Reload = concurrent.futures.Future[str]


class ReloadRequests:
    def __init__(self, loop: asyncio.AbstractEventLoop, answer_within: float = 120.0) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[Reload] = asyncio.Queue()
        self._answer_within = answer_within

    def from_signal(self) -> None:
        """On the loop (an ``add_signal_handler`` callback)."""
        self._queue.put_nowait(Reload())

    def from_thread(self) -> tuple[bool, str]:
        """On another thread: wait for the reload's outcome, (applied, text for the caller)."""
        request = Reload()
        self._loop.call_soon_threadsafe(self._queue.put_nowait, request)
        try:
            return True, request.result(self._answer_within)
        except concurrent.futures.TimeoutError:
            return False, f"the reload did not finish within {self._answer_within:.0f} s"
        except Exception as error:
            return False, str(error)

    async def next(self) -> Reload:
        return await self._queue.get()
