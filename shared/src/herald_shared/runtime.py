"""Running services: discovery, configuration, start order, signals and graceful stop.

A service package registers a :class:`ServiceSpec` under the ``herald.services`` entry-point
group. ``herald run <service>`` runs one (what each container does); ``herald up`` runs every
installed service whose section is present and enabled, in one process.

On SIGTERM or SIGINT a process stops taking events, gives in-flight deliveries their grace
period, publishes ``offline`` and disconnects (the will does not fire), and exits 0. A second
signal ends it at once. SIGHUP (or ``POST /-/reload`` on the health port) reloads the
configuration file, as Prometheus and Alertmanager do: the new file is validated first, and only
a valid one replaces the running services; an invalid one is logged and the process carries on.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from herald_shared import logs, preflight, time_intervals
from herald_shared.config import ConfigDocument, ConfigError, secret_values
from herald_shared.health import HealthServer
from herald_shared.preflight import Preflight
from herald_shared.reloading import Reload, ReloadRequests
from herald_shared.settings import BrokerSettings, HealthSettings, LoggingSettings

__all__ = [
    "ENTRY_POINT_GROUP",
    "Context",
    "ProcessSettings",
    "Service",
    "ServiceSpec",
    "configure",
    "installed_service",
    "installed_service_names",
    "installed_services",
    "serve",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "herald.services"

S = TypeVar("S", bound=BaseModel)


class Service(Protocol):
    """A running service, as built from its settings."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def readiness(self) -> tuple[bool, str]: ...

    def liveness(self) -> tuple[bool, str]:
        """False once a vital task ended: /livez fails and Kubernetes restarts the pod."""
        ...


@dataclass(frozen=True)
class Context:
    """What every service gets besides its own settings."""

    broker: BrokerSettings
    document: ConfigDocument
    #: The named ``time_intervals`` that destinations' ``mute_during``/``active_during`` name.
    time_intervals: Mapping[str, time_intervals.NamedInterval] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceSpec(Generic[S]):
    name: str  # kebab-case: the CLI name, client id, metric label
    section: str  # its herald.yaml section
    settings: type[S]
    build: Callable[[S, Context], Service]
    # Publishers start after subscribers in `herald up`, so nothing is published before the
    # subscribers' sessions exist (the embedded broker keeps no sessions across restarts).
    publisher: bool = False
    # Validates every section the service reads; by default just its own.
    configure: Callable[[ConfigDocument], S] | None = None
    # Checks what the settings point at (files, time zones, templates, ports) before the start
    # and in check-config (herald_shared.preflight).
    preflight: Callable[[S, Preflight], None] | None = None

    def load_settings(self, document: ConfigDocument) -> S:
        if self.configure is not None:
            return self.configure(document)
        return document.section(self.section, self.settings)


def installed_services() -> dict[str, ServiceSpec[Any]]:
    found = {name: _load(name) for name in installed_service_names()}
    return dict(sorted(found.items()))


def installed_service_names() -> list[str]:
    """The installed services' names, without importing them."""
    return sorted(entry_point.name for entry_point in entry_points(group=ENTRY_POINT_GROUP))


def installed_service(name: str) -> ServiceSpec[Any] | None:
    """One service, importing only it (a service process carries no other service's code)."""
    return _load(name) if name in installed_service_names() else None


def _load(name: str) -> ServiceSpec[Any]:
    [entry_point] = entry_points(group=ENTRY_POINT_GROUP, name=name)
    spec = entry_point.load()
    if not isinstance(spec, ServiceSpec) or spec.name != name:
        raise TypeError(f"entry point {name} is not the ServiceSpec of {name}")
    return spec


@dataclass
class ProcessSettings:
    """The shared sections and each chosen service's settings, all validated."""

    broker: BrokerSettings
    health: HealthSettings
    logging: LoggingSettings
    services: list[tuple[ServiceSpec[Any], BaseModel]] = field(default_factory=list)
    time_intervals: dict[str, time_intervals.NamedInterval] = field(default_factory=dict)

    def secrets(self) -> list[str]:
        models: list[BaseModel] = [self.broker, *(settings for _, settings in self.services)]
        return [secret for model in models for secret in secret_values(model)]


def configure(document: ConfigDocument, specs: Sequence[ServiceSpec[Any]]) -> ProcessSettings:
    """Validate everything before anything connects; all problems are reported at once."""
    problems: list[str] = []
    shared: dict[str, BaseModel] = {}
    for section, model in (
        ("broker", BrokerSettings),
        ("health", HealthSettings),
        ("logging", LoggingSettings),
    ):
        try:
            shared[section] = document.section(section, model)
        except ConfigError as error:
            problems += error.problems
    intervals, interval_problems = time_intervals.problems_of(document)
    problems += interval_problems
    services: list[tuple[ServiceSpec[Any], BaseModel]] = []
    for spec in specs:
        try:
            settings = spec.load_settings(document)
        except ConfigError as error:
            problems += error.problems
            continue
        services.append((spec, settings))
        if not interval_problems:  # names are only checked against intervals that are valid
            problems += time_intervals.check_references(document, spec.section, settings, intervals)
    if problems:
        raise ConfigError(problems)
    return ProcessSettings(
        broker=shared["broker"],  # type: ignore[arg-type]
        health=shared["health"],  # type: ignore[arg-type]
        logging=shared["logging"],  # type: ignore[arg-type]
        services=services,
        time_intervals=intervals,
    )


#: Reads and validates the configuration again: what a reload applies (raises ConfigError).
Reconfigure = Callable[[], tuple[ConfigDocument, ProcessSettings]]


