"""``ingest:`` and ``qlik:`` in herald.yaml."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, SecretStr, field_validator

from herald_shared.config import Duration, Section
from herald_shared.settings import ServiceSection

# RFC 1123 host names (letters, digits, hyphens; dot-separated labels).
HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


class UdpSettings(Section):
    host: str = "0.0.0.0"  # noqa: S104 - the Sense nodes send from other hosts
    port: int = Field(default=9998, ge=0, le=65535)  # 0: any free port (tests)
    # Asked of the kernel so that a burst of thousands of datagrams waits in the socket instead
    # of being dropped; Linux caps it at net.core.rmem_max unless run with CAP_NET_ADMIN.
    receive_buffer_bytes: int = Field(default=32 * 2**20, ge=65536)
    max_datagram_bytes: int = Field(default=65507, ge=512, le=65507)
    max_field_length: int = Field(default=500, ge=50)


MAX_LOOKBACK = 24 * 3600.0
SweptOutcome = Literal["failed", "aborted", "succeeded"]


class ReconcileSettings(Section):
    """``ingest.reconcile``: the sweep that asks the QRS for runs no datagram reported."""

    enabled: bool = True
    # How often to sweep; 0 turns the sweep off, as enabled: false does.
    interval: Duration = Field(default=60.0, ge=0)
    # A first start (no checkpoint yet) looks back this far, so an upgrade does not alert last
    # month's failures; at most 24 h.
    lookback: Duration = Field(default=3600.0, gt=0, le=MAX_LOOKBACK)
    # Each sweep re-reads this much before its checkpoint: Sense nodes' clocks differ, and the
    # repository may write a result a little after its stop time.
    overlap: Duration = Field(default=120.0, ge=0, le=3600)
    # At most this many execution results in one QRS answer (the sweep splits its window).
    page_size: int = Field(default=500, ge=10, le=10_000)
    # The runs it asks for. Successes are what recoveries are made of; a site that wants no
    # success events at all (no success appender either) can leave them out.
    outcomes: list[SweptOutcome] = Field(
        default_factory=lambda: list(get_args(SweptOutcome)), min_length=1
    )

    @property
    def active(self) -> bool:
        return self.enabled and self.interval > 0


class RedeliverySettings(Section):
    """End-to-end acknowledgement (``herald_ingest.redelivery``)."""

    # An event a subscriber service has not acknowledged this long after it reached the broker
    # is published again (while an instance of that service is online), then after twice as
    # long, and so on up to max_interval.
    after: Duration = Field(default=30.0, gt=0)
    max_interval: Duration = Field(default=600.0, gt=0)
    # Unacknowledged events are kept (and resent) this long, and at most this many; what is
    # dropped is counted (herald_events_expired_total) and logged as an error.
    keep_for: Duration = Field(default=24 * 3600.0, gt=0)
    keep_at_most: int = Field(default=100_000, ge=1)


class IngestSettings(ServiceSection):
    udp: UdpSettings = UdpSettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    redelivery: RedeliverySettings = RedeliverySettings()
    # IP addresses, CIDR ranges (IPv4 and IPv6) and host names of the Sense nodes; empty accepts
    # any source. Host names are resolved at start and again every allowed_sources_refresh.
    allowed_sources: list[str] = Field(default_factory=list)
    allowed_sources_refresh: Duration = Field(default=300.0, gt=0)
    # At most this many new datagrams (duplicates and rejected ones do not count) in a fixed
    # 60 s window, as Butler's udpServerConfig.rateLimit; the rest are dead-lettered, counted
    # and logged, never published (intake_limit.py). None: no limit (Butler's default too).
    max_datagrams_per_minute: int | None = Field(default=None, ge=1)
    # Butler's mqttConfig.taskFailureServerStatusTopic: "start" is published here on Herald's
    # broker when the UDP socket is open, "error" when it cannot be opened or fails. None: off.
    udp_status_topic: str | None = Field(default=None, min_length=1)
    # A datagram of the same kind and execution within this window is a duplicate (several
    # nodes, resends); the memory of it survives restarts.
    duplicate_window: Duration = 3600.0
    # Enrichment gives up after this long and publishes what it has, marked partial.
    enrichment_deadline: Duration = 10.0
    enrichment_concurrency: int = Field(default=16, ge=1, le=256)
    # Distribute tasks report completion before the final status is known; re-check this often,
    # for this long (Butler: every 30 s for 6 h).
    distribute_recheck_interval: Duration = 30.0
    distribute_recheck_for: Duration = 6 * 3600.0
    # A datagram whose handling fails unexpectedly (a bug, a QRS answer of an unforeseen shape) is
    # tried this many times in all, the wait doubling from handling_retry_delay up to
    # handling_retry_max_delay; then its alert goes out from what the datagram says, marked partial.
    handling_attempts: int = Field(default=5, ge=1, le=100)
    handling_retry_delay: Duration = 1.0
    handling_retry_max_delay: Duration = 60.0
    # While the state disk cannot be written, accepted datagrams wait in memory up to this many
    # bytes; past it, each datagram that arrives is lost (counted, logged at ERROR).
    unstored_buffer_bytes: int = Field(default=64 * 2**20, ge=0)

    @field_validator("allowed_sources")
    @classmethod
    def _sources(cls, sources: list[str]) -> list[str]:
        for source in sources:
            try:
                ipaddress.ip_network(source, strict=False)
            except ValueError:
                if not HOST_NAME.fullmatch(source) or source.replace(".", "").isdigit():
                    raise ValueError(
                        f"{source!r} is not an IP address, CIDR range or host name"
                    ) from None
        return sources


class QrsSettings(Section):
    url: str = Field(default="https://localhost:4242", pattern=r"^https?://[^/]+(:\d+)?/?$")
    # The certificates exported from the QMC (client.pem, client_key.pem, root.pem).
    client_cert: Path | None = None
    client_key: Path | None = None
    ca_cert: Path | None = None
    verify: bool = True
    user_header: str = "UserDirectory=INTERNAL; UserId=sa_repository"
    # More headers sent with every QRS call (a virtual proxy's or a gateway's, as Butler's
    # configQRS.headers.static); X-Qlik-User and X-Qlik-Xrfkey are Herald's own.
    headers: dict[str, str] = Field(default_factory=dict)
    client_key_password: SecretStr | None = None
    timeout: Duration = 10.0  # one call
    attempts: int = Field(default=3, ge=1, le=10)  # per call, within the enrichment deadline
    concurrency: int = Field(default=8, ge=1, le=64)  # calls in flight at once
    cache_ttl: Duration = 30.0  # task, app and user metadata
    # The script log is often not downloadable for a moment after the failure (docs/butler-compatibility.md §2.5).
    script_log_attempts: int = Field(default=3, ge=1, le=10)
    script_log_retry_delay: Duration = 2.0
    # The execution a datagram names may not be final yet when the datagram arrives (the
    # scheduler sends it as the state changes): ask again this often (Butler: 5 x 1 s).
    execution_attempts: int = Field(default=5, ge=1, le=30)
    execution_retry_delay: Duration = 1.0

    @field_validator("headers")
    @classmethod
    def _own_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if name.lower() in ("x-qlik-user", "x-qlik-xrfkey"):
                raise ValueError(
                    f"{name} is set by Herald (X-Qlik-User comes from qlik.qrs.user_header); "
                    "remove it from qlik.qrs.headers"
                )
        return headers


class ScriptLogSettings(Section):
    head_lines: int = Field(default=15, ge=0)
    tail_lines: int = Field(default=25, ge=0)
    max_bytes: int = Field(default=5 * 2**20, ge=0)  # the full text carried in the event


class GenericLinkSettings(Section):
    id: str
    text: str
    url: str
    comment: str = ""


class QlikSettings(Section):
    qrs: QrsSettings = QrsSettings()
    qmc_url: str | None = None  # e.g. https://sense.example.com/qmc
    hub_url: str | None = None  # e.g. https://sense.example.com/hub
    app_base_url: str | None = None  # e.g. https://sense.example.com/sense/app
    generic_links: list[GenericLinkSettings] = Field(default_factory=list)
    script_log: ScriptLogSettings = ScriptLogSettings()
    # The Sense nodes' time zone, for their datagram timestamps (IANA name); None: this host's.
    timezone: str | None = None
