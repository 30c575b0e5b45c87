"""``herald qlik-sim``: a stand-in for a client-managed Qlik Sense site.

- ``herald qlik-sim serve --port 4242 --certs DIR [faults…]``: the QRS API over HTTPS with
  client certificates, until SIGTERM or SIGINT.
- ``herald qlik-sim emit failed|aborted|succeeded --to HOST:PORT [--task ID] [--count N]
  [--rate R] [--sim URL --certs DIR]``: scheduler datagrams; with ``--sim`` each one's execution
  is first recorded in that running sim (``POST /control/executions``).
- ``herald qlik-sim record failed|aborted|succeeded --sim URL [--task ID] [--count N]
  [--ago SECONDS] [--certs DIR]``: executions recorded in a running sim *without* a datagram,
  as when a datagram is lost: only the repository (and Herald's reconciliation sweep) knows.
- ``herald qlik-sim certs --certs DIR``: write (or reuse) the certificates and print their paths.
- ``herald qlik-sim tasks``: the sim's tasks and their fixed GUIDs.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import socket
import ssl
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import aiohttp

from herald_qlik_sim import emitter
from herald_qlik_sim.certs import CertPaths, ensure_certs
from herald_qlik_sim.data import TASK_FOR_OUTCOME, default_site
from herald_qlik_sim.executions import SCHEDULER_USER, elapsed
from herald_qlik_sim.faults import Faults
from herald_qlik_sim.model import OUTCOMES, App, Outcome, Task, TaskType
from herald_qlik_sim.qrs import ENDPOINTS
from herald_qlik_sim.server import QlikSim

DEFAULT_CERTS = "qlik-sim-certs"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "qlik-sim", help="a Qlik Sense stand-in: QRS API over HTTPS, scheduler UDP datagrams"
    )
    actions = parser.add_subparsers(dest="qlik_sim_command", required=True, metavar="ACTION")

    serve = actions.add_parser("serve", help="serve the QRS API until SIGTERM or SIGINT")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=4242, help="0 picks a free port")
    _certs_argument(serve)
    serve.add_argument("--latency", type=float, default=0.0, help="seconds added to every call")
    serve.add_argument(
        "--fail-rate", type=float, default=0.0, help="share of calls answered 500 (1: always)"
    )
    serve.add_argument("--fail-status", type=int, default=500, help="status of failed calls")
    serve.add_argument("--hang", action="store_true", help="accept calls and never answer them")
    serve.add_argument(
        "--endpoint",
        action="append",
        default=[],
        choices=ENDPOINTS,
        help="latency, failures and hangs only on this endpoint (repeatable)",
    )
    serve.add_argument(
        "--deleted-task", action="append", default=[], metavar="ID", help="act as if deleted"
    )
    serve.add_argument(
        "--garbled-task",
        action="append",
        default=[],
        metavar="ID",
        help="answer for it with fields of the wrong JSON type",
    )
    serve.add_argument(
        "--script-log-not-ready",
        type=int,
        default=0,
        metavar="N",
        help="the first N script-log downloads of each execution answer 404",
    )
    serve.add_argument(
        "--zero-file-reference",
        type=int,
        default=0,
        metavar="N",
        help="the first N reloadtask reads of each execution show an all-zero fileReferenceID",
    )
    serve.add_argument("--seed", type=int, default=None, help="seed of the --fail-rate draw")
    serve.set_defaults(handler=_serve)

    emit = actions.add_parser("emit", help="send scheduler datagrams (log4net UDP format)")
    emit.add_argument("outcome", choices=OUTCOMES)
    emit.add_argument(
        "--to", required=True, metavar="HOST:PORT", help="where Herald's ingest listens"
    )
    emit.add_argument("--task", help="task GUID or name (default: the sim's task for the outcome)")
    emit.add_argument("--count", type=int, default=1, help="how many datagrams (default 1)")
    emit.add_argument("--rate", type=float, default=None, help="datagrams per second at most")
    emit.add_argument("--user", default=SCHEDULER_USER, help="DIRECTORY\\user of field 4")
    emit.add_argument("--host-name", default=None, help="field 1 (default: this host's name)")
    emit.add_argument(
        "--sim",
        metavar="URL",
        help="a running sim (https://HOST:PORT) to record each execution in first",
    )
    _certs_argument(emit)
    emit.set_defaults(handler=_emit)

    record = actions.add_parser(
        "record", help="record executions in a running sim without sending a datagram (lost ones)"
    )
    record.add_argument("outcome", choices=OUTCOMES)
    record.add_argument(
        "--sim", required=True, metavar="URL", help="the running sim, https://HOST:PORT"
    )
    record.add_argument(
        "--task", help="task GUID or name (default: the sim's task for the outcome)"
    )
    record.add_argument("--count", type=int, default=1, help="how many executions (default 1)")
    record.add_argument(
        "--ago", type=float, default=0.0, metavar="SECONDS", help="the runs ended this long ago"
    )
    _certs_argument(record)
    record.set_defaults(handler=_record)

    certs = actions.add_parser("certs", help="write or reuse the certificates, print their paths")
    _certs_argument(certs)
    certs.set_defaults(handler=_certs)

    tasks = actions.add_parser("tasks", help="list the sim's tasks and their GUIDs")
    tasks.set_defaults(handler=_tasks)


def _certs_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--certs",
        default=DEFAULT_CERTS,
        metavar="DIR",
        help=f"the certificate folder: root.pem, server*.pem, client*.pem (default ./{DEFAULT_CERTS})",
    )


def _fail(message: str) -> int:
    print(f"herald qlik-sim: {message}", file=sys.stderr)
    return 2


# --- serve -----------------------------------------------------------------------------------


def _serve(arguments: argparse.Namespace) -> int:
    faults = Faults()
    try:
        faults.update(
            {
                "latency": arguments.latency,
                "fail_rate": arguments.fail_rate,
                "fail_status": arguments.fail_status,
                "hang": arguments.hang,
                "endpoints": arguments.endpoint,
                "deleted_tasks": arguments.deleted_task,
                "garbled_tasks": arguments.garbled_task,
                "script_log_not_ready": arguments.script_log_not_ready,
                "zero_file_reference": arguments.zero_file_reference,
                "seed": arguments.seed,
            }
        )
    except ValueError as error:
        return _fail(str(error))
    return asyncio.run(_run_server(arguments.certs, arguments.host, arguments.port, faults))


async def _run_server(certs: str, host: str, port: int, faults: Faults) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with QlikSim(certs, host=host, port=port, faults=faults) as sim:
        print(f"qlik-sim: QRS API at {sim.url}", flush=True)
        print(
            f"qlik-sim: certificates in {sim.certs.folder} "
            "(QRS clients use root.pem, client.pem, client_key.pem)",
            flush=True,
        )
        print(f"qlik-sim: fault control at {sim.control_url}", flush=True)
        await stop.wait()
    print("qlik-sim: stopped", flush=True)
    return 0


# --- emit ------------------------------------------------------------------------------------


def _emit(arguments: argparse.Namespace) -> int:
    outcome = cast(Outcome, arguments.outcome)
    if arguments.count < 1:
        return _fail("--count must be at least 1")
    if arguments.rate is not None and arguments.rate <= 0:
        return _fail("--rate must be above 0")
    try:
        to = emitter.parse_address(arguments.to)
    except ValueError as error:
        return _fail(str(error))
    site = default_site()
    key = arguments.task or TASK_FOR_OUTCOME[outcome]
    task = site.task(key)
    if task is None:
        if not _GUID.match(key):
            return _fail(f"no task named {key!r} in the sim (see `herald qlik-sim tasks`)")
        task = Task(id=key.lower(), name="Deleted task", task_type=TaskType.RELOAD)
    app = site.app_of(task)
    control: tuple[str, ssl.SSLContext] | None = None
    if arguments.sim:
        certs = CertPaths(Path(arguments.certs).resolve())
        if not certs.exist():
            return _fail(f"--sim needs the sim's certificates; none in {certs.folder}")
        control = (_control_url(arguments.sim), certs.client_context())
    try:
        return asyncio.run(_send(arguments, outcome, task, app, to, control))
    except (OSError, aiohttp.ClientError) as error:
        return _fail(f"cannot send: {error}")


async def _send(
    arguments: argparse.Namespace,
    outcome: Outcome,
    task: Task,
    app: App | None,
    to: tuple[str, int],
    control: tuple[str, ssl.SSLContext] | None,
) -> int:
    host_name = arguments.host_name or socket.gethostname()
    session = None
    if control is not None:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=control[1]))
    try:
        async with emitter.UdpSender(to) as sender:
            async for _ in emitter.paced(arguments.count, arguments.rate):
                execution_id = str(uuid.uuid4())
                if session is not None and control is not None:
                    body = {
                        "task": task.id,
                        "outcome": outcome,
                        "execution_id": execution_id,
                        "node": host_name,
                        "user": arguments.user,
                    }
                    async with session.post(control[0], json=body) as response:
                        if response.status != 201:
                            return _fail(
                                f"the sim refused the execution: {response.status} "
                                f"{await response.text()}"
                            )
                item = emitter.datagram(
                    outcome,
                    task,
                    app,
                    execution_id=execution_id,
                    host_name=host_name,
                    user=arguments.user,
                )
                await sender.send(item)
                print(item.text, flush=True)
    finally:
        if session is not None:
            await session.close()
    return 0


# --- record --------------------------------------------------------------------------------


def _record(arguments: argparse.Namespace) -> int:
    outcome = cast(Outcome, arguments.outcome)
    if arguments.count < 1:
        return _fail("--count must be at least 1")
    if arguments.ago < 0:
        return _fail("--ago cannot be negative")
    task = default_site().task(arguments.task or TASK_FOR_OUTCOME[outcome])
    if task is None:
        return _fail(f"no task {arguments.task!r} in the sim (see `herald qlik-sim tasks`)")
    certs = CertPaths(Path(arguments.certs).resolve())
    if not certs.exist():
        return _fail(f"--sim needs the sim's certificates; none in {certs.folder}")
    start = None
    if arguments.ago:
        start = datetime.now(UTC) - timedelta(seconds=arguments.ago) - elapsed(task, outcome)
    body = {"task": task.id, "outcome": outcome} | ({"start": start.isoformat()} if start else {})
    try:
        return asyncio.run(
            _post_executions(_control_url(arguments.sim), certs, body, arguments.count)
        )
    except (OSError, aiohttp.ClientError) as error:
        return _fail(f"cannot reach the sim at {arguments.sim}: {error}")


async def _post_executions(url: str, certs: CertPaths, body: dict[str, str], count: int) -> int:
    connector = aiohttp.TCPConnector(ssl=certs.client_context())
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(count):
            async with session.post(url, json=body) as response:
                if response.status != 201:
                    return _fail(
                        f"the sim refused the execution: {response.status} {await response.text()}"
                    )
                result = await response.json()
            print(
                f"{result['executionID']}  {result['stopTime']}  {result['taskName']}", flush=True
            )
    return 0


def _control_url(sim: str) -> str:
    parts = urlsplit(sim)
    return f"{parts.scheme or 'https'}://{parts.netloc or parts.path}/control/executions"


# --- certs, tasks ----------------------------------------------------------------------------


def _certs(arguments: argparse.Namespace) -> int:
    paths = ensure_certs(arguments.certs)
    for path in (paths.root, paths.server, paths.server_key, paths.client, paths.client_key):
        print(path)
    return 0


def _tasks(_arguments: argparse.Namespace) -> int:
    site = default_site()
    for task in site.tasks.values():
        app = site.app_of(task)
        last = task.last_execution
        print(
            f"{task.id}  {task.task_type.name.lower():<16} "
            f"{last.status.text if last else 'NeverStarted':<16} {task.name}"
            + (f"  (app {app.id} {app.name!r})" if app else "")
        )
    return 0
