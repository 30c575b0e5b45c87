"""``console:``: safe by default. No account means no start (unless ``auth: none`` on loopback),
hashes only (never a password in clear), hashes from files, TLS files in pairs."""

from __future__ import annotations

from pathlib import Path

import pytest

from herald_console.service import SERVICE
from herald_shared import config, preflight
from herald_shared.config import ConfigError
from herald_shared.runtime import configure

from .conftest import hashed


def load(tmp_path: Path, text: str) -> object:
    """The console's settings, checked as `herald run console` checks them before it starts."""
    path = tmp_path / "herald.yaml"
    path.write_text("health: {port: 0}\n" + text)
    document = config.load(path)
    process = configure(document, [SERVICE])
    preflight.run(document, process)
    return process.services[0][1]


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, text)
    return "\n".join(error.value.problems)


def test_without_an_account_the_console_refuses_to_start(tmp_path: Path) -> None:
    found = problems(tmp_path, "console: {}\n")
    assert "console.users: no account is configured" in found
    assert "console.auth: none" in found


def test_a_file_without_a_console_section_is_still_valid(tmp_path: Path) -> None:
    path = tmp_path / "herald.yaml"
    path.write_text("log_archiver: {directory: /tmp}\n")
    assert SERVICE.load_settings(config.load(path)).users == {}


def test_auth_none_is_taken_on_loopback_only(tmp_path: Path) -> None:
    settings = load(tmp_path, "console: {auth: none, listen: '127.0.0.1:9180'}\n")
    assert settings.auth == "none"  # type: ignore[attr-defined]
    load(tmp_path, "console: {auth: none, listen: 'localhost:9180'}\n")
    load(tmp_path, "console: {auth: none, listen: '[::1]:9180'}\n")
    found = problems(tmp_path, "console: {auth: none, listen: '0.0.0.0:9180'}\n")
    assert "refused on 0.0.0.0" in found


def test_a_password_in_clear_is_refused_and_never_repeated(tmp_path: Path) -> None:
    found = problems(
        tmp_path, "console: {users: {ann: {password_hash: hunter2-in-clear, role: operator}}}\n"
    )
    assert "must be a bcrypt hash" in found
    assert "hunter2" not in found


def test_a_hash_is_read_from_its_file_and_roles_are_checked(tmp_path: Path) -> None:
    secret = tmp_path / "ann.hash"
    secret.write_text(hashed("pw") + "\n")
    settings = load(
        tmp_path,
        f"console: {{users: {{ann: {{password_hash_file: '{secret}', role: operator}}}}}}\n",
    )
    assert settings.users["ann"].role == "operator"  # type: ignore[attr-defined]
    assert hashed("pw")[:7] in repr(settings.users["ann"].password_hash.get_secret_value())  # type: ignore[attr-defined]
    assert "$2b$" not in repr(settings)
    found = problems(
        tmp_path, f"console: {{users: {{ann: {{password_hash_file: '{secret}', role: admin}}}}}}\n"
    )
    assert "console.users.ann.role" in found


def test_tls_needs_both_files_and_listen_needs_a_port(tmp_path: Path) -> None:
    users = f"users: {{ann: {{password_hash: '{hashed('pw')}'}}}}"
    assert "set both cert_file and key_file" in problems(
        tmp_path, f"console: {{{users}, tls: {{cert_file: /etc/c.pem}}}}\n"
    )
    assert "expected host:port" in problems(tmp_path, f"console: {{{users}, listen: '9180'}}\n")
