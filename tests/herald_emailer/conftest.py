from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from herald_testkit.smtp_server import SmtpServer

SMTP_USER = "alerts"
SMTP_PASSWORD = "s3cret-Smtp-Passw0rd"


@pytest.fixture
async def smtp(tmp_path: Path) -> AsyncIterator[SmtpServer]:
    async with SmtpServer(tmp_path / "smtp", users={SMTP_USER: SMTP_PASSWORD}) as server:
        yield server
