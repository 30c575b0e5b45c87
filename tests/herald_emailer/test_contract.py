"""E-mail against the destination contract (``herald_testkit.contract``), its status table in
SMTP's terms: a 4xx reply or no connection is worth another try, a 5xx reply is final."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from herald_emailer.destinations import email
from herald_shared import samples
from herald_shared.delivery.destination import Context, Destination
from herald_shared.settings import BrokerSettings
from herald_testkit import contract
from herald_testkit.ports import free_port
from herald_testkit.smtp_server import SmtpServer

RECIPIENTS = ["ops@example.com", "bi-team@example.com"]
SAMPLE = samples.sample_failed()
CONTEXT = Context(service=contract.SERVICE, broker=BrokerSettings())


def _settings(
    smtp: SmtpServer,
    *,
    port: int = 0,
    password: str | None = None,
    timeout: float = 5.0,
    **failed: Any,
) -> email.EmailSettings:
    [(user, right)] = smtp.users.items()
    return email.EmailSettings.model_validate(
        {
            "from_address": "alerts@example.com",
            "smtp": {
                "host": smtp.host,
                "port": port or smtp.port,
                "username": user,
                "password": password or right,
                "ca_file": str(smtp.ca_file),
                "timeout": timeout,
            },
            "failed": {
                "recipients": RECIPIENTS,
                "recipients_custom_property": None,
                "app_owner": {"enabled": False},
                **failed,
            },
        }
    )


def _failed_destination(settings: email.EmailSettings) -> Destination:
    built = email.destinations(settings, CONTEXT)
    [failed] = [destination for destination in built if destination.name == "email-failed"]
    return failed


@dataclass(frozen=True)
class SmtpRow:
    name: str
    expect: contract.Result
    refuse: str = ""  # the server's reply to RCPT TO, when it refuses the recipient
    refuse_data: str = ""  # its reply to the message's data, when it refuses the message
    listening: bool = True
    delay: float = 0.0  # seconds the server takes to accept the message

    def __str__(self) -> str:
        return self.name


SMTP_STATUS_TABLE = (
    SmtpRow("250 accepted", "delivered"),
    SmtpRow("421 closing", "transient", "421 4.3.2 Service not available, closing channel"),
    SmtpRow("450 mailbox busy", "transient", "450 4.2.1 Mailbox busy, try again later"),
    SmtpRow("451 local error", "transient", "451 4.3.0 Local error in processing"),
    SmtpRow("452 no space", "transient", "452 4.3.1 Insufficient system storage"),
    SmtpRow("550 no such user", "permanent", "550 5.1.1 No such user here"),
    SmtpRow("553 bad address", "permanent", "553 5.1.3 Mailbox name not allowed"),
    SmtpRow("554 rejected", "permanent", "554 5.7.1 Relay access denied"),
    SmtpRow("451 after the data", "transient", refuse_data="451 4.7.1 Greylisted, try later"),
    SmtpRow("552 after the data", "permanent", refuse_data="552 5.3.4 Message too big"),
    SmtpRow("554 after the data", "permanent", refuse_data="554 5.7.1 Rejected as spam"),
    SmtpRow("connection refused", "transient", listening=False),
    SmtpRow("no answer in time", "transient", delay=3.0),
)


@pytest.mark.parametrize("row", SMTP_STATUS_TABLE, ids=str)
async def test_every_smtp_reply_means_what_the_contract_says(
    smtp: SmtpServer, row: SmtpRow
) -> None:
    if row.refuse:
        smtp.refuse[RECIPIENTS[0]] = row.refuse
    smtp.delay, smtp.refuse_data = row.delay, row.refuse_data
    port = 0 if row.listening else free_port(smtp.host)
    timeout = contract.FAULT_TIMEOUT if row.delay else 5.0
    destination = _failed_destination(_settings(smtp, port=port, timeout=timeout))
    await destination.start()
    try:
        attempted = await contract.attempt(destination, SAMPLE)
    finally:
        await destination.close()
    assert attempted.result == row.expect, attempted
    refusal = row.refuse or row.refuse_data
    if refusal:
        assert refusal.split()[0] in attempted.text  # the server's code, for the admin
        assert smtp.received == []


async def test_a_refused_login_is_permanent_and_no_password_leaks(
    smtp: SmtpServer, tmp_path: Path
) -> None:
    wrong = "Wr0ng-But-Secret-Passw0rd"
    settings = _settings(smtp, password=wrong)
    destination = _failed_destination(settings)
    run = await contract.run_until_ended([destination], [SAMPLE], tmp_path)
    assert {receipt.outcome for receipt in run.receipts} == {"dead_lettered"}
    assert all("535" in letter.reason for letter in run.dead_letters)
    contract.assert_hidden(
        [wrong, *smtp.users.values()], run, destination=destination, settings=settings
    )


async def test_when_selects_the_events_and_each_recipient_is_one_delivery(
    smtp: SmtpServer, tmp_path: Path
) -> None:
    destination = _failed_destination(_settings(smtp, when=contract.selecting(SAMPLE)))
    await contract.check_selection(destination, SAMPLE, RECIPIENTS, tmp_path)
    assert sorted(recipient for mail in smtp.received for recipient in mail.recipients) == sorted(
        RECIPIENTS
    )
