"""Who is asking, and may they: HTTP Basic against bcrypt hashes, roles, and CSRF protection.

Every request needs an account (401 with a Basic challenge otherwise); a state-changing one
(POST) needs the ``operator`` role (403 otherwise), an ``Origin`` that is the console's own when
the browser sends one, and the account's CSRF token in the ``csrf`` form field or the
``X-CSRF-Token`` header. The token is an HMAC of the account's name and password under a key
made at each start: a page from another site cannot know it, and it changes with a password and
with every restart of the console.

bcrypt takes tens of milliseconds by design; an accepted name and password is remembered (as
its HMAC, never in clear) so the pages and their live updates do not pay it per request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import bcrypt
from aiohttp import web

from herald_console.settings import ConsoleSettings, Role
from herald_shared.config import reveal

__all__ = ["ANONYMOUS", "Access", "Account", "account_of"]

ACCOUNT_KEY: Final = web.RequestKey("account", object)
_REMEMBERED_MAX: Final = 1024


@dataclass(frozen=True)
class Account:
    name: str
    role: Role
    csrf_token: str

    @property
    def operator(self) -> bool:
        return self.role == "operator"


#: With ``auth: none`` (loopback only) whoever reaches the console operates it.
ANONYMOUS: Final = "anonymous"


class Access:
    def __init__(self, settings: ConsoleSettings) -> None:
        unsafe = settings.unsafe()
        if unsafe is not None:  # the preflight said so already; never serve on such settings
            raise ValueError(unsafe)
        self._settings = settings
        self._key = secrets.token_bytes(32)
        self._hashes = {
            name: (reveal(user.password_hash) or "").encode()
            for name, user in settings.users.items()
        }
        self._roles = {name: user.role for name, user in settings.users.items()}
        self._remembered: set[bytes] = set()

    def _digest(self, *parts: str) -> bytes:
        return hmac.new(self._key, "\0".join(parts).encode(), hashlib.sha256).digest()

    def account(self, authorization: str | None) -> Account | None:
        """The account the ``Authorization`` header proves, or None."""
        if self._settings.auth == "none":
            return Account(ANONYMOUS, "operator", self._token(ANONYMOUS, ""))
        credentials = _basic(authorization)
        if credentials is None:
            return None
        name, password = credentials
        stored = self._hashes.get(name)
        if stored is None:
            return None
        seen = self._digest("seen", name, password)
        if seen not in self._remembered:
            try:
                accepted = bcrypt.checkpw(password.encode(), stored)
            except ValueError:  # not a hash bcrypt can read
                accepted = False
            if not accepted:
                return None
            if len(self._remembered) >= _REMEMBERED_MAX:
                self._remembered.clear()
            self._remembered.add(seen)
        return Account(name, self._roles[name], self._token(name, password))

    def _token(self, name: str, password: str) -> str:
        return self._digest("csrf", name, password).hex()

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        account = self.account(request.headers.get("Authorization"))
        if account is None:
            raise web.HTTPUnauthorized(
                text="401: log in with a console account\n",
                headers={"WWW-Authenticate": 'Basic realm="Herald console", charset="UTF-8"'},
            )
        request[ACCOUNT_KEY] = account
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            await _check_change(request, account)
        return await handler(request)


async def _check_change(request: web.Request, account: Account) -> None:
    if not account.operator:
        raise web.HTTPForbidden(text=f"403: {account.name} is a viewer; this needs an operator\n")
    origin = request.headers.get("Origin")
    if origin is not None and not _same_origin(origin, request):
        raise web.HTTPForbidden(
            text=f"403: a request from {origin} is refused (not this console)\n"
        )
    token = request.headers.get("X-CSRF-Token")
    if token is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        token = str((await request.post()).get("csrf", ""))
    if not token or not hmac.compare_digest(token, account.csrf_token):
        raise web.HTTPForbidden(
            text="403: the CSRF token is missing or wrong; reload the page and try again\n"
        )


def _same_origin(origin: str, request: web.Request) -> bool:
    # Host and port only: behind a proxy that terminates TLS the console itself sees plain HTTP
    # while the browser's origin is https (the proxy must pass the Host header on).
    return urlsplit(origin).netloc == request.host


def account_of(request: web.Request) -> Account:
    account = request[ACCOUNT_KEY]
    assert isinstance(account, Account)
    return account


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, colon, password = decoded.partition(":")
    return (name, password) if colon else None
