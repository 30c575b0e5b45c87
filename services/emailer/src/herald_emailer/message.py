"""The MIME message: multipart/alternative with the plain text first and the HTML last.

Non-ASCII headers are encoded per RFC 2047, so a subject such as ``Qlik Sense reload failed:
"Umsätze"`` arrives readable in every client; UTF-8 bodies go base64 (no 8BITMIME needed).

A header made from Qlik data (the subject holds the task name, which Qlik does not limit) is kept
to one line of at most :data:`SUBJECT_LIMIT` characters and folded to RFC 5322's recommended 78
characters a line: a mail server refuses a line over 998 ("500 Line too long", RFC 5321
4.5.3.1.6), which cost the alert. A word too long to fold at a space goes as RFC 2047 encoded
words, which can be folded anywhere. The body keeps the whole name.

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

#: The longest subject sent, an ellipsis included. Outlook and Exchange keep at most 255
#: characters of a subject, and a longer one is no more readable in a mail list anyway.
SUBJECT_LIMIT: Final = 250
_LINE: Final = 78  # RFC 5322 2.1.1: lines SHOULD be at most 78 characters

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
    head["Subject"] = _header_text("Subject", _capped(rendered.subject, SUBJECT_LIMIT))
    head["From"] = _address(sender)
    head["To"] = _address(recipient)
    head["Date"] = format_datetime(datetime.now(UTC))
    if event_id is not None:
        # One Message-ID per event and recipient: if a crash after the server accepted the mail
        # makes Herald send it again, mail servers and clients see the same message twice and
        # collapse it (SMTP itself cannot tell us it already has it).
        digest = hashlib.sha256(f"{event_id}|{recipient.lower()}".encode()).hexdigest()[:32]
        head["Message-ID"] = f"<{digest}.herald@{_domain_of(sender)}>"
        head["X-Herald-Event-Id"] = _header_text(
            "X-Herald-Event-Id", _capped(event_id, SUBJECT_LIMIT)
        )
    else:
        head["Message-ID"] = make_msgid(domain=_domain_of(sender))
    for name, value in _PRIORITY_HEADERS.get(priority, {}).items():
        head[name] = value
    # Headers alone flatten to their lines and a blank line; the body begins with header lines
    # of its own, so without that blank line the two make one header block.
    headers = head.as_bytes(policy=_WIRE).removesuffix(b"\r\n")
    return headers + (body if body is not None else build_body(rendered))


def _capped(text: str, limit: int) -> str:
    """One line (runs of white space made one space), cut to ``limit`` with an ellipsis."""
    line = " ".join(text.split())  # also what refuses header injection
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _header_text(name: str, text: str) -> str:
    """Plain ASCII folded at spaces when every word fits on a line; RFC 2047 encoded words
    otherwise (non-ASCII, or a word too long), which the folder can break anywhere."""
    longest_word = max((len(word) for word in text.split()), default=0)
    if text.isascii() and len(name) + 2 + longest_word <= _LINE:
        return text
    # compat32 messages take Header objects as values; typeshed only lists str. header_name
    # makes the first line leave room for "Subject: ".
    return cast(str, Header(text, "utf-8", maxlinelen=_LINE, header_name=name))


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
