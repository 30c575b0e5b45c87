"""Running services: discovery, configuration, start order, signals and graceful stop.

A service package registers a :class:`ServiceSpec` under the ``herald.services`` entry-point
group. ``herald run <service>`` runs one (what each container does); ``herald up`` runs every
installed service whose section is present and enabled, in one process.

On SIGTERM or SIGINT a process stops taking events, gives in-flight deliveries their grace
period, publishes ``offline`` and disconnects (the will does not fire), and exits 0. A second
signal ends it at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from herald_shared import logs, preflight
from herald_shared.config import ConfigDocument, ConfigError, secret_values
from herald_shared.health import HealthServer
from herald_shared.preflight import Preflight
from herald_shared.settings import BrokerSettings, HealthSettings, LoggingSettings

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
    services: list[tuple[ServiceSpec[Any], BaseModel]] = []
    for spec in specs:
        try:
            services.append((spec, spec.load_settings(document)))
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(problems)
    return ProcessSettings(
        broker=shared["broker"],  # type: ignore[arg-type]
        health=shared["health"],  # type: ignore[arg-type]
        logging=shared["logging"],  # type: ignore[arg-type]
        services=services,
    )


async def serve(document: ConfigDocument, process: ProcessSettings) -> int:
    """Run the configured services until SIGTERM/SIGINT; the process's exit code.

    A configuration that cannot work (a missing certificate, a busy port, a refused broker
    account) raises :class:`ConfigError` before anything is served.
    """
    preflight.run(document, process)
    await preflight.broker_account(document, process)
    logs.setup(process.logging)
    logs.REDACTOR.add(process.secrets())
    stop = asyncio.Event()
    _install_signal_handlers(stop)

    broker_settings = process.broker
    embedded = None
    if broker_settings.embedded:
        from herald_shared.embedded_broker import EmbeddedBroker

        embedded = EmbeddedBroker(broker_settings)
        await embedded.start()

    health = HealthServer(process.health)
    context = Context(broker=broker_settings, document=document)
    ordered = sorted(process.services, key=lambda item: item[0].publisher)
    running: list[Service] = []
    try:
        health.start()
        for spec, settings in ordered:
            service = spec.build(settings, context)
            await service.start()
            running.append(service)
            health.add_check(service.name, service.readiness, service.liveness)
            log.info("started %s", service.name)
        health.mark_started()
        await stop.wait()
        log.info("stopping: no new events are taken; in-flight deliveries get their grace period")
    finally:
        for service in reversed(running):
            try:
                await service.stop()
            except Exception:
                log.exception("stopping %s failed", service.name)
        health.stop()
        if embedded is not None:
            await embedded.stop()
    log.info("stopped")
    return 0


def _install_signal_handlers(stop: asyncio.Event) -> None:
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
