"""A real SMTP server on loopback (aiosmtpd) that requires STARTTLS and AUTH and records mail.

What a test can script: recipients the server refuses (``refuse``), messages it refuses after
their data (``refuse_data``), a slow answer to each message
(``delay``, as a server that scans mail before accepting it), being down and coming back
(``stop()``/``start()`` on the same port), and dropping every open connection
(``drop_connections()``), as a server does with idle clients.

aiosmtpd traps (docs/testing.md, "SMTP: aiosmtpd"): a failed login must return ``AuthResult(success=False,
handled=False)`` or the client hangs without a reply; ``Controller`` cannot use port 0, so the
server is made with ``loop.create_server`` on a free port.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from herald_testkit.ports import free_port
from herald_testkit.tls import Certificates, make_certificates


@dataclass
class ReceivedMail:
    sender: str
    recipients: list[str]
    raw: bytes
    tls: bool
    login: str | None

    @functools.cached_property
    def message(self) -> EmailMessage:
        """The parsed message (parsed when first asked for: benchmarks never ask)."""
        message = BytesParser(policy=policy.default).parsebytes(self.raw)
        assert isinstance(message, EmailMessage)
        return message


@dataclass
class SmtpServer:
    """``async with SmtpServer(folder, users={"alerts": "secret"}) as smtp: …``"""

    folder: Path
    users: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 0
    #: the names the server's certificate is issued for
    certificate_names: tuple[str, ...] = ("localhost", "127.0.0.1")
    #: TLS from the first byte (port 465 style) instead of STARTTLS
    implicit_tls: bool = False
    #: address (lower case) -> the reply the server gives to RCPT TO, e.g. "550 5.1.1 …"
    refuse: dict[str, str] = field(default_factory=dict)
    received: list[ReceivedMail] = field(default_factory=list)
    #: every AUTH attempt: (login, succeeded)
    logins: list[tuple[str, bool]] = field(default_factory=list)
    connections: int = 0
    #: seconds the server takes to answer each message (after the data, before "250")
    delay: float = 0.0
    #: the reply to every message's data instead of accepting it, e.g. "552 5.3.4 Too big"
    refuse_data: str = ""
    #: the most messages the server was answering at the same time
    busiest: int = 0
    _answering: int = 0
    certificates: Certificates | None = None
    _server: asyncio.Server | None = None
    _sessions: list[SMTP] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ca_file(self) -> Path:
        assert self.certificates is not None
        return self.certificates.ca

    async def __aenter__(self) -> SmtpServer:
        self.certificates = make_certificates(self.folder, self.certificate_names)
        if not self.port:
            self.port = free_port(self.host)
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self) -> None:
        assert self.certificates is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certificates.cert, self.certificates.key)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: self._session(context),
            self.host,
            self.port,
            reuse_address=True,
            ssl=context if self.implicit_tls else None,
        )

    def _session(self, context: ssl.SSLContext) -> SMTP:
        self.connections += 1
        session = SMTP(
            _Handler(self),
            hostname="localhost",
            tls_context=None if self.implicit_tls else context,
            require_starttls=not self.implicit_tls,
            authenticator=self._authenticate,
            auth_required=True,
            # aiosmtpd counts only STARTTLS as TLS; with implicit TLS every byte is encrypted.
            auth_require_tls=not self.implicit_tls,
        )
        self._sessions.append(session)
        return session

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode()
        ok = login in self.users and self.users[login] == auth_data.password.decode()
        self.logins.append((login, ok))
        # handled=False: a refused client gets a 535 (the default leaves it waiting for a reply).
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    async def stop(self) -> None:
        """Stop listening and cut every open connection: the server is down."""
        if self._server is not None:
            self._server.close()
            self.drop_connections()
            await self._server.wait_closed()
            self._server = None

    def drop_connections(self) -> None:
        for session in self._sessions:
            transport = session.transport
            if transport is not None and not transport.is_closing():
                transport.close()
        self._sessions.clear()

    def _record(self, mail: ReceivedMail) -> None:
        self.received.append(mail)
        self._arrived.set()

    def to(self, address: str) -> list[ReceivedMail]:
        return [
            mail for mail in self.received if address.lower() in map(str.lower, mail.recipients)
        ]

    async def wait_for_count(self, count: int, within: float = 20.0) -> list[ReceivedMail]:
        async def until() -> None:
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(until(), within)
        return self.received


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self._server.refuse.get(address.lower())
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        stand_in = self._server
        stand_in._answering += 1
        stand_in.busiest = max(stand_in.busiest, stand_in._answering)
        try:
            if stand_in.delay:
                await asyncio.sleep(stand_in.delay)
            if stand_in.refuse_data:
                return stand_in.refuse_data
            return self._accept(session, envelope)
        finally:
            stand_in._answering -= 1

    def _accept(self, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        number = len(self._server.received) + 1
        login = (
            session.auth_data.login.decode()
            if isinstance(session.auth_data, LoginPassword)
            else None
        )
        self._server._record(
            ReceivedMail(
                sender=envelope.mail_from or "",
                recipients=list(envelope.rcpt_tos),
                raw=raw,
                # aiosmtpd notes only STARTTLS in the session; implicit TLS is TLS from the start.
                tls=session.ssl is not None or self._server.implicit_tls,
                login=login,
            )
        )
        return f"250 OK queued as herald-test-{number}"
