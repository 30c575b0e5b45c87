"""The QRS API (docs/butler-compatibility.md §2.2, Q1–Q14) as an aiohttp application, plus ``/control``.

Every ``/qrs/…`` call is counted, then meets the faults (latency, hang, forced failure), then
the QRS's own checks: an ``X-Qlik-Xrfkey`` header of 16 letters and digits equal to the
``xrfkey`` query parameter, and an ``X-Qlik-User`` header (``UserDirectory=…;UserId=…``);
otherwise 403, as Qlik answers. The client certificate is checked earlier, by TLS.

``/control`` (not counted, no xrfkey) reads and sets the faults at run time and records
executions for datagrams sent from another process:

- ``GET /control`` → ``{"faults": {...}, "calls": {endpoint: count}}``
- ``POST /control`` with ``{"latency": 0.5, "fail_rate": 0.1, ...}`` (any ``Faults`` field, plus
  ``"clear": true`` to reset every fault first, ``"reset_calls": true``, ``"release_hung": true``)
- ``POST /control/executions`` with ``{"task": id or name, "outcome": "failed",
  "execution_id": "...", "node": "...", "user": "...", "start": ISO time}`` → the new execution
  result (201), without a datagram: a run whose datagram was lost (``herald qlik-sim record``);
  ``"execution_ids": [...]`` instead of ``execution_id`` records one run each, answering a list

``executionresult``, ``executionresult/full`` and ``executionresult/count`` take the QRS
``filter=`` syntax (``filters``) and ``orderby=<property> asc|desc``; like the real QRS list
endpoints they have no skip/take, so a client pages by narrowing the filter (the sweep in
``services/ingest/src/herald_ingest/reconcile.py`` counts first, then splits the window).
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from herald_qlik_sim import filters, shapes
from herald_qlik_sim.executions import SCHEDULER_USER, record_outcome
from herald_qlik_sim.faults import Call, CallLog, FaultError, Faults
from herald_qlik_sim.model import OUTCOMES, Execution, Outcome, Site, Task, TaskType

ENDPOINTS: Final = (
    "task",  # Q1
    "task_full",  # Q2, Q10, Q11, Q12
    "app_full",  # Q3, Q13
    "reloadtask",  # Q4
    "reloadtask_scriptlog",  # Q5
    "reloadtask_scriptlogfile",  # Q6
    "download_scriptlog",  # Q7
    "app",  # Q8
    "user",  # Q9
    "about",
    "executionresult",  # the reconciliation sweep and the exact execution of a datagram
    "executionresult_full",
    "executionresult_count",
)
UNMATCHED: Final = "unmatched"

_XRFKEY = re.compile(r"^[A-Za-z0-9]{16}$")
_QLIK_USER = re.compile(r"^\s*userdirectory\s*=\s*[^;=]+;\s*userid\s*=\s*[^;=]+;?\s*$", re.I)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_EXACT_EXECUTION = re.compile(r"^\s*executionID\s+eq\s+([0-9A-Fa-f-]{36})\s*$", re.I)
_XSRF_MESSAGE = "XSRF prevention check failed. Possible XSRF discovered."

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_dumps = functools.partial(json.dumps, ensure_ascii=False)


def _json(document: Any, status: int = 200) -> web.Response:
    return web.json_response(document, status=status, dumps=_dumps)


class Qrs:
    """The application's state: the site, the faults, the call log and the download references."""

    def __init__(self, site: Site, faults: Faults, calls: CallLog) -> None:
        self.site = site
        self.faults = faults
        self.calls = calls
        self._downloads: dict[str, Execution] = {}
        self._release = asyncio.Event()

    def release_hung(self) -> None:
        """Answer the calls held by ``hang`` (with 503); later calls hang again if still set."""
        self._release.set()
        self._release = asyncio.Event()

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        routes = [
            ("/qrs/about", self._about, "about"),
            (
                "/qrs/custompropertydefinition",
                self._custompropertydefinition,
                "custompropertydefinition",
            ),
            ("/qrs/task", self._task, "task"),
            ("/qrs/executionresult", self._executionresult, "executionresult"),
            ("/qrs/executionresult/full", self._executionresult_full, "executionresult_full"),
            ("/qrs/executionresult/count", self._executionresult_count, "executionresult_count"),
            ("/qrs/task/full", self._task_full, "task_full"),
            ("/qrs/app/full", self._app_full, "app_full"),
            ("/qrs/app/{id}", self._app, "app"),
            ("/qrs/user/{id}", self._user, "user"),
            ("/qrs/reloadtask/{id}", self._reloadtask, "reloadtask"),
            ("/qrs/reloadtask/{id}/scriptlog", self._scriptlog, "reloadtask_scriptlog"),
            ("/qrs/reloadtask/{id}/scriptlogfile", self._scriptlogfile, "reloadtask_scriptlogfile"),
            (
                "/qrs/download/reloadtask/{ref}/scriptlog.txt",
                self._download,
                "download_scriptlog",
            ),
        ]
        for path, handler, name in routes:
            app.router.add_get(path, handler, name=name, allow_head=False)
        app.router.add_get("/control", self._control_get)
        app.router.add_post("/control", self._control_post)
        app.router.add_post("/control/executions", self._control_execution)
        return app

    # --- the gate every QRS call passes ------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        if not request.path.startswith("/qrs/"):
            return await handler(request)
        endpoint = request.match_info.route.name or UNMATCHED
        call = Call(endpoint, request.method, request.path_qs, headers=dict(request.headers))
        self.calls.add(call)
        try:
            response = await self._answer(request, handler, endpoint)
        except web.HTTPException as error:
            call.status = error.status
            raise
        call.status = response.status
        return response

    async def _answer(
        self, request: web.Request, handler: _Handler, endpoint: str
    ) -> web.StreamResponse:
        faults = self.faults
        if faults.applies_to(endpoint):
            if faults.latency > 0:
                await asyncio.sleep(faults.latency)
            if faults.take_hang():
                await self._release.wait()
                return web.Response(status=503, text="released")
            if faults.take_failure():
                return web.Response(
                    status=faults.fail_status, text="An unexpected error occurred (qlik-sim)."
                )
        refusal = _refusal(request)
        if refusal is not None:
            return web.Response(status=403, text=refusal)
        return await handler(request)

    # --- Q1–Q14 -----------------------------------------------------------------------------

    async def _about(self, _request: web.Request) -> web.Response:
        return _json(shapes.about())

    async def _custompropertydefinition(self, _request: web.Request) -> web.Response:
        definitions = self.site.custom_property_definitions.values()
        return _json([shapes.custom_property_definition(d) for d in definitions])

    def _tasks(self) -> list[Task]:
        return [task for task in self.site.tasks.values() if not self.faults.is_deleted(task.id)]

    async def _task(self, request: web.Request) -> web.Response:
        """Q1: the filter sees the full task; the answer is the condensed one."""
        documents = [shapes.task_full(task, self.site) for task in self._tasks()]
        chosen = {document["id"] for document in _select(request, documents)}
        return _json([shapes.task_condensed(task) for task in self._tasks() if task.id in chosen])

    async def _task_full(self, request: web.Request) -> web.Response:
        """Q2, Q10, Q11, Q12."""
        documents = [self._task_document(task) for task in self._tasks()]
        return _json(_select(request, documents))

    def _task_document(self, task: Task, *, hide_file_reference: bool = False) -> dict[str, Any]:
        document = shapes.task_full(task, self.site, hide_file_reference=hide_file_reference)
        return shapes.garbled(document) if self.faults.is_garbled(task.id) else document

    async def _app_full(self, request: web.Request) -> web.Response:
        """Q3, Q13."""
        documents = [shapes.app_full(app, self.site) for app in self.site.apps.values()]
        return _json(_select(request, documents))

    async def _app(self, request: web.Request) -> web.Response:
        """Q8."""
        app = self.site.apps.get(_guid(request))
        if app is None:
            raise web.HTTPNotFound(text='Cannot find the item for the "Get" operation.')
        return _json(shapes.app_full(app, self.site))

    async def _user(self, request: web.Request) -> web.Response:
        """Q9."""
        user = self.site.users.get(_guid(request))
        if user is None:
            raise web.HTTPNotFound(text='Cannot find the item for the "Get" operation.')
        return _json(shapes.user(user))

    # --- execution results: what the reconciliation sweep reads --------------------------------

    def _execution_results(
        self, request: web.Request, *, read: bool = True
    ) -> list[tuple[Execution, dict[str, Any]]]:
        """Every execution of every task still there, in its full form, filtered and ordered.

        Each execution returned counts as a read for ``zero_file_reference``, as ``reloadtask``
        (a count reads none).
        """
        tasks = {task.id: task for task in self._tasks()}
        exact = _EXACT_EXECUTION.match(request.query.get("filter") or "")
        if exact is None:
            runs = [e for task in tasks.values() for e in task.executions]
        else:
            # One run by its execution id, the call of every datagram: no need to render the
            # whole history (a benchmark's sim holds tens of thousands of runs).
            run = self.site.by_execution_id.get(exact.group(1).lower())
            runs = [run] if run is not None and run.task_id in tasks else []
        by_id = {e.id: e for e in runs}
        documents = [
            shapes.execution_result_full(e, tasks[e.task_id], hide_file_reference=False)
            for e in by_id.values()
        ]
        chosen = _select(request, documents)
        try:
            chosen = filters.order(request.query.get("orderby"), chosen)
        except filters.FilterError as error:
            raise web.HTTPBadRequest(text=str(error)) from None
        found: list[tuple[Execution, dict[str, Any]]] = []
        for document in chosen:
            execution = by_id[document["id"]]
            if not read:
                found.append((execution, document))
                continue
            execution.reads += 1
            if execution.reads <= self.faults.zero_file_reference:
                task = tasks[execution.task_id]
                document = shapes.execution_result_full(execution, task, hide_file_reference=True)
            found.append((execution, document))
        return found

    async def _executionresult(self, request: web.Request) -> web.Response:
        chosen = self._execution_results(request)
        return _json([shapes.execution_result_condensed(execution) for execution, _ in chosen])

    async def _executionresult_full(self, request: web.Request) -> web.Response:
        return _json([document for _, document in self._execution_results(request)])

    async def _executionresult_count(self, request: web.Request) -> web.Response:
        """``{"value": N}``, as the QRS counts any entity."""
        return _json({"value": len(self._execution_results(request, read=False))})

    def _reload_task(self, request: web.Request) -> Task:
        task_id = _guid(request)
        task = self.site.tasks.get(task_id)
        if task is None or self.faults.is_deleted(task_id) or task.task_type != TaskType.RELOAD:
            raise web.HTTPNotFound(text='Cannot find the item for the "Get" operation.')
        return task

    async def _reloadtask(self, request: web.Request) -> web.Response:
        """Q4: the first ``zero_file_reference`` reads of an execution show no file reference."""
        task = self._reload_task(request)
        execution = task.last_execution
        hide = False
        if execution is not None:
            execution.reads += 1
            hide = execution.reads <= self.faults.zero_file_reference
        return _json(self._task_document(task, hide_file_reference=hide))

    async def _scriptlog(self, request: web.Request) -> web.Response:
        """Q5: ``?fileReferenceId=`` → a download reference."""
        task = self._reload_task(request)
        wanted = _query(request, "fileReferenceId").lower()
        execution = self.site.by_file_reference.get(wanted)
        return self._reference(execution if execution and execution.task_id == task.id else None)

    async def _scriptlogfile(self, request: web.Request) -> web.Response:
        """Q6 (QRS May 2025): ``?executionResultId=`` → a download reference."""
        task = self._reload_task(request)
        wanted = _query(request, "executionResultId").lower()
        execution = self.site.execution(wanted)
        return self._reference(execution if execution and execution.task_id == task.id else None)

    def _reference(self, execution: Execution | None) -> web.Response:
        if execution is None or not execution.script_log:
            raise web.HTTPNotFound(text="Script log not found.")
        reference = uuid.uuid4().hex
        self._downloads[reference] = execution
        return _json({"value": reference})

    async def _download(self, request: web.Request) -> web.Response:
        """Q7: the log, CRLF; the first ``script_log_not_ready`` downloads of an execution 404."""
        execution = self._downloads.get(request.match_info["ref"])
        if execution is None:
            raise web.HTTPNotFound(text="Download reference not found.")
        execution.downloads += 1
        if execution.downloads <= self.faults.script_log_not_ready:
            raise web.HTTPNotFound(text="The file is not available yet.")
        return web.Response(
            body=execution.script_log.encode(),
            content_type="text/plain",
            charset="utf-8",
            headers={"Content-Disposition": 'attachment; filename="scriptlog.txt"'},
        )

    # --- /control ----------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {"faults": self.faults.to_json(), "calls": self.calls.counts()}

    async def _control_get(self, _request: web.Request) -> web.Response:
        return _json(self._state())

    async def _control_post(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if body.pop("clear", False) is True:
            self.faults.clear()
        reset_calls = body.pop("reset_calls", False) is True
        release = body.pop("release_hung", False) is True
        try:
            self.faults.update(body)
        except FaultError as error:
            raise web.HTTPBadRequest(text=str(error)) from None
        if reset_calls:
            self.calls.clear()
        if release:
            self.release_hung()
        return _json(self._state())

    async def _control_execution(self, request: web.Request) -> web.Response:
        body = await _body(request)
        task = self.site.task(str(body.get("task", "")))
        outcome = body.get("outcome")
        if task is None:
            raise web.HTTPNotFound(text=f"no task {body.get('task')!r} in the sim")
        if outcome not in OUTCOMES:
            raise web.HTTPBadRequest(text=f"outcome must be one of {', '.join(OUTCOMES)}")
        chosen: Outcome = outcome
        many = body.get("execution_ids")
        if many is not None and (
            not isinstance(many, list) or not all(isinstance(e, str) and e for e in many)
        ):
            raise web.HTTPBadRequest(text="execution_ids must be a list of non-empty strings")
        ids = many if many is not None else [_optional_text(body, "execution_id")]
        node, start = _optional_text(body, "node"), _optional_time(body, "start")
        user = _optional_text(body, "user") or SCHEDULER_USER
        recorded = [
            shapes.execution_result(
                record_outcome(
                    self.site,
                    task,
                    chosen,
                    execution_id=execution_id,
                    node=node,
                    user=user,
                    start=start,
                ),
                task,
            )
            | {"taskName": task.name}
            for execution_id in ids
        ]
        return _json(recorded if many is not None else recorded[0], status=201)


def _refusal(request: web.Request) -> str | None:
    """Why the QRS refuses this call (403), or None."""
    key = request.query.get("xrfkey") or request.query.get("Xrfkey") or ""
    header = request.headers.get("X-Qlik-Xrfkey", "")
    if not _XRFKEY.match(key) or header != key:
        return _XSRF_MESSAGE
    if not _QLIK_USER.match(request.headers.get("X-Qlik-User", "")):
        return "Access denied: the X-Qlik-User header is missing or malformed."
    return None


def _select(request: web.Request, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    try:
        return filters.select(request.query.get("filter"), documents)
    except filters.FilterError as error:
        raise web.HTTPBadRequest(text=str(error)) from None


def _guid(request: web.Request) -> str:
    value = request.match_info["id"]
    if not _GUID.match(value):
        raise web.HTTPBadRequest(text=f"{value!r} is not a valid GUID.")
    return value.lower()


def _query(request: web.Request, name: str) -> str:
    for key, value in request.query.items():
        if key.lower() == name.lower():
            return value
    raise web.HTTPBadRequest(text=f"The parameter {name} is missing.")


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def _optional_time(body: dict[str, Any], name: str) -> datetime | None:
    text = _optional_text(body, name)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an ISO 8601 time, got {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise web.HTTPBadRequest(text=f"{name} must be a non-empty string")
    return value
