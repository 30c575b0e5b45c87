"""``herald demo``: Herald on one machine against the Qlik Sense stand-in, showing what it does.

It starts the stand-in's QRS (HTTPS, client certificates) where the configuration's
``qlik.qrs`` expects it, runs every service the file configures in this process (with the
embedded broker), prints every event, receipt and dead letter as it happens, sends the
scheduler's datagrams for a failed reload, an aborted one and a success that recovers the
failure, and lists the script logs archived on disk. Herald then keeps running until Ctrl-C, so
more can be sent (``herald qlik-sim emit failed --to 127.0.0.1:9998``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from herald_qlik_sim.data import TASK_ABORTED_ID, TASK_FAILED_ID
from herald_qlik_sim.server import QlikSim
from herald_shared import config
from herald_shared.config import ConfigDocument
from herald_shared.runtime import ProcessSettings, configure, installed_services, serve
from herald_shared.tail import tail

READY_WITHIN = 30.0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from herald_shared.cli import add_config_argument

    parser = commands.add_parser(
        "demo",
        help="run Herald with the Qlik Sense stand-in and show a failure, an abort and a recovery",
    )
    add_config_argument(parser)
    parser.set_defaults(handler=_handle)


def _handle(arguments: argparse.Namespace) -> int:
    document = config.load(arguments.config)
    specs = [spec for spec in installed_services().values() if document.has_section(spec.section)]
    process = configure(document, specs)
    return asyncio.run(_demo(document, process))


async def _demo(document: ConfigDocument, process: ProcessSettings) -> int:
    qrs = document.data.get("qlik", {}).get("qrs", {})
    certs = Path(str(qrs.get("client_cert", "var/demo/qlik-certs/client.pem"))).parent
    port = urlsplit(str(qrs.get("url", "https://127.0.0.1:4242"))).port or 4242
    async with QlikSim(certs, port=port) as sim:
        print(f"Qlik Sense stand-in: QRS at {sim.url} (client certificates in {certs})", flush=True)
        herald = asyncio.create_task(serve(document, process))
        show = asyncio.create_task(_show(document, process, sim))
        code = await herald
        show.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await show
        return code


async def _show(document: ConfigDocument, process: ProcessSettings, sim: QlikSim) -> None:
    await _wait_until_ready(process)
    watching = asyncio.create_task(tail(process.broker))
    udp = document.data.get("ingest", {}).get("udp", {})
    to = ("127.0.0.1", int(udp.get("port", 9998)))
    await asyncio.sleep(0.5)
    begun = time.time()
    print(
        "\nThe scheduler reports a failed reload, an abort, then a success of the failed task:",
        flush=True,
    )
    await sim.emit("failed", TASK_FAILED_ID, to=to)
    await asyncio.sleep(1.0)
    await sim.emit("aborted", TASK_ABORTED_ID, to=to)
    await asyncio.sleep(1.0)
    await sim.emit("succeeded", TASK_FAILED_ID, to=to)
    await asyncio.sleep(3.0)
    archive = Path(str(document.data.get("log_archiver", {}).get("directory", "var/script-logs")))
    print(f"\nScript logs archived under {archive}/ by this run:", flush=True)
    for path in await asyncio.to_thread(_archived_since, archive, begun):
        print(f"  {path}", flush=True)
    print(
        "\nHerald keeps running. In another terminal, try:\n"
        f"  scripts/herald qlik-sim emit failed --to 127.0.0.1:{to[1]}\n"
        f"  scripts/herald qlik-sim record failed --sim {sim.origin} --certs {sim.certs.folder}\n"
        "    (a failure whose datagram is lost: the reconciliation sweep alerts it within a minute)\n"
        "  scripts/herald send-test --config deploy/config/herald.demo.yaml\n"
        f"Health and metrics: http://127.0.0.1:{process.health.port}/readyz and /metrics."
        f"{_console(document)} Ctrl-C stops.\n",
        flush=True,
    )
    await watching


def _console(document: ConfigDocument) -> str:
    """Where the console shows it all, when the file runs one."""
    section = document.data.get("console")
    if not isinstance(section, dict):
        return ""
    return f"\nThe console: http://{section.get('listen', '127.0.0.1:9180')}/."


def _archived_since(archive: Path, begun: float) -> list[Path]:
    """This run's script logs: an earlier run's stay on disk and are not this demo's doing."""
    return sorted(path for path in archive.rglob("*.log") if path.stat().st_mtime >= begun)


async def _wait_until_ready(process: ProcessSettings) -> None:
    url = f"http://127.0.0.1:{process.health.port}/readyz"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    async with asyncio.timeout(READY_WITHIN):
        while not await asyncio.to_thread(ready):  # noqa: ASYNC110 - polling another thread's server
            await asyncio.sleep(0.2)
