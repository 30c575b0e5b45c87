"""The TLS context of a client connection, configured the same way everywhere in Herald.

``ca_file`` None trusts the system's store; ``verify`` False checks neither the certificate nor
the host name (a test system with a self-signed certificate); ``cert_file`` and ``key_file`` are a
client certificate (the QRS asks for the one exported from the QMC, a broker may too).
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["client_context"]


def client_context(
    *,
    ca_file: Path | None = None,
    verify: bool = True,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    key_password: str | None = None,
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if cert_file is not None:
        context.load_cert_chain(
            str(cert_file), str(key_file) if key_file else None, password=key_password
        )
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
