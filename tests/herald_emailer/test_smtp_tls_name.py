"""``emailer.smtp.tls_server_name`` (Butler's ``smtp.tls.serverName``): a server reached by IP
address or alias whose certificate names another host is verified against that name."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from herald_emailer.smtp import SmtpSettings, SmtpTransport
from herald_shared.delivery.destination import TransientError
from herald_testkit.smtp_server import SmtpServer

from .conftest import SMTP_PASSWORD, SMTP_USER

MESSAGE = b"From: herald@example.com\r\nTo: ops@example.com\r\nSubject: x\r\n\r\nbody\r\n"


async def _send(settings: SmtpSettings) -> str:
    transport = SmtpTransport(settings)
    try:
        return await transport.send(MESSAGE, "herald@example.com", "ops@example.com")
    finally:
        await transport.close()


@pytest.mark.parametrize("tls", ["starttls", "tls"])
async def test_the_certificate_is_checked_against_tls_server_name(
    tmp_path: Path, tls: Literal["starttls", "tls"]
) -> None:
    async with SmtpServer(
        tmp_path / "smtp",
        users={SMTP_USER: SMTP_PASSWORD},
        certificate_names=("mail.corp.test",),
        implicit_tls=tls == "tls",
    ) as smtp:
        settings = {
            "host": smtp.host,  # 127.0.0.1, which the certificate does not name
            "port": smtp.port,
            "tls": tls,
            "ca_file": str(smtp.ca_file),
            "username": SMTP_USER,
            "password": SMTP_PASSWORD,
            "timeout": 10,
        }
        with pytest.raises(
            TransientError, match=r"SMTP server 127\.0\.0\.1.*(certificate|CERTIFICATE)"
        ):
            await _send(SmtpSettings.model_validate(settings))
        assert smtp.received == []
        named = SmtpSettings.model_validate(settings | {"tls_server_name": "mail.corp.test"})
        assert "queued" in await _send(named)
        [mail] = await smtp.wait_for_count(1)
        assert mail.tls
        with pytest.raises(
            TransientError, match=r"SMTP server 127\.0\.0\.1.*(certificate|CERTIFICATE)"
        ):
            await _send(SmtpSettings.model_validate(settings | {"tls_server_name": "other.test"}))
