"""The Qlik Repository Service (QRS) client: the calls of docs/butler-compatibility.md §2, made once per event.

HTTPS with the client certificate exported from the QMC, the ``X-Qlik-User`` header, and the
cross-site request forgery key both as the ``X-Qlik-Xrfkey`` header and the ``xrfkey`` query
parameter (a fresh random key per request). One keep-alive connection pool, a bounded number of
calls in flight, short caching of task, app and user metadata, and bounded retries of what can
succeed on a second try (network errors, timeouts, and the statuses every destination retries:
408, 425, 429, 5xx; :func:`herald_shared.delivery.http.is_transient`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import string
import time
from typing import Any, Final

from herald_ingest.settings import QrsSettings
from herald_shared.config import reveal
from herald_shared.delivery.http import is_transient
from herald_shared.http_client import Answer, HttpClient, Unreachable
from herald_shared.tls import client_context

log = logging.getLogger(__name__)

_XRF_ALPHABET: Final = string.ascii_letters + string.digits
NO_FILE: Final = "00000000-0000-0000-0000-000000000000"


class QrsError(Exception):
    """A QRS call failed; the message says which and why (never a secret)."""


class QrsClient:
    def __init__(self, settings: QrsSettings) -> None:
        self._settings = settings
        self._base = settings.url.rstrip("/") + "/qrs/"
        self._client = HttpClient(
            timeout=settings.timeout,
            tls=self._tls_context(),
            headers={
                **settings.headers,
                "X-Qlik-User": settings.user_header,
                "Content-Type": "application/json",
            },
            connections=settings.concurrency,
        )
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    def _tls_context(self) -> ssl.SSLContext | None:
        settings = self._settings
        if not settings.url.startswith("https"):
            return None
        return client_context(
            ca_file=settings.ca_cert,
            verify=settings.verify,
            cert_file=settings.client_cert,
            key_file=settings.client_key,
            key_password=reveal(settings.client_key_password),
        )

    async def close(self) -> None:
        await self._client.close()

    # --- the calls (docs/butler-compatibility.md §2.2) ------------------------------

    async def task(self, task_id: str) -> dict[str, Any] | None:
        """Q2 ``task/full``: the task with type, tags, custom properties; None if it is gone."""
        return await self._one(f"task:{task_id}", "task/full", {"filter": f"id eq {task_id}"})

    async def app(self, app_id: str) -> dict[str, Any] | None:
        """Q3 ``app/full``: the app with stream, tags, custom properties and owner."""
        return await self._one(f"app:{app_id}", "app/full", {"filter": f"id eq {app_id}"})

    async def user(self, user_id: str) -> dict[str, Any] | None:
        """Q9 ``user/{id}``: the app owner with the e-mail attributes."""
        key = f"user:{user_id}"
        cached = self._cached(key)
        if cached is not None:
            return cached
        found = await self._get(f"user/{user_id}")
        return self._store(key, found if isinstance(found, dict) else None)

    async def custom_property_definitions(self) -> list[dict[str, Any]]:
        """``custompropertydefinition``: every custom property the QMC defines."""
        found = await self._get("custompropertydefinition")
        if not isinstance(found, list):
            raise QrsError("custompropertydefinition: the answer is not a list")
        return [item for item in found if isinstance(item, dict)]

    async def execution(self, execution_id: str) -> dict[str, Any] | None:
        """``executionresult/full`` for the scheduler's execution id: the run the datagram names
        (never cached: it changes until the run is final); None if the QRS has no such run."""
        found = await self.execution_results(f"executionID eq {execution_id}")
        return found[0] if len(found) == 1 else None

    async def execution_results(
        self, filter_: str, *, orderby: str | None = None
    ) -> list[dict[str, Any]]:
        """``executionresult/full?filter=…``: every execution result the filter selects."""
        params = {"filter": filter_} | ({"orderby": orderby} if orderby else {})
        found = await self._get("executionresult/full", params)
        if not isinstance(found, list):
            raise QrsError("executionresult/full: the answer is not a list")
        return [item for item in found if isinstance(item, dict)]

    async def count_execution_results(self, filter_: str) -> int:
        """``executionresult/count?filter=…``: how many the filter selects (``{"value": N}``)."""
        found = await self._get("executionresult/count", {"filter": filter_})
        value = found.get("value") if isinstance(found, dict) else None
        if not isinstance(value, int) or isinstance(value, bool):
            raise QrsError("executionresult/count: the answer has no count")
        return value

    async def script_log(
        self, task_id: str, file_reference: str, result_id: str | None
    ) -> str | None:
        """The script log of one execution: Q5 (or the newer Q6) for a reference, then Q7.

        None when the execution has no log (all-zero file reference). Raises :class:`QrsError`
        when the log exists but could not be fetched.
        """
        if not file_reference or file_reference == NO_FILE:
            return None
        routes = [(f"reloadtask/{task_id}/scriptlog", {"fileReferenceId": file_reference})]
        if result_id:
            routes.append((f"reloadtask/{task_id}/scriptlogfile", {"executionResultId": result_id}))
        problems = []
        for path, params in routes:
            try:
                reference = await self._get(path, params)
            except QrsError as error:
                problems.append(str(error))
                continue
            value = reference.get("value") if isinstance(reference, dict) else None
            if not value:
                problems.append(f"{path}: no download reference")
                continue
            return await self._download(f"download/reloadtask/{value}/scriptlog.txt")
        raise QrsError("; ".join(problems))

    # --- plumbing ------------------------------------------------------------------------

    async def _one(self, key: str, path: str, params: dict[str, str]) -> dict[str, Any] | None:
        cached = self._cached(key)
        if cached is not None:
            return cached
        found = await self._get(path, params)
        item = (
            found[0]
            if isinstance(found, list) and len(found) == 1 and isinstance(found[0], dict)
            else None
        )
        return self._store(key, item)

    def _cached(self, key: str) -> dict[str, Any] | None:
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    def _store(self, key: str, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (time.monotonic() + self._settings.cache_ttl, value)
        return value

    async def _download(self, path: str) -> str:
        answer = await self._request(path, {})
        if answer.status == 404:
            # Asked too soon after the failure: the file is not there yet (docs/butler-compatibility.md §2.5).
            raise QrsError(f"{path}: not available yet")
        return answer.text

    async def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        answer = await self._request(path, params or {})
        if answer.status == 404:
            return None
        try:
            return answer.json()
        except ValueError:
            raise QrsError(f"{path}: the answer is not JSON") from None

    async def _request(self, path: str, params: dict[str, str]) -> Answer:
        """GET with bounded retries; 404 is returned, other failures raise QrsError."""
        delay = 0.25
        problem = ""
        for attempt in range(1, self._settings.attempts + 1):
            xrfkey = "".join(secrets.choice(_XRF_ALPHABET) for _ in range(16))
            try:
                async with self._slots:
                    answer = await self._client.request(
                        "GET",
                        self._base + path,
                        params={**params, "xrfkey": xrfkey},
                        headers={"X-Qlik-Xrfkey": xrfkey},
                    )
            except Unreachable as error:
                problem = str(error)
            else:
                if answer.status < 400 or answer.status == 404:
                    return answer
                problem = f"HTTP {answer.status}"
                if not is_transient(answer.status):
                    break  # 401/403/400 will not change on a second try
            if attempt < self._settings.attempts:
                await asyncio.sleep(delay)
                delay *= 2
        raise QrsError(f"{path}: {problem}")
