"""The whole Herald system on loopback, every part in its own process, as it runs in production.

``Pipeline`` writes one ``herald.yaml``, starts Mosquitto, ``herald qlik-sim serve`` (the QRS over
HTTPS with client certificates) and every service with ``herald run <service>``: the subscribers
first, then ingest, each waited for on its own ``/readyz``. With ``one_process=True`` it runs
``herald up`` instead: the same services in one process (``HERALD_UP``), against the same broker. It can SIGKILL and restart any
service, restart Mosquitto, set the sim's faults, and send failed-reload datagrams whose event
ids it knows in advance (ids are deterministic: kind + execution id).

The destinations (SMTP, Slack/Teams, New Relic, Signl4, a webhook, InfluxDB) are the caller's:
real servers from this testkit, passed in as :class:`Destinations`, so the caller can tell which
alerts each one accepted; :func:`whole_system` starts them all with the pipeline. Butler's MQTT
topics go to the system's own broker, where an observer (``Destinations.butler_mqtt``) records them. Every
rate limit is off, so every alert is expected.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import aiohttp
import httpx
import msgspec

from herald_qlik_sim import emitter, scriptlogs
from herald_qlik_sim.certs import CertPaths
from herald_qlik_sim.data import TASK_FAILED_ID, default_site
from herald_shared.events import event_id_for
from herald_testkit.chat_standins import ChatStandins
from herald_testkit.http import HttpReceiver
from herald_testkit.incident_standins import NewRelicStandIn, Signl4StandIn
from herald_testkit.influxdb import InfluxDB
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer
from herald_testkit.ports import free_port, wait_for_port
from herald_testkit.smtp_server import SmtpServer

SUBSCRIBERS = ("emailer", "chat-notifier", "incident-forwarder", "metrics-writer", "log-archiver")
SERVICES = (*SUBSCRIBERS, "ingest")
HERALD_UP = "herald-up"  # the one process of ``herald up``, in place of SERVICES
# A second ingest (docs/deploy.md, "Two ingests"): its own instance, state and UDP port.
SECOND_INGEST = "ingest-b"
PREFIX = "system"
RECIPIENTS = ("oncall@example.com", "bi-team@example.com")
SMTP_USER, SMTP_PASSWORD = "alerts", "smtp-secret-password"
NEW_RELIC_ACCOUNT, NEW_RELIC_KEY = "1234567", "NRII-system-test-insert-key"
SLACK_TOKEN, TEAMS_TOKEN = "slack-secret-token", "teams-secret-token"
INFLUX_DATABASE = "butler"
BUTLER_TOPICS = "qliksense"  # butler_mqtt's default topics, on the system's own broker


@dataclass
class Destinations:
    """The real servers alerts go to; started by the caller."""

    smtp: SmtpServer
    chat: ChatStandins
    new_relic: NewRelicStandIn
    signl4: Signl4StandIn
    webhook: HttpReceiver
    influx: InfluxDB
    #: Butler's MQTT topics on the system's broker, recorded by the pipeline once it starts it
    butler_mqtt: Observer | None = None

    def butler_messages(self, topic: str) -> list[bytes]:
        """The payloads seen on ``qliksense/<topic>``, in arrival order."""
        if self.butler_mqtt is None:
            return []
        full = f"{BUTLER_TOPICS}/{topic}"
        return [seen.payload for seen in self.butler_mqtt.seen if seen.topic == full]


@dataclass
class Burst:
    """Failed executions of one task, recorded in the sim; what their datagrams will say."""

    task: str
    execution_ids: list[str] = field(default_factory=list)
    stamps: list[datetime] = field(default_factory=list)
    #: index -> time.monotonic() when its datagram went out
    sent_at: dict[int, float] = field(default_factory=dict)

    def event_ids(self, start: int = 0, stop: int | None = None) -> list[str]:
        return [event_id_for("task_failed", e) for e in self.execution_ids[start:stop]]

    def archive_names(self, start: int = 0, stop: int | None = None) -> set[str]:
        """The script-log files the log archiver writes (relative to its directory)."""
        site = default_site()
        app_id = site.tasks[self.task].app_id or ""
        names = set()
        for stamp in self.stamps[start:stop]:
            moment = stamp.strftime("%Y-%m-%d_%H-%M-%S")
            names.add(f"{moment[:10]}/{moment}_appId={app_id}_taskId={self.task}.log")
        return names


@dataclass
class Receipt:
    service: str
    event_id: str
    destination: str
    target: str
    outcome: str
    attempts: int


@dataclass
class Service:
    name: str
    health_port: int
    log_file: Path
    process: asyncio.subprocess.Process | None = None
    starts: int = 0


@dataclass
class Pipeline:
    workdir: Path
    destinations: Destinations
    #: extra ``ingest:`` keys (e.g. a shorter enrichment deadline)
    ingest_extra: dict[str, Any] = field(default_factory=dict)
    #: every service in one ``herald up`` process instead of one process each
    one_process: bool = False
    #: a second ingest process, and datagrams sent to both as two appenders do
    two_ingests: bool = False
    #: Mosquitto's settings (e.g. production's ``autosave_interval``)
    broker_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker = Mosquitto(self.workdir / "mosquitto", **self.broker_options)
        self.qrs_port = free_port()
        self.udp_port = free_port(kind=socket.SOCK_DGRAM)
        self.second_udp_port = free_port(kind=socket.SOCK_DGRAM)
        self.certs = CertPaths((self.workdir / "qlik-certs").resolve())
        self.config = self.workdir / "herald.yaml"
        self.archive = self.workdir / "script-logs"
        self.services = {
            name: Service(name, free_port(), self.workdir / "logs" / f"{name}.log")
            for name in (
                (HERALD_UP,)
                if self.one_process
                else (*SERVICES, SECOND_INGEST)
                if self.two_ingests
                else SERVICES
            )
        }
        self.sim: asyncio.subprocess.Process | None = None
        self.receipts: Observer | None = None
        self._site = default_site()
        self._session: aiohttp.ClientSession | None = None
        self._receipts_read = 0  # how many of receipts.seen are decoded into _receipts
        self._receipts: list[Receipt] = []
        # Scheduler time stamps are handed out from two hours ago on, one second apart (UTC, the
        # zone the configuration gives the Sense nodes).
        self._next_stamp = datetime.now(UTC).replace(microsecond=0, tzinfo=None) - timedelta(
            hours=2
        )

    # --- the whole system ----------------------------------------------------------------------

    async def start(self) -> None:
        await self.start_groundwork()
        self.destinations.butler_mqtt = Observer(
            self.broker.host, self.broker.port, f"{BUTLER_TOPICS}/#", persistent=True
        )
        await self.destinations.butler_mqtt.__aenter__()
        if self.one_process:
            await self.start_service(HERALD_UP)
            return
        await asyncio.gather(*(self.start_service(name) for name in SUBSCRIBERS))
        await self.start_service("ingest")
        if self.two_ingests:
            await self.start_service(SECOND_INGEST)

    async def start_groundwork(self) -> None:
        """What every service needs first: Mosquitto, the QRS stand-in, the configuration file
        and the observer of the receipts."""
        (self.workdir / "logs").mkdir(exist_ok=True)
        await asyncio.to_thread(self.broker.start)
        await self._start_sim()
        self.config.write_text(self.render_config())
        self.receipts = Observer(
            self.broker.host, self.broker.port, f"{PREFIX}/v1/deliveries/#", persistent=True
        )
        await self.receipts.__aenter__()

    async def stop(self) -> None:
        for service in self.services.values():
            await self._terminate(service)
        for observer in (self.receipts, self.destinations.butler_mqtt):
            if observer is not None:
                await observer.__aexit__(None, None, None)
        if self._session is not None:
            await self._session.close()
        if self.sim is not None and self.sim.returncode is None:
            self.sim.terminate()
            await self.sim.wait()
        await asyncio.to_thread(self.broker.stop)

    async def __aenter__(self) -> Pipeline:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # --- services --------------------------------------------------------------------------------

    async def start_service(self, name: str, within: float = 60.0) -> None:
        """``herald run <name>`` (or ``herald up``) in a process of its own, waited for until
        /readyz answers 200."""
        service = self.services[name]
        command = ["up"] if name == HERALD_UP else ["run", name]
        env = {**os.environ, "HERALD_HEALTH__PORT": str(service.health_port)}
        if name == SECOND_INGEST:
            command = ["run", "ingest"]
            env |= {
                "HERALD_BROKER__INSTANCE": "system-test-b",
                "HERALD_INGEST__STATE_DIR": str(self.workdir / "state" / SECOND_INGEST),
                "HERALD_INGEST__UDP__PORT": str(self.second_udp_port),
            }
        with service.log_file.open("ab") as log:
            service.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "herald_shared.cli", *command, "--config", str(self.config),
                stdout=log, stderr=log, env=env,
            )  # fmt: skip
        service.starts += 1
        await self._wait_ready(service, within)

    async def _wait_ready(self, service: Service, within: float) -> None:
        url = f"http://127.0.0.1:{service.health_port}/readyz"
        deadline = asyncio.get_running_loop().time() + within
        async with httpx.AsyncClient(timeout=1.0) as client:
            while asyncio.get_running_loop().time() < deadline:
                assert service.process is not None
                if service.process.returncode is not None:
                    raise RuntimeError(f"{service.name} exited; see {service.log_file}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(url)).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{service.name} not ready after {within} s; see {service.log_file}")

    async def kill(self, name: str) -> None:
        """SIGKILL: no clean stop, no goodbye to the broker."""
        process = self.services[name].process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        await process.wait()

    async def restart(self, name: str) -> None:
        await self.kill(name)
        await self.start_service(name)

    async def stop_service(self, name: str) -> None:
        """SIGTERM: a clean stop (``offline``; the broker keeps the session)."""
        await self._terminate(self.services[name])

    async def _terminate(self, service: Service) -> None:
        process = service.process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()

    def pids(self) -> dict[str, int]:
        """Every process of the system that runs now, by name."""
        found = {
            name: service.process.pid
            for name, service in self.services.items()
            if service.process is not None and service.process.returncode is None
        }
        if self.sim is not None:
            found["qlik-sim"] = self.sim.pid
        process = self.broker._process
        if process is not None:
            found["mosquitto"] = process.pid
        return found

    async def restart_broker(self, downtime: float = 1.0) -> None:
        await asyncio.to_thread(self.broker.restart, downtime)

    async def crash_broker(self) -> None:
        """SIGKILL Mosquitto and start it again: only its last autosave survives."""
        await asyncio.to_thread(self.broker.kill)
        await asyncio.to_thread(self.broker.start)

    # --- the Qlik Sense stand-in -----------------------------------------------------------------

    async def _start_sim(self) -> None:
        self.sim = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "herald_shared.cli", "qlik-sim", "serve",
            "--port", str(self.qrs_port), "--certs", str(self.certs.folder),
            stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        # As long as a service may take to be ready (start_service): on a busy machine, the
        # imports alone can take half a minute.
        await asyncio.to_thread(wait_for_port, "127.0.0.1", self.qrs_port, 60)
        context = await asyncio.to_thread(self.certs.client_context)
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))

    @property
    def sim_url(self) -> str:
        return f"https://127.0.0.1:{self.qrs_port}"

    async def sim_faults(self, **faults: Any) -> None:
        """``POST /control``: e.g. ``latency=2``, ``hang=True``, ``clear=True``."""
        assert self._session is not None
        async with self._session.post(f"{self.sim_url}/control", json=faults) as response:
            response.raise_for_status()

    async def record(
        self, count: int, task: str = TASK_FAILED_ID, *, ended_just_now: bool = False
    ) -> Burst:
        """Record ``count`` failed executions in the sim, to be sent with :meth:`send`.

        Each gets a scheduler time stamp one second after the previous one, unique within the
        system: one task cannot fail twice in one second, and the script-log archive (Butler's
        layout) and InfluxDB (the point's time) tell executions of a task apart by that time.
        Each run stops at its stamp (the configured zone is UTC), so an event made by the
        reconciliation sweep says what its datagram would have; runs stamped two hours ago are
        outside every sweep's window. ``ended_just_now``: the runs stopped in the last ``count``
        seconds, one a second, for a sweep to find.
        """
        assert self._session is not None
        session = self._session
        burst = Burst(task=task)
        now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
        starts: dict[str, str] = {}
        for n in range(count):
            execution_id = str(uuid.uuid4())
            burst.execution_ids.append(execution_id)
            if ended_just_now:
                stamp = now - timedelta(seconds=count - n)
            else:
                stamp = self._next_stamp
                self._next_stamp += timedelta(seconds=1)
            burst.stamps.append(stamp)
            started = stamp.replace(tzinfo=UTC) - scriptlogs.elapsed("failed")
            starts[execution_id] = started.isoformat()

        async def one(execution_id: str) -> None:
            body = {
                "task": task,
                "outcome": "failed",
                "execution_id": execution_id,
                "start": starts[execution_id],
            }
            async with session.post(f"{self.sim_url}/control/executions", json=body) as response:
                response.raise_for_status()

        for start in range(0, count, 50):
            await asyncio.gather(*(one(e) for e in burst.execution_ids[start : start + 50]))
        return burst

    async def send(
        self, burst: Burst, *, rate: float | None = None, start: int = 0, stop: int | None = None
    ) -> None:
        """The scheduler's failed-reload datagrams for ``burst`` (or the slice start:stop); with
        two ingests, each datagram goes to both, as a node's two appenders send it."""
        chosen = self._site.tasks[burst.task]
        app = self._site.app_of(chosen)
        indexes = range(start, len(burst.execution_ids) if stop is None else stop)
        ports = (self.udp_port, self.second_udp_port) if self.two_ingests else (self.udp_port,)
        async with contextlib.AsyncExitStack() as stack:
            senders = [
                await stack.enter_async_context(emitter.UdpSender(("127.0.0.1", port)))
                for port in ports
            ]
            async for n in emitter.paced(len(indexes), rate):
                index = indexes[n]
                item = emitter.datagram(
                    "failed",
                    chosen,
                    app,
                    execution_id=burst.execution_ids[index],
                    when=burst.stamps[index],
                )
                for sender in senders:
                    await sender.send(item)
                burst.sent_at[index] = time.monotonic()

    async def metrics_text(self, name: str) -> str:
        """A service's /metrics page."""
        url = f"http://127.0.0.1:{self.services[name].health_port}/metrics"
        async with httpx.AsyncClient(timeout=5.0) as client:
            return (await client.get(url)).text

    async def metric(self, name: str, sample: str) -> float:
        """A sample of a service's /metrics, e.g. ("ingest", 'herald_datagrams_total{outcome="accepted"')."""
        total = 0.0
        for line in (await self.metrics_text(name)).splitlines():
            if line.startswith(sample):
                total += float(line.rsplit(" ", 1)[-1])
        return total

    # --- what came out -------------------------------------------------------------------------

    async def failures_counted(self) -> tuple[float, int]:
        """The failures the metrics writer's Prometheus series counted (every task's), and how
        often the metrics writer has been started."""
        name = HERALD_UP if self.one_process else "metrics-writer"
        text = await self.metrics_text(name)
        total = sum(
            float(line.rsplit(" ", 1)[-1])
            for line in text.splitlines()
            if line.startswith("herald_reload_outcomes_total{") and 'outcome="failed"' in line
        )
        return total, self.services[name].starts

    def receipts_for(self, event_ids: set[str]) -> list[Receipt]:
        self._decode_receipts()
        return [receipt for receipt in self._receipts if receipt.event_id in event_ids]

    def _decode_receipts(self) -> None:
        """Decode what the observer saw since the last call (tests poll for receipts: decoding
        every receipt again each time would compete with the services for the cores)."""
        assert self.receipts is not None
        seen = self.receipts.seen
        for message in seen[self._receipts_read :]:
            document: dict[str, Any] = msgspec.json.decode(message.payload)
            if "event_id" in document:
                self._receipts.append(
                    Receipt(
                        service=message.topic.rsplit("/", 1)[-1],
                        event_id=document["event_id"],
                        destination=document.get("destination", ""),
                        target=document.get("target", ""),
                        outcome=document.get("outcome", ""),
                        attempts=int(document.get("attempts", 0)),
                    )
                )
        self._receipts_read = len(seen)

    # --- the configuration ---------------------------------------------------------------------

    def core_sections(self) -> dict[str, Any]:
        """broker, health, logging, qlik and ingest: what every configuration of the system has."""
        state = self.workdir / "state"
        return {
            "broker": {
                "host": self.broker.host,
                "port": self.broker.port,
                "topic_prefix": PREFIX,
                "instance": "system-test",
                "reconnect_max": "2s",
            },
            "health": {"host": "127.0.0.1", "port": 0},
            "logging": {"level": "WARNING"},
            "qlik": {
                "qrs": {
                    "url": self.sim_url,
                    "client_cert": str(self.certs.client),
                    "client_key": str(self.certs.client_key),
                    "ca_cert": str(self.certs.root),
                    "timeout": "5s",
                    "attempts": 1,
                },
                "qmc_url": "https://sense.example.com/qmc",
                "hub_url": "https://sense.example.com/hub",
                "timezone": "UTC",
            },
            "ingest": {
                "state_dir": str(state / "ingest"),
                "udp": {"host": "127.0.0.1", "port": self.udp_port},
                **self.ingest_extra,
            },
        }

    def emailer_section(self) -> dict[str, Any]:
        """The emailer, to the caller's SMTP server, every failure to both recipients."""
        d = self.destinations
        state = self.workdir / "state"
        return {
            "state_dir": str(state / "emailer"),
            "from_address": "Qlik Sense alerts <qlik-alerts@example.com>",
            "smtp": {
                "host": d.smtp.host,
                "port": d.smtp.port,
                "tls": "starttls",
                "username": SMTP_USER,
                "password": SMTP_PASSWORD,
                "ca_file": str(d.smtp.ca_file),
                "timeout": "30s",
            },
            "failed": {
                "recipients": list(RECIPIENTS),
                "recipients_custom_property": None,
                "app_owner": {"enabled": False},
                "rate_limit": None,
                "group": ONE_PER_EVENT,
            },
            "aborted": {"rate_limit": None, "group": ONE_PER_EVENT},
            "recovered": {"rate_limit": None, "group": ONE_PER_EVENT},
            "delivery": _delivery(),
        }

    def render_config(self) -> str:
        d = self.destinations
        state = self.workdir / "state"
        config: dict[str, Any] = {
            **self.core_sections(),
            "emailer": self.emailer_section(),
            "chat_notifier": {
                "state_dir": str(state / "chat-notifier"),
                "slack": [
                    {
                        "name": "ops",
                        "webhook_url": d.chat.slack_url(SLACK_TOKEN),
                        "outcomes": ["failed"],
                        "rate_limit": None,
                        "group": ONE_PER_EVENT,
                    }
                ],
                "teams": [
                    {
                        "name": "ops",
                        "webhook_url": d.chat.teams_url(TEAMS_TOKEN),
                        "outcomes": ["failed"],
                        "rate_limit": None,
                        "group": ONE_PER_EVENT,
                    }
                ],
                "delivery": _delivery(),
            },
            "incident_forwarder": {
                "state_dir": str(state / "incident-forwarder"),
                "new_relic": {
                    "event_url": d.new_relic.base_url,
                    "log_url": d.new_relic.log_url,
                    "accounts": [
                        {
                            "name": "system",
                            "account_id": NEW_RELIC_ACCOUNT,
                            "insert_key": NEW_RELIC_KEY,
                        }
                    ],
                    "event": {
                        "enabled": True,
                        "always_accounts": ["system"],
                        "failed_account_property": "Herald_None",
                        "rate_limit": None,
                    },
                    "log": {
                        "enabled": True,
                        "always_accounts": ["system"],
                        "failed_account_property": "Herald_None",
                        "rate_limit": None,
                    },
                },
                "butler_mqtt": {"enabled": True},
                "signl4": {"enabled": True, "url": d.signl4.url, "rate_limit": None},
                "webhooks": [
                    {"name": "ops", "url": d.webhook.url, "method": "POST", "rate_limit": None}
                ],
                "delivery": _delivery(),
            },
            "metrics_writer": {
                "state_dir": str(state / "metrics-writer"),
                "influxdb": {
                    "version": 1,
                    "url": d.influx.url,
                    "v1": {"database": INFLUX_DATABASE},
                    "flush_interval": "200ms",
                },
                "prometheus": {"enabled": True},
                "delivery": {**_delivery(), "concurrency": 256},
            },
            "log_archiver": {
                "state_dir": str(state / "log-archiver"),
                "directory": str(self.archive),
                "retention_days": 0,
                "delivery": _delivery(),
            },
        }
        return msgspec.json.encode(config).decode() + "\n"  # JSON is YAML


@contextlib.asynccontextmanager
async def whole_system(
    work: Path,
    *,
    one_process: bool = False,
    two_ingests: bool = False,
    ingest_extra: dict[str, Any] | None = None,
    broker_options: dict[str, Any] | None = None,
    pipeline: type[Pipeline] = Pipeline,
) -> AsyncIterator[Pipeline]:
    """Every destination's server (SMTP, Slack/Teams, New Relic, Signl4, a webhook, InfluxDB)
    and the Herald pipeline that delivers to them, all started under ``work``; ``pipeline`` is
    a :class:`Pipeline` subclass that writes another configuration (``render_config``)."""
    influx = InfluxDB(work / "influxdb")
    influx.start()
    try:
        async with (
            SmtpServer(work / "smtp", users={SMTP_USER: SMTP_PASSWORD}) as smtp,
            ChatStandins() as chat,
            NewRelicStandIn({NEW_RELIC_ACCOUNT: NEW_RELIC_KEY}) as new_relic,
            Signl4StandIn("signl4-team-secret") as signl4,
            HttpReceiver() as webhook,
        ):
            destinations = Destinations(smtp, chat, new_relic, signl4, webhook, influx)
            async with pipeline(
                work / "herald",
                destinations,
                ingest_extra=ingest_extra or {},
                one_process=one_process,
                two_ingests=two_ingests,
                broker_options=broker_options or {},
            ) as system:
                yield system
    finally:
        influx.stop()


#: The system tests count one message per event at every destination: no digests.
ONE_PER_EVENT: Final = {"enabled": False}


def _delivery() -> dict[str, Any]:
    """Quick retries, so a destination that recovers is retried within seconds."""
    return {"initial_backoff": "200ms", "max_backoff": "2s", "attempt_timeout": "15s"}


# --- proving "exactly once" --------------------------------------------------------------------

#: (service, destination, target) every failed event owes, with the configuration above
OWED: tuple[tuple[str, str, str], ...] = (
    *(("emailer", "email-failed", recipient) for recipient in RECIPIENTS),
    ("chat-notifier", "slack:ops", ""),
    ("chat-notifier", "teams:ops", ""),
    ("incident-forwarder", "new-relic-event", "system"),
    ("incident-forwarder", "new-relic-log", "system"),
    ("incident-forwarder", "butler-mqtt", "basic"),
    ("incident-forwarder", "butler-mqtt", "full"),
    ("incident-forwarder", "signl4", ""),
    ("incident-forwarder", "webhook:ops", ""),
    ("metrics-writer", "influxdb", ""),
    ("metrics-writer", "prometheus", ""),
    ("log-archiver", "archive", ""),
)


@dataclass
class Baseline:
    """How much each destination had accepted before a test's alerts were sent: stand-ins keep
    everything, and besides the check by id the alerts to Slack, Teams and Signl4 are counted,
    as are Butler's task-name-only MQTT messages, which carry no id at all."""

    slack: int
    teams: int
    signl4: int
    butler_basic: int
    #: failures the Prometheus series had counted, and the metrics writer's starts then (its
    #: series live in memory, so a restart begins them again); None: not read (:meth:`of`)
    prometheus: tuple[float, int] | None = None

    @classmethod
    def of(cls, destinations: Destinations) -> Baseline:
        return cls(
            slack=len(destinations.chat.accepted(SLACK_TOKEN)),
            teams=len(destinations.chat.accepted(TEAMS_TOKEN)),
            signl4=len(destinations.signl4.alerts),
            butler_basic=len(destinations.butler_messages("task_failure")),
        )

    @classmethod
    async def taken(cls, pipeline: Pipeline) -> Baseline:
        """:meth:`of`, and the Prometheus count as well."""
        baseline = cls.of(pipeline.destinations)
        baseline.prometheus = await pipeline.failures_counted()
        return baseline


async def wait_for_receipts(pipeline: Pipeline, burst: Burst, within: float) -> None:
    """Until every delivery the burst owes has its receipt (or time runs out)."""
    expected = {(e, *owed) for e in burst.event_ids() for owed in OWED}
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        got = {
            (r.event_id, r.service, r.destination, r.target)
            for r in pipeline.receipts_for(set(burst.event_ids()))
            if r.outcome in ("delivered", "skipped")
        }
        if expected <= got:
            return
        await asyncio.sleep(0.5)


def delivered_exactly_once(
    pipeline: Pipeline, burst: Burst, baseline: Baseline, *, script_logs: bool = True
) -> dict[str, dict[str, int]]:
    """What each destination got of ``burst`` that it should not have (empty: exactly once).

    Keys name the destination; values show the surplus or the shortfall. ``script_logs=False``:
    the events carry no script log (the QRS was down), so the archive skips them.
    """
    d = pipeline.destinations
    n = len(burst.execution_ids)
    executions = set(burst.execution_ids)
    events = set(burst.event_ids())
    problems: dict[str, dict[str, int]] = {}

    def once(name: str, counted: Counter[Any], expected: set[Any]) -> None:
        wrong = {key: count for key, count in counted.items() if count != 1}
        missing = expected - set(counted)
        if wrong or missing:
            problems[name] = {
                "more than once": len(wrong),
                "most copies": max(wrong.values(), default=1),
                "missing": len(missing),
            }

    # Receipts: every delivery owed was delivered, none dead-lettered or suppressed.
    receipts = pipeline.receipts_for(events)
    owed = OWED if script_logs else tuple(o for o in OWED if o[0] != "log-archiver")
    outcomes = Counter(r.outcome for r in receipts if r.service != "log-archiver" or script_logs)
    if set(outcomes) - {"delivered"}:
        problems["receipt outcomes"] = dict(outcomes)
    got = {(r.event_id, r.service, r.destination, r.target) for r in receipts}
    missing_receipts = {(e, *o) for e in events for o in owed} - got
    if missing_receipts:
        problems["receipts"] = {"missing": len(missing_receipts)}

    mails: Counter[tuple[str, str]] = Counter()
    for mail in d.smtp.received:
        event_id = str(mail.message["X-Herald-Event-Id"])
        if event_id in events:
            mails.update((recipient.lower(), event_id) for recipient in mail.recipients)
    once("email", mails, {(r, e) for r in RECIPIENTS for e in events})

    new_relic: Counter[str] = Counter(
        str(item.get("qs_executionId"))
        for batch in d.new_relic.events
        for item in batch.events
        if item.get("qs_executionId") in executions
    )
    once("new relic", new_relic, executions)

    new_relic_logs: Counter[str] = Counter(
        str(batch.attributes.get("qs_executionId"))
        for batch in d.new_relic.logs
        if batch.attributes.get("qs_executionId") in executions
    )
    once("new relic logs", new_relic_logs, executions)

    butler_full: Counter[str] = Counter()
    for payload in d.butler_messages("task_failure_full"):
        execution_id = msgspec.json.decode(payload).get("executionId")
        if execution_id in executions:
            butler_full[execution_id] += 1
    once("butler mqtt full", butler_full, executions)

    webhook: Counter[str] = Counter()
    for request in d.webhook.accepted:
        execution_id = msgspec.json.decode(request.body).get("executionId")
        if execution_id in executions:
            webhook[execution_id] += 1
    once("webhook", webhook, executions)

    rows = d.influx.rows("SELECT execution_id, task_name FROM reload_task_failed", INFLUX_DATABASE)
    influx: Counter[str] = Counter(
        str(row["execution_id"]) for row in rows if row["execution_id"] in executions
    )
    once("influxdb", influx, executions)

    archived = {str(path.relative_to(pipeline.archive)) for path in pipeline.archive.rglob("*.log")}
    missing_files = burst.archive_names() - archived if script_logs else set()
    if missing_files:
        problems["archive"] = {"missing": len(missing_files)}

    # No id of ours in these payloads, but in the X-Herald-Event-Id header of each request: each
    # event once by that, and the counts must match too (nothing arrived without an id).
    slack, teams = d.chat.accepted(SLACK_TOKEN), d.chat.accepted(TEAMS_TOKEN)
    for name, ids, before in (
        ("slack", [r.event_id for r in slack], baseline.slack),
        ("teams", [r.event_id for r in teams], baseline.teams),
        ("signl4", d.signl4.alert_event_ids, baseline.signl4),
    ):
        once(name, Counter(e for e in ids if e in events), events)
        if name not in problems and len(ids) - before != n:
            problems[name] = {"expected": n, "accepted": len(ids) - before}
    # Butler's plain topic carries the task name only: counted, each with its receipt.
    butler_basic = len(d.butler_messages("task_failure")) - baseline.butler_basic
    if butler_basic != n:
        problems["butler mqtt"] = {"expected": n, "accepted": butler_basic}
    return problems


async def counted_once_by_prometheus(
    pipeline: Pipeline, burst: Burst, baseline: Baseline
) -> dict[str, dict[str, int]]:
    """The Prometheus series count failures per task, not per event: the count must have grown
    by the burst's size (empty: it did). Not checked when the metrics writer was restarted
    since the baseline, or the baseline has no count (:meth:`Baseline.of`)."""
    if baseline.prometheus is None:
        return {}
    before, starts = baseline.prometheus
    now, starts_now = await pipeline.failures_counted()
    if starts_now != starts or now - before == len(burst.execution_ids):
        return {}
    return {"prometheus": {"expected": len(burst.execution_ids), "counted": int(now - before)}}
