"""`herald send-test --email ADDRESS`: does the configured mail server take our mail?"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from herald_testkit.processes import herald
from herald_testkit.smtp_server import SmtpServer

SMTP_USER = "herald"
SMTP_PASSWORD = "send-test-Passw0rd"


@pytest.fixture
async def smtp(tmp_path: Path) -> AsyncIterator[SmtpServer]:
    async with SmtpServer(tmp_path / "smtp", users={SMTP_USER: SMTP_PASSWORD}) as server:
        yield server


def _config(tmp_path: Path, smtp: SmtpServer, password: str) -> Path:
    (tmp_path / "smtp-password").write_text(password + "\n")
    config = tmp_path / "herald.yaml"
    config.write_text(
        "emailer:\n"
        "  from_address: qlik-alerts@example.com\n"
        "  smtp:\n"
        f"    host: 127.0.0.1\n    port: {smtp.port}\n    tls: starttls\n"
        f"    username: {SMTP_USER}\n    password_file: {tmp_path / 'smtp-password'}\n"
        f"    ca_file: {smtp.ca_file}\n"
    )
    return config


async def test_a_test_message_reaches_the_address_and_the_answer_is_shown(
    smtp: SmtpServer, tmp_path: Path
) -> None:
    code, out, err = await herald(
        "send-test",
        "--config",
        str(_config(tmp_path, smtp, SMTP_PASSWORD)),
        "--email",
        "ops@example.com",
    )
    assert code == 0, err
    assert "accepted the test e-mail to ops@example.com" in out
    [mail] = await smtp.wait_for_count(1)
    assert mail.recipients == ["ops@example.com"]
    assert "Herald test message" in mail.message["Subject"]


async def test_wrong_credentials_are_reported_without_the_password(
    smtp: SmtpServer, tmp_path: Path
) -> None:
    wrong = "not-the-right-Passw0rd"
    code, out, err = await herald(
        "send-test", "--config", str(_config(tmp_path, smtp, wrong)), "--email", "ops@example.com"
    )
    assert code == 1
    assert "was not accepted" in err
    assert wrong not in out + err
