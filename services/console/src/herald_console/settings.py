"""``console:`` in herald.yaml: where the console listens, who may use it, how much it keeps.

Accounts follow Prometheus' ``web.config`` convention: HTTP Basic against bcrypt hashes
(``htpasswd -nBC 10 "" | tr -d ':\\n'`` makes one), each hash also from a file
(``password_hash_file``, a mounted secret). With no account the console refuses to start
(:meth:`ConsoleSettings.unsafe`), unless ``auth: none`` is set explicitly and it listens on
loopback only.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from herald_shared.config import Duration, Section
from herald_shared.settings import ServiceSection

__all__ = ["ROLES", "ConsoleSettings", "ConsoleTlsSettings", "Role", "UserSettings"]

Role = Literal["viewer", "operator"]
#: viewer: reads every page; operator: also replays, silences and sends test alerts.
ROLES: tuple[Role, ...] = ("viewer", "operator")

_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


class UserSettings(Section):
    password_hash: SecretStr  # bcrypt, e.g. $2b$10$…; or password_hash_file
    role: Role = "viewer"

    @field_validator("password_hash")
    @classmethod
    def _bcrypt(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if text != "not-mounted" and not text.startswith(_BCRYPT_PREFIXES):
            raise ValueError("must be a bcrypt hash ($2b$…), not a password in clear")
        return value


class ConsoleTlsSettings(Section):
    """HTTPS for the console itself: both files, or neither (plain HTTP)."""

    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _both(self) -> ConsoleTlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("set both cert_file and key_file, or neither")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


class ConsoleSettings(ServiceSection):
    # host:port; 0.0.0.0:9180 in a container, where the port is published.
    listen: str = "127.0.0.1:9180"
    # basic: HTTP Basic against `users`; none: no login at all (loopback only).
    auth: Literal["basic", "none"] = "basic"
    users: dict[str, UserSettings] = Field(default_factory=dict)
    tls: ConsoleTlsSettings = ConsoleTlsSettings()
    # The history: events older than this are forgotten, and at most max_events are kept.
    retention: Duration = 30 * 86400.0
    max_events: int = Field(default=100_000, ge=100)
    page_size: int = Field(default=50, ge=10, le=500)  # events per page

    @field_validator("listen")
    @classmethod
    def _address(cls, value: str) -> str:
        host, colon, port = value.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("expected host:port, e.g. 127.0.0.1:9180")
        return value

    def unsafe(self) -> str | None:
        """Why these settings must not serve, or None. Checked before the console starts (its
        preflight), not when the file is read: every installed service's section is validated,
        and a file without ``console:`` must stay valid."""
        if self.auth == "basic" and not self.users:
            return (
                "no account is configured: add console.users (name: {password_hash, role}), "
                "or set console.auth: none to run without login on a loopback address"
            )
        if self.auth == "none" and not _loopback(self.host):
            return (
                f"auth: none serves everyone without a login; it is refused on {self.host} "
                "(listen on 127.0.0.1 or configure console.users)"
            )
        return None

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
