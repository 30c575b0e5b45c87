"""Logging as text or JSON lines, with every configured secret redacted from every record.

Secrets are masked where they are held (``SecretStr``), but a library can still put one into a
message (a webhook URL in an HTTP error, say). The redaction filter is the last line of defence:
whatever a record says, a configured secret's value never reaches the output.

Every record also names the service it came from (``service`` in JSON, before the logger's name
in text): in ``herald up`` six services share one log, and six identical "cannot connect to the
broker" lines must be told apart. The name travels in a context variable that the runtime sets
while it builds, starts and stops a service, so every task the service starts inherits it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Final

from herald_shared.settings import LoggingSettings

__all__ = ["REDACTED", "REDACTOR", "JsonFormatter", "Redactor", "redact", "setup"]

REDACTED: Final = "***"


def redact(text: str, secrets: Iterable[str], replacement: str = REDACTED) -> str:
    """``text`` with each of ``secrets`` replaced, the longest first (so a URL goes whole, not
    with only its token masked)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, replacement)
    return text


class Redactor(logging.Filter):
    """Redacts the secrets it was given from every record it sees, tracebacks included."""

    def __init__(self, replacement: str = REDACTED) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._replacement = replacement

    def add(self, secrets: Iterable[str]) -> None:
        # Very short values would redact ordinary words; no real secret is that short.
        self._secrets |= {secret for secret in secrets if len(secret) >= 4}

    def redact(self, text: str) -> str:
        return redact(text, self._secrets, self._replacement)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = self.redact(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


REDACTOR: Final = Redactor()

_SERVICE: ContextVar[str] = ContextVar("herald_service", default="")


@contextlib.contextmanager
def for_service(name: str) -> Iterator[None]:
    """Records logged here, and by every task started here, name ``name``."""
    token = _SERVICE.set(name)
    try:
        yield
    finally:
        _SERVICE.reset(token)


class _ServiceName(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        service = _SERVICE.get()
        record.service = service
        record.service_prefix = f"{service} " if service else ""
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        service = getattr(record, "service", "")
        if service:
            entry["service"] = service
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def setup(settings: LoggingSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(REDACTOR)
    handler.addFilter(_ServiceName())
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(service_prefix)s%(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # Library chatter at INFO (connections, state changes) is noise in an alerting log.
    for noisy in ("mqtt", "transitions", "aiosmtplib"):
        logging.getLogger(noisy).setLevel(
            max(logging.WARNING, logging.getLevelName(settings.level))
        )
    # The embedded broker warns about ordinary client disconnects; only its errors matter.
    logging.getLogger("amqtt").setLevel(logging.ERROR)
