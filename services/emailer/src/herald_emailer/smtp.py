"""One SMTP connection, reused across messages, and what its failures mean for a delivery.

Messages go out one at a time over a single connection (SMTP has no pipelining across
transactions); a server that dropped an idle connection gets a new one, and the message is
sent once more at once. Failures become the runner's categories:

- no connection, a timeout, a dropped connection, a 4xx reply: :class:`TransientError`;
- a 5xx reply for the recipient (e.g. ``550 no such user``) or for the message:
  :class:`PermanentError` with the server's text;
- authentication refused: :class:`PermanentError` naming the user, never the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from email.message import EmailMessage

import aiosmtplib

from herald_emailer.settings import SmtpSettings
from herald_shared.config import reveal
from herald_shared.delivery.destination import PermanentError, TransientError

log = logging.getLogger(__name__)


class SmtpTransport:
    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings
        self._client: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()

    @property
    def server(self) -> str:
        return f"{self._settings.host}:{self._settings.effective_port}"

    def _tls_context(self) -> ssl.SSLContext:
        cafile = str(self._settings.ca_file) if self._settings.ca_file else None
        context = ssl.create_default_context(cafile=cafile)
        if not self._settings.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _new_client(self) -> aiosmtplib.SMTP:
        settings = self._settings
        uses_tls = settings.tls != "none"
        return aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.effective_port,
            use_tls=settings.tls == "tls",
            # False, not None: plain means plain, never an opportunistic upgrade.
            start_tls=settings.tls == "starttls",
            tls_context=self._tls_context() if uses_tls else None,
            validate_certs=settings.verify,
            timeout=settings.timeout,
        )

    async def _connect(self) -> aiosmtplib.SMTP:
        client = self._new_client()
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
            with contextlib.suppress(Exception):
                client.close()
            raise
        log.info("connected to the SMTP server %s", self.server)
        return client

    async def send(self, message: EmailMessage, sender: str, recipient: str) -> str:
        """Send ``message`` to ``recipient``; the server's answer (e.g. ``250 OK queued as …``)."""
        async with self._lock:
            try:
                return await self._send(message, sender, recipient)
            except aiosmtplib.SMTPAuthenticationError as error:
                await self._drop()
                raise PermanentError(
                    f"the SMTP server {self.server} refused the login of user "
                    f"{self._settings.username!r}: {error.code} {error.message} "
                    "(check emailer.smtp.username and password)"
                ) from None
            except aiosmtplib.SMTPRecipientsRefused as error:
                [refused] = error.recipients
                raise _by_code(
                    refused.code,
                    f"the SMTP server refused {recipient}: {refused.code} {refused.message}",
                ) from None
            except aiosmtplib.SMTPResponseException as error:
                await self._drop()
                raise _by_code(
                    error.code,
                    f"the SMTP server {self.server} answered {error.code} {error.message}",
                ) from None
            except (aiosmtplib.SMTPTimeoutError, TimeoutError) as error:
                await self._drop()
                raise TransientError(
                    f"the SMTP server {self.server} did not answer in time: {error}"
                ) from None
            except ssl.SSLError as error:
                await self._drop()
                raise TransientError(
                    f"TLS with the SMTP server {self.server} failed: {error}"
                ) from None
            except (aiosmtplib.SMTPException, OSError) as error:
                await self._drop()
                raise TransientError(
                    f"cannot reach the SMTP server {self.server}: {_describe(error)}"
                ) from None

    async def _send(self, message: EmailMessage, sender: str, recipient: str) -> str:
        fresh = self._client is None or not self._client.is_connected
        if fresh:
            self._client = await self._connect()
        assert self._client is not None
        try:
            _, answer = await self._client.send_message(
                message, sender=sender, recipients=[recipient]
            )
        except aiosmtplib.SMTPServerDisconnected:
            if fresh:
                raise
            # The server closed the idle connection since the last message: reconnect once.
            log.info("the SMTP server %s closed the connection; reconnecting", self.server)
            await self._drop()
            self._client = await self._connect()
            _, answer = await self._client.send_message(
                message, sender=sender, recipients=[recipient]
            )
        return answer

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    async def close(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
            if client is not None and client.is_connected:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.quit(), self._settings.timeout)
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()


def _by_code(code: int, reason: str) -> TransientError | PermanentError:
    return TransientError(reason) if 400 <= code < 500 else PermanentError(reason)


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    cause = error.__cause__ or error.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({cause})"
    return text
