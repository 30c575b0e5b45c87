"""The MIME message: multipart/alternative with the plain text first and the HTML last.

Non-ASCII headers are encoded per RFC 2047, so a subject such as ``Qlik Sense reload failed:
"Umsätze"`` arrives readable in every client; UTF-8 bodies go base64 (no 8BITMIME needed).

Built for speed, as the emailer's largest cost: with the ``email`` package's compat32 classes
(its newer API, ``EmailMessage`` with ``policy.SMTP``, parses every header it sets into an object
and took about three times the CPU), and the body, which every recipient of an alert shares, is
made into bytes once (:func:`build_body`) and put behind each recipient's own headers.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from typing import Final, cast

from herald_emailer.rendering import Rendered

_WIRE: Final = compat32.clone(linesep="\r\n")

# nodemailer's mapping of Butler's `priority` (X-Priority 1/3/5 and the Outlook headers).
_PRIORITY_HEADERS = {
    "high": {"X-Priority": "1 (Highest)", "X-MSMail-Priority": "High", "Importance": "High"},
    "normal": {},
    "low": {"X-Priority": "5 (Lowest)", "X-MSMail-Priority": "Low", "Importance": "Low"},
}


def build_body(rendered: Rendered) -> bytes:
    """The alert's MIME body, its own header lines (Content-Type, …) first, in wire form."""
    body: Message
    if rendered.html is None:
        body = MIMEText(rendered.text, "plain", "utf-8")
    else:
        # A boundary of our own spares the generator's search of both parts for a collision:
        # the parts are base64, which has no "_", so "=_herald_…" cannot occur in them.
        body = MIMEMultipart("alternative", boundary=f"=_herald_{secrets.token_hex(12)}")
        body.attach(MIMEText(rendered.text, "plain", "utf-8"))
        body.attach(MIMEText(rendered.html, "html", "utf-8"))
    return body.as_bytes(policy=_WIRE)


def build_message(
    rendered: Rendered,
    *,
    sender: str,
    recipient: str,
    priority: str,
    event_id: str | None = None,
    body: bytes | None = None,
) -> bytes:
    """The whole message for one recipient. ``body``: :func:`build_body` of ``rendered``, when
    it was already built for another recipient."""
    head = Message()
    head["Subject"] = _header_text(rendered.subject)
    head["From"] = _address(sender)
    head["To"] = _address(recipient)
    head["Date"] = format_datetime(datetime.now(UTC))
    if event_id is not None:
        # One Message-ID per event and recipient: if a crash after the server accepted the mail
        # makes Herald send it again, mail servers and clients see the same message twice and
        # collapse it (SMTP itself cannot tell us it already has it).
        digest = hashlib.sha256(f"{event_id}|{recipient.lower()}".encode()).hexdigest()[:32]
        head["Message-ID"] = f"<{digest}.herald@{_domain_of(sender)}>"
        head["X-Herald-Event-Id"] = event_id
    else:
        head["Message-ID"] = make_msgid(domain=_domain_of(sender))
    for name, value in _PRIORITY_HEADERS.get(priority, {}).items():
        head[name] = value
    # Headers alone flatten to their lines and a blank line; the body begins with header lines
    # of its own, so without that blank line the two make one header block.
    headers = head.as_bytes(policy=_WIRE).removesuffix(b"\r\n")
    return headers + (body if body is not None else build_body(rendered))


def _header_text(text: str) -> str:
    """Plain when ASCII, RFC 2047 encoded words otherwise (folded to the line length)."""
    # compat32 messages take Header objects as values; typeshed only lists str.
    return text if text.isascii() else cast(str, Header(text, "utf-8"))


def _address(value: str) -> str:
    """``Name <address>`` with a non-ASCII name encoded per RFC 2047; the address as it is."""
    if "\r" in value or "\n" in value:  # compat32 does not refuse header injection itself
        raise ValueError(f"a line break in the address {value!r}")
    name, address = parseaddr(value)
    if not address:
        return value
    return formataddr((name, address), charset="utf-8")


def envelope_sender(sender: str) -> str:
    """The bare address of a ``Name <address>`` From line, for MAIL FROM."""
    return parseaddr(sender)[1] or sender


def _domain_of(sender: str) -> str:
    return envelope_sender(sender).rpartition("@")[2] or "localhost"
