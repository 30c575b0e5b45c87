"""A small pool of SMTP connections, reused across messages, and what their failures mean.

SMTP sends one message at a time per connection, and a server that scans mail may take a second
to answer each; so up to ``smtp.connections`` messages go out in parallel, each over a connection
of a small pool that is kept open and reused. A server that dropped an idle connection gets a new
one, and the message is sent once more at once. Failures become the runner's categories:

- no connection, a timeout, a dropped connection, a 4xx reply: :class:`TransientError`;
- a 5xx reply for the recipient (e.g. ``550 no such user``) or for the message:
  :class:`PermanentError` with the server's text;
- authentication refused: :class:`PermanentError` naming the user, never the password.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from pathlib import Path
from typing import Literal

import aiosmtplib
from pydantic import Field, SecretStr, model_validator

from herald_shared.config import Duration, Section, reveal
from herald_shared.delivery.destination import PermanentError, TransientError
from herald_shared.tls import client_context

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}


class SmtpSettings(Section):
    host: str = "localhost"
    port: int | None = Field(default=None, ge=1, le=65535)  # None: 25, 587 or 465 per `tls`
    # none: plain text; starttls: upgrade after connecting (required); tls: TLS from the start.
    tls: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None  # AUTH only when set
    password: SecretStr | None = None
    ca_file: Path | None = None  # None: the system's trust store
    verify: bool = True  # certificate and host name verification
    # The name the server's certificate is checked against (and sent as SNI) when `host` is an
    # IP address or an alias the certificate does not name (Butler: smtp.tls.serverName).
    tls_server_name: str | None = None
    timeout: Duration = 30.0  # per SMTP command, connecting included
    # Messages sent in parallel, each over a connection of its own (kept open and reused).
    connections: int = Field(default=4, ge=1, le=32)

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else _DEFAULT_PORTS[self.tls]

    @model_validator(mode="after")
    def _password_needs_username(self) -> SmtpSettings:
        if self.password is not None and not self.username:
            raise ValueError("password is set but username is not")
        return self


class SmtpTransport:
    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings
        self._idle: list[aiosmtplib.SMTP] = []  # open connections no message is using
        self._slots = asyncio.Semaphore(settings.connections)

    @property
    def server(self) -> str:
        return f"{self._settings.host}:{self._settings.effective_port}"

    def _new_client(self, sock: socket.socket | None) -> aiosmtplib.SMTP:
        settings = self._settings
        uses_tls = settings.tls != "none"
        return aiosmtplib.SMTP(
            # With a connected socket, aiosmtplib uses the host name only to check the
            # certificate (for TLS and STARTTLS alike): that is where tls_server_name goes.
            hostname=settings.tls_server_name if sock is not None else settings.host,
            port=None if sock is not None else settings.effective_port,
            sock=sock,
            use_tls=settings.tls == "tls",
            # False, not None: plain means plain, never an opportunistic upgrade.
            start_tls=settings.tls == "starttls",
            tls_context=(
                client_context(ca_file=settings.ca_file, verify=settings.verify)
                if uses_tls
                else None
            ),
            validate_certs=settings.verify,
            timeout=settings.timeout,
        )

    async def _open_socket(self) -> socket.socket | None:
        """A TCP connection to ``host`` when the certificate is checked against another name."""
        settings = self._settings
        if settings.tls_server_name is None or settings.tls == "none":
            return None
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            settings.host, settings.effective_port, type=socket.SOCK_STREAM
        )
        failure: OSError = OSError(f"{settings.host} has no address")
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, address), settings.timeout)
            except TimeoutError:
                sock.close()
                raise
            except OSError as error:
                sock.close()
                failure = error
                continue
            return sock
        raise failure

    async def _connect(self) -> aiosmtplib.SMTP:
        client = self._new_client(await self._open_socket())
        try:
            await client.connect()
            if self._settings.username:
                try:
                    await client.login(
                        self._settings.username, reveal(self._settings.password) or ""
                    )
                except aiosmtplib.SMTPException as error:
                    if type(error) is not aiosmtplib.SMTPException:
                        raise
                    # e.g. "The SMTP AUTH extension is not supported by this server": only a
                    # change of configuration (tls, the server) can help.
                    raise PermanentError(
                        f"cannot log in to the SMTP server {self.server}: {error}"
                    ) from None
        except BaseException:
            _close(client)
            raise
        log.info("connected to the SMTP server %s", self.server)
        return client

    async def send(self, message: bytes, sender: str, recipient: str) -> str:
        """Send ``message`` to ``recipient``; the server's answer (e.g. ``250 OK queued as …``)."""
        async with self._slots:
            client: aiosmtplib.SMTP | None = None
            try:
                client, reused = await self._checkout()
                try:
                    _, answer = await client.sendmail(sender, [recipient], message)
                except aiosmtplib.SMTPServerDisconnected:
                    if not reused:
                        raise
                    # The server closed the idle connection since the last message: reconnect
                    # once.
                    log.info("the SMTP server %s closed the connection; reconnecting", self.server)
                    _close(client)
                    client = None
                    client = await self._connect()
                    _, answer = await client.sendmail(sender, [recipient], message)
            except aiosmtplib.SMTPRecipientsRefused as error:
                # The transaction ended cleanly: the connection serves the next message.
                assert client is not None
                self._idle.append(client)
                [refused] = error.recipients
                raise _by_code(
                    refused.code,
                    f"the SMTP server refused {recipient}: {refused.code} {refused.message}",
                ) from None
            except BaseException as error:
                _close(client)
                raise _translated(error, self.server, self._settings.username) from None
            self._idle.append(client)
            return answer

    async def _checkout(self) -> tuple[aiosmtplib.SMTP, bool]:
        """An open idle connection (True) or a new one (False)."""
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client, True
            _close(client)
        return await self._connect(), False

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            if client.is_connected:
                try:
                    await asyncio.wait_for(client.quit(), self._settings.timeout)
                except Exception as error:
                    # Stopping anyway: the server learns of it when the connection closes.
                    log.info("no clean QUIT to the SMTP server %s: %r", self.server, error)
            _close(client)


def _close(client: aiosmtplib.SMTP | None) -> None:
    """Drop a connection that failed or is no longer wanted; a failure to do so changes nothing."""
    if client is None:
        return
    try:
        client.close()
    except Exception as error:
        log.debug("closing an SMTP connection failed: %r", error)


def _translated(error: BaseException, server: str, username: str | None) -> BaseException:
    """A failed send as the runner's TransientError or PermanentError; anything else unchanged."""
    match error:
        case aiosmtplib.SMTPAuthenticationError():
            return PermanentError(
                f"the SMTP server {server} refused the login of user "
                f"{username!r}: {error.code} {error.message} "
                "(check emailer.smtp.username and password)"
            )
        case aiosmtplib.SMTPResponseException():
            return _by_code(
                error.code, f"the SMTP server {server} answered {error.code} {error.message}"
            )
        case aiosmtplib.SMTPTimeoutError() | TimeoutError():
            return TransientError(f"the SMTP server {server} did not answer in time: {error}")
        case ssl.SSLError():
            return TransientError(f"TLS with the SMTP server {server} failed: {error}")
        case aiosmtplib.SMTPException() | OSError():
            return TransientError(f"cannot reach the SMTP server {server}: {_describe(error)}")
    return error


def _by_code(code: int, reason: str) -> TransientError | PermanentError:
    return TransientError(reason) if 400 <= code < 500 else PermanentError(reason)


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    cause = error.__cause__ or error.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({cause})"
    return text
