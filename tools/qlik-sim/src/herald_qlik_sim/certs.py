"""The certificates of a client-managed Qlik Sense site, as the QMC exports them.

``ensure_certs(folder)`` writes (or reuses) the five PEM files the QMC's certificate export
produces: the site CA (``root.pem``), the server certificate and key (``server.pem``,
``server_key.pem``: SAN ``DNS:localhost`` and ``IP:127.0.0.1``) and the client certificate and
key (``client.pem``, ``client_key.pem``) that a QRS client presents. Keys are RSA 2048 in the
traditional ``BEGIN RSA PRIVATE KEY`` form, like the QMC's.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = "root.pem"
SERVER = "server.pem"
SERVER_KEY = "server_key.pem"
CLIENT = "client.pem"
CLIENT_KEY = "client_key.pem"
FILES = (ROOT, SERVER, SERVER_KEY, CLIENT, CLIENT_KEY)

_VALID_FOR = timedelta(days=3 * 365)


@dataclass(frozen=True)
class CertPaths:
    """Where the five files of one site are."""

    folder: Path

    @property
    def root(self) -> Path:
        return self.folder / ROOT

    @property
    def server(self) -> Path:
        return self.folder / SERVER

    @property
    def server_key(self) -> Path:
        return self.folder / SERVER_KEY

    @property
    def client(self) -> Path:
        return self.folder / CLIENT

    @property
    def client_key(self) -> Path:
        return self.folder / CLIENT_KEY

    def exist(self) -> bool:
        return all((self.folder / name).is_file() for name in FILES)

    def server_context(self) -> ssl.SSLContext:
        """TLS for the QRS side: only clients with a certificate signed by the site CA get in."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.root))
        context.load_cert_chain(str(self.server), str(self.server_key))
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self, *, with_certificate: bool = True) -> ssl.SSLContext:
        """TLS for a QRS client: verifies the server against the site CA, presents client.pem."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.root))
        if with_certificate:
            context.load_cert_chain(str(self.client), str(self.client_key))
        return context


def ensure_certs(folder: str | os.PathLike[str]) -> CertPaths:
    """The site's certificates in ``folder``: reused when all five files exist, else written anew."""
    paths = CertPaths(Path(folder).resolve())
    if paths.exist():
        return paths
    paths.folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC) - timedelta(days=1)  # tolerate a little clock skew
    ca_key = _new_key()
    ca_name = _name(f"{socket.gethostname()}-CA")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = _new_key()
    server_cert = (
        _leaf(_name("localhost"), server_key, ca_cert, ca_key, now, ExtendedKeyUsageOID.SERVER_AUTH)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    client_key = _new_key()
    client_cert = _leaf(
        _name("QlikClient"), client_key, ca_cert, ca_key, now, ExtendedKeyUsageOID.CLIENT_AUTH
    ).sign(ca_key, hashes.SHA256())

    _write(paths.root, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(paths.server, server_cert.public_bytes(serialization.Encoding.PEM))
    _write(paths.server_key, _key_bytes(server_key), private=True)
    _write(paths.client, client_cert.public_bytes(serialization.Encoding.PEM))
    _write(paths.client_key, _key_bytes(client_key), private=True)
    return paths


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name, issuer: x509.Name, key: rsa.RSAPrivateKey, now: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALID_FOR)
    )


def _leaf(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    ca_cert: x509.Certificate,
    ca_key: rsa.RSAPrivateKey,
    now: datetime,
    usage: x509.ObjectIdentifier,
) -> x509.CertificateBuilder:
    return (
        _builder(subject, ca_cert.subject, key, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )


def _key_bytes(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _write(path: Path, content: bytes, *, private: bool = False) -> None:
    path.write_bytes(content)
    if private:
        path.chmod(0o600)