async def serve(
    document: ConfigDocument, process: ProcessSettings, reconfigure: Reconfigure | None = None
) -> int:
    """Run the configured services until SIGTERM/SIGINT; the process's exit code.

    With ``reconfigure``, SIGHUP and ``POST /-/reload`` read the file again: a valid one
    restarts the services in-process on it, an invalid one is refused with a log line and the
    services keep running on the previous one.

    A configuration that cannot work (a missing certificate, a busy port, a refused broker
    account) raises :class:`ConfigError` before anything is served.
    """
    warnings = preflight.run(document, process)
    await preflight.broker_account(document, process)
    logs.setup(process.logging)
    logs.REDACTOR.add(process.secrets())
    for warning in warnings:
        log.warning("%s", warning)
    for sentence in document.deprecations:
        log.warning("%s", sentence)
    stop = asyncio.Event()
    reloads = ReloadRequests(asyncio.get_running_loop())
    _install_signal_handlers(stop, reloads if reconfigure else None)

    broker_settings = process.broker
    embedded = None
    if broker_settings.embedded:
        from herald_shared.embedded_broker import EmbeddedBroker

        embedded = EmbeddedBroker(broker_settings)
        await embedded.start()

    health = HealthServer(process.health, reloads.from_thread if reconfigure else None)
    running: list[Service] = []
    try:
        health.start()
        running = await _start_services(document, process, health)
        health.mark_started()
        while (request := await _next_reload(reloads, stop)) is not None:
            assert reconfigure is not None  # no handler queues a reload without it
            process, running = await _reload(request, reconfigure, process, running, health)
        log.info("stopping: no new events are taken; in-flight deliveries get their grace period")
    finally:
        await _stop_services(running)
        health.stop()
        if embedded is not None:
            await embedded.stop()
    log.info("stopped")
    return 0


async def _start_services(
    document: ConfigDocument, process: ProcessSettings, health: HealthServer
) -> list[Service]:
    context = Context(
        broker=process.broker, document=document, time_intervals=process.time_intervals
    )
    running: list[Service] = []
    try:
        for spec, settings in sorted(process.services, key=lambda item: item[0].publisher):
            with logs.for_service(spec.name):
                service = spec.build(settings, context)
                await service.start()
            running.append(service)
            health.add_check(service.name, service.readiness, service.liveness)
            log.info("started %s", service.name)
    except BaseException:
        await _stop_services(running)
        raise
    return running


async def _stop_services(running: list[Service]) -> None:
    for service in reversed(running):
        with logs.for_service(service.name):
            try:
                await service.stop()
            except Exception:
                log.exception("stopping %s failed", service.name)


async def _next_reload(reloads: ReloadRequests, stop: asyncio.Event) -> Reload | None:
    """The next reload request, or None once the process is asked to stop."""
    asked = asyncio.ensure_future(reloads.next())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait((asked, stopping), return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if asked.done():
        return asked.result()
    asked.cancel()
    return None


async def _reload(
    request: Reload,
    reconfigure: Reconfigure,
    process: ProcessSettings,
    running: list[Service],
    health: HealthServer,
) -> tuple[ProcessSettings, list[Service]]:
    """Apply a valid configuration (restarting the services) or keep the running one."""
    try:
        document, new = reconfigure()
    except ConfigError as error:
        log.error(
            "configuration not reloaded, still running on the previous one: %s",
            "; ".join(error.problems),
        )
        request.set_exception(error)
        return process, running
    log.info("reloading the configuration from %s: restarting the services", document.path)
    for section, why in _needs_restart(process, new):
        log.warning("%s changed: %s; it takes effect at the next start", section, why)
    health.mark_started(False)
    await _stop_services(running)
    running.clear()  # stopped: the caller's `finally` must not stop them again
    health.remove_checks()
    logs.setup(new.logging)
    logs.REDACTOR.add(new.secrets())
    # What the running process cannot change stays as it started.
    new = replace(new, health=process.health, broker=_kept_broker(process.broker, new.broker))
    try:
        running = await _start_services(document, new, health)
    except Exception as error:
        # Validation passed but a service could not start on it (a port taken, say): the
        # process ends, as it would have at start, and its supervisor restarts it.
        request.set_exception(error)
        raise
    health.mark_started()
    names = ", ".join(service.name for service in running)
    log.info("configuration reloaded from %s: running %s", document.path, names)
    request.set_result(f"configuration reloaded from {document.path}: running {names}")
    return new, running


def _needs_restart(old: ProcessSettings, new: ProcessSettings) -> list[tuple[str, str]]:
    """The changes that only a restart of the process applies."""
    changes = []
    if old.health != new.health:
        changes.append(("health", "the health server keeps its address"))
    if old.broker.embedded != new.broker.embedded:
        changes.append(("broker.embedded", "the embedded broker keeps running as it started"))
    return changes


def _kept_broker(old: BrokerSettings, new: BrokerSettings) -> BrokerSettings:
    if old.embedded == new.embedded:
        return new
    return new.model_copy(update={"embedded": old.embedded})


def _install_signal_handlers(stop: asyncio.Event, reloads: ReloadRequests | None) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            # A second Ctrl-C means "now"; process managers may repeat SIGTERM, which must not
            # cut the grace period short.
            if signum == signal.SIGINT:
                log.warning("second SIGINT: exiting at once")
                raise SystemExit(1)
            log.info("received %s again; still stopping", name)
            return
        log.info("received %s", name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    if reloads is not None:
        loop.add_signal_handler(signal.SIGHUP, _on_sighup, reloads)


def _on_sighup(reloads: ReloadRequests) -> None:
    log.info("received SIGHUP: reloading the configuration")
    reloads.from_signal()
