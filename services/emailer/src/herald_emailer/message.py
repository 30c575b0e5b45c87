"""The MIME message: multipart/alternative with the plain text first and the HTML last.

``policy=SMTP`` gives CRLF line ends and encodes non-ASCII headers per RFC 2047, so a subject
such as ``Qlik Sense reload failed: "Umsätze"`` arrives readable in every client.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parseaddr

from herald_emailer.rendering import Rendered

# nodemailer's mapping of Butler's `priority` (X-Priority 1/3/5 and the Outlook headers).
_PRIORITY_HEADERS = {
    "high": {"X-Priority": "1 (Highest)", "X-MSMail-Priority": "High", "Importance": "High"},
    "normal": {},
    "low": {"X-Priority": "5 (Lowest)", "X-MSMail-Priority": "Low", "Importance": "Low"},
}


def build_message(
    rendered: Rendered,
    *,
    sender: str,
    recipient: str,
    priority: str,
    event_id: str | None = None,
) -> EmailMessage:
    message = EmailMessage(policy=SMTP)
    message["Subject"] = rendered.subject
    message["From"] = sender
    message["To"] = recipient
    message["Date"] = format_datetime(datetime.now(UTC))
    if event_id is not None:
        # One Message-ID per event and recipient: if a crash after the server accepted the mail
        # makes Herald send it again, mail servers and clients see the same message twice and
        # collapse it (SMTP itself cannot tell us it already has it).
        digest = hashlib.sha256(f"{event_id}|{recipient.lower()}".encode()).hexdigest()[:32]
        message["Message-ID"] = f"<{digest}.herald@{_domain_of(sender)}>"
        message["X-Herald-Event-Id"] = event_id
    else:
        message["Message-ID"] = make_msgid(domain=_domain_of(sender))
    for name, value in _PRIORITY_HEADERS.get(priority, {}).items():
        message[name] = value
    message.set_content(rendered.text)
    if rendered.html is not None:
        message.add_alternative(rendered.html, subtype="html")
    return message


def envelope_sender(sender: str) -> str:
    """The bare address of a ``Name <address>`` From line, for MAIL FROM."""
    return parseaddr(sender)[1] or sender


def _domain_of(sender: str) -> str:
    return envelope_sender(sender).rpartition("@")[2] or "localhost"
