"""The one interface every destination implements; the runner does everything around it.

A destination says which targets an event goes to (one by default; a recipient per address for
e-mail, an account per New Relic account, …) and delivers to one target. It signals how an
attempt failed by the exception it raises:

- :class:`TransientError`: worth retrying (network, timeout, 408/425/429/5xx, a full disk);
  ``retry_after`` passes on a server's ``Retry-After``.
- :class:`PermanentError`: retrying cannot help (a 4xx, a rejected recipient); dead-lettered.
- :class:`Skipped`: nothing to deliver for this event (recorded and reported, not an error).

Any other exception is a bug in the destination; the runner logs it and treats it as transient,
so the alert is retried and, if it never succeeds, dead-lettered rather than lost.

A destination is one module: its settings class, its :class:`Destination` class(es) and
``destinations(settings, context)``, which builds them from the settings under the module's
``KEY`` in the service's section (``None``: the section itself). A service lists its modules in
one tuple and builds with :func:`build`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from herald_shared.events import Event
from herald_shared.matcher import MATCH_ALL, When
from herald_shared.settings import BrokerSettings, DestinationSettings, GroupSettings

if TYPE_CHECKING:
    from herald_shared.delivery.grouping import Digest

__all__ = [
    "SINGLE_TARGET",
    "Context",
    "DeliveryError",
    "Destination",
    "DestinationModule",
    "PermanentError",
    "Skipped",
    "Target",
    "TransientError",
    "build",
]


class DeliveryError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(DeliveryError):
    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status  # the HTTP status that refused it, when there was one


class Skipped(DeliveryError):
    pass


@dataclass(frozen=True)
class Target:
    """Where one delivery of an event goes within a destination.

    ``id`` tells deliveries of one event apart (the ledger key is event, destination, target).
    Deliveries whose ``rate_key`` was used within the destination's ``rate_limit`` window are
    suppressed (Butler's semantics: at most one send per key per window).
    """

    id: str = ""
    rate_key: str | None = None


SINGLE_TARGET: Sequence[Target] = (Target(),)


class Destination(ABC):
    #: Unique within a service, stable across releases (it is part of the ledger key).
    name: str
    when: When = MATCH_ALL
    #: Seconds; None means no rate limit.
    rate_limit: float | None = None
    #: Why this destination does not take test alerts (``herald send-test``), for their
    #: ``skipped`` receipt; None: it delivers them, labelled as a test.
    skips_tests: str | None = None
    #: Names of ``time_intervals``: nothing is delivered while one of ``mute_during`` holds, or
    #: while none of ``active_during`` does (a ``muted`` receipt instead).
    mute_during: Sequence[str] = ()
    active_during: Sequence[str] = ()
    #: A destination people read may collect alerts into digests (delivery/grouping.py) and
    #: then implements :meth:`deliver_digest`; None: one delivery per event (machines).
    group: GroupSettings | None = None

    def route_by(self, settings: DestinationSettings) -> None:
        """Take what every destination's settings say: ``when:``, ``mute_during:``,
        ``active_during:``."""
        self.when = settings.when
        self.mute_during = tuple(settings.mute_during)
        self.active_during = tuple(settings.active_during)

    def targets(self, event: Event) -> Sequence[Target]:
        """The targets ``event`` goes to; empty when this destination does not want it."""
        return SINGLE_TARGET

    @abstractmethod
    async def deliver(self, event: Event, target: str) -> str | None:
        """Deliver once to the target with this id; return an optional detail for the receipt."""

    async def deliver_digest(self, digest: Digest, target: str) -> str | None:
        """Deliver one digest (the destination has ``group`` settings) to the target."""
        raise NotImplementedError(f"{self.name} does not send digests")

    async def start(self) -> None:  # noqa: B027 - an optional hook
        """Open what deliveries need (connections, clients); called once before the first."""

    async def close(self) -> None:  # noqa: B027 - an optional hook
        """Release what :meth:`start` opened."""

    @property
    def ready(self) -> bool:
        """False while the destination knows it cannot deliver (reported by /readyz)."""
        return True


@dataclass(frozen=True)
class Context:
    """What a destination module gets besides its own settings."""

    service: str  # the service's name: metric labels, client ids
    broker: BrokerSettings  # Herald's broker (a destination may publish to it)


class DestinationModule(Protocol):
    """A destination module, as a service's registry tuple lists it."""

    @property
    def KEY(self) -> str | None:
        """The key of the module's settings in the service's section; None: the section itself."""

    def destinations(self, settings: Any, context: Context) -> list[Destination]: ...


def build(
    modules: Iterable[DestinationModule], section: Any, context: Context
) -> list[Destination]:
    """Every destination the modules' settings in ``section`` enable, in the modules' order."""
    built: list[Destination] = []
    for module in modules:
        settings = section if module.KEY is None else getattr(section, module.KEY)
        built += module.destinations(settings, context)
    return built
