"""What the configuration points at, checked before a service starts: one place for check-config
and for ``herald run``/``herald up``, so the two agree by construction.

pydantic checks the file's shape (:mod:`herald_shared.config`); the preflight checks the world the
file names: files exist, are readable and are certificates or keys; time zones exist; template
folders exist and their templates compile; e-mail addresses parse; URLs are absolute; ports are
free; state databases are SQLite databases. Every problem is one line naming the origin (the file,
or the variable that set the key), the key and the value, and all of them are reported at once as
a :class:`~herald_shared.config.ConfigError`: the process exits with status 2 before it serves
anything. The shared sections' checks are here; each service adds its own through
``ServiceSpec.preflight``.

``mounted=False`` (``herald check-config --secrets-not-mounted``) checks a file away from where it
runs (CI, a workstation before a rollout): files that only the container has (``*_file`` secrets,
certificates and keys, state databases) must be absolute paths but are not read, and ports are not
tried, since they are the container's, nor is the broker asked whether it takes the account.

The broker account is the one check that needs the network (:func:`broker_account`): one short
connection, whose refusal ("bad user name or password") stops the start; an unreachable broker
does not, since the connection loop waits for it.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from herald_shared.bus import account_refusal
from herald_shared.config import ConfigDocument, ConfigError, secret_files_mounted
from herald_shared.settings import BrokerSettings, HealthSettings, ServiceSection, TlsSettings

if TYPE_CHECKING:
    from herald_shared.runtime import ProcessSettings, ServiceSpec


@dataclass
class Preflight:
    """Collects the problems of one check; the helpers below each check one kind of thing."""

    document: ConfigDocument
    mounted: bool = True
    problems: list[str] = field(default_factory=list)
    #: What works but should not be left so (certificate checks off, alerts sent unencrypted):
    #: printed by check-config and logged at start, never a reason to refuse.
    warnings: list[str] = field(default_factory=list)

    def fail(self, key: str, message: str) -> None:
        self.problems.append(f"{self.document.origin(key)}: {key}: {message}")

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(f"{self.document.origin(key)}: {key}: {message}")

    def encrypted(self, key: str, url: str | None, what: str) -> None:
        """A warning for an ``http://`` URL: ``what`` travels unencrypted (tokens and alert
        contents readable on the way). The URL itself is never shown: it may hold a token."""
        if url is not None and urlsplit(url).scheme == "http":
            self.warn(key, f"http:// sends {what} unencrypted; use https:// if the server has it")

    def verifies(self, key: str, verify: bool, peer: str) -> None:
        """A warning when certificate checks are off for ``peer``."""
        if not verify:
            self.warn(
                key,
                f"false: {peer}'s certificate is not checked, so anyone on the way can pose as "
                "it; give its CA certificate instead and set it to true",
            )

    def file(self, key: str, path: Path | None) -> bool:
        """True if ``path`` can be read now (with ``mounted=False``: only that it is absolute)."""
        if path is None:
            return False
        if not self.mounted:
            if not path.is_absolute():
                self.fail(key, f"{path} must be an absolute path (it is mounted where Herald runs)")
            return False
        if not path.exists():
            self.fail(key, f"{path} does not exist")
        elif not path.is_file():
            self.fail(key, f"{path} is not a file")
        else:
            try:
                with path.open("rb"):
                    return True
            except OSError as error:
                self.fail(key, f"cannot read {path}: {error.strerror}")
        return False

    def certificate_authority(self, key: str, path: Path | None) -> None:
        """A PEM file of trusted certificates (what ``ca_file`` names)."""
        if self.file(key, path):
            try:
                ssl.create_default_context(cafile=str(path))
            except ssl.SSLError as error:
                self.fail(key, f"{path} is not a PEM certificate ({_reason(error)})")

    def client_certificate(
        self,
        cert_key: str,
        cert: Path | None,
        key_key: str,
        key: Path | None,
        password: str | None = None,
    ) -> None:
        """A PEM certificate and its private key (in the certificate's file when ``key`` is None)."""
        readable = self.file(cert_key, cert)
        if key is not None:
            readable = self.file(key_key, key) and readable
        elif cert is None:
            return
        if not readable or cert is None:
            if cert is None and key is not None:
                self.fail(key_key, f"{key} is set but {cert_key} is not")
            return
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_cert_chain(str(cert), str(key) if key else None, password=password)
        except ssl.SSLError as error:
            pair = f"{cert} and {key}" if key else str(cert)
            self.fail(
                cert_key,
                f"{pair} are not a PEM certificate and its matching private key ({_reason(error)})",
            )

    def timezone(self, key: str, name: str | None) -> None:
        if name is None:
            return
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.fail(key, f"{name!r} is not a time zone (an IANA name such as Europe/Stockholm)")

    def directory(self, key: str, path: Path | None) -> bool:
        """True if ``path`` is a readable folder."""
        if path is None:
            return False
        if not path.is_dir():
            self.fail(key, f"{path} is not a folder" if path.exists() else f"{path} does not exist")
            return False
        return True

    def absolute_url(self, key: str, url: str | None, *, secret: bool = False) -> None:
        """An http(s) URL with a host; a ``secret`` one is never shown (it may carry a token)."""
        if url is None or (secret and not self.mounted):  # a secret's file was not read
            return
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            shown = "the URL" if secret else repr(url)
            self.fail(key, f"{shown} is not an absolute http:// or https:// URL")

    def port_free(self, key: str, host: str, port: int, *, udp: bool = False) -> None:
        """Try to bind the port the service will bind; port 0 (any free port) always is."""
        if port == 0 or not self.mounted:
            return
        kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            with socket.socket(family, kind) as probe:
                if not udp:  # as the server will: a closed connection's TIME_WAIT is no owner
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
        except OSError as error:
            what = "UDP" if udp else "TCP"
            self.fail(
                key,
                f"cannot listen on {what} {host}:{port}: {error.strerror} (does another "
                "program, or Herald already running, hold it?)",
            )

    def state_database(self, key: str, state_dir: Path, service: str) -> None:
        """The service's SQLite file, if it exists, must be one (it is created otherwise)."""
        if not self.mounted:
            return
        path = state_dir / f"{service}.sqlite3"
        if state_dir.exists() and not state_dir.is_dir():
            self.fail(key, f"{state_dir} is not a folder")
            return
        if not path.is_file():
            return
        try:
            with contextlib.closing(
                sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            ) as db:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as error:
            self.fail(
                key,
                f"{path} is not a usable state database ({error}); move it aside to start "
                "afresh (what it held is lost)",
            )

    def raise_problems(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)


def _reason(error: ssl.SSLError) -> str:
    return str(error.reason or error.strerror or error).replace("_", " ").lower()


def tls_files(check: Preflight, key: str, tls: TlsSettings) -> None:
    """A ``tls:`` block (the broker's, an outgoing broker's)."""
    if not tls.enabled:
        return
    check.certificate_authority(f"{key}.ca_file", tls.ca_file)
    check.client_certificate(f"{key}.cert_file", tls.cert_file, f"{key}.key_file", tls.key_file)


def shared_sections(check: Preflight, broker: BrokerSettings, health: HealthSettings) -> None:
    tls_files(check, "broker.tls", broker.tls)
    qlik = check.document.data.get("qlik")
    site_zone = qlik.get("timezone") if isinstance(qlik, dict) else None
    if site_zone:  # ingest's, and every destination's without one of its own
        check.timezone("qlik.timezone", str(site_zone))
    if broker.tls.enabled:
        check.verifies("broker.tls.verify", broker.tls.verify, "the broker")
    if broker.embedded:
        check.port_free("broker.port", broker.host, broker.port)
    check.port_free("health.port", health.host, health.port)


def run(
    document: ConfigDocument,
    process: ProcessSettings,
    *,
    mounted: bool = True,
) -> list[str]:
    """Every check for the process's shared sections and services; raises :class:`ConfigError`.

    Returns the warnings: what works but should not be left so."""
    check = Preflight(document, mounted=mounted)
    shared_sections(check, process.broker, process.health)
    for spec, settings in process.services:
        _service(check, spec, settings)
    check.raise_problems()
    return check.warnings


async def broker_account(document: ConfigDocument, process: ProcessSettings) -> None:
    """The broker takes the configured account (when it can be reached: a broker that is down is
    no configuration mistake, the connection loop waits for it); raises :class:`ConfigError`."""
    if process.broker.embedded or not process.services:
        return
    refusal = await account_refusal(process.broker, process.services[0][0].name)
    if refusal is not None:
        written = document.data.get("broker") or {}
        key = next(
            (f"broker.{name}" for name in ("password_file", "password") if name in written),
            "broker.username",
        )
        raise ConfigError([f"{document.origin(key)}: {key}: {refusal}"])


def _service(check: Preflight, spec: ServiceSpec[Any], settings: Any) -> None:
    section = settings if isinstance(settings, ServiceSection) else None
    if section is None:  # a service reading several sections keeps its own in an attribute
        section = getattr(settings, spec.section, None)
    if isinstance(section, ServiceSection):
        check.state_database(f"{spec.section}.state_dir", Path(section.state_dir), spec.name)
    if spec.preflight is not None:
        spec.preflight(settings, check)


@contextlib.contextmanager
def secrets_not_mounted() -> Iterator[None]:
    """While validating: ``*_file`` secrets are checked to be absolute paths, not read."""
    token = secret_files_mounted.set(False)
    try:
        yield
    finally:
        secret_files_mounted.reset(token)


#: What a service contributes: its settings and the collector.
ServiceCheck = Callable[[Any, Preflight], None]

__all__: Sequence[str] = (
    "Preflight",
    "ServiceCheck",
    "broker_account",
    "run",
    "secrets_not_mounted",
    "tls_files",
)
