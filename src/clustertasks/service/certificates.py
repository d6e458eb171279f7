"""A local certificate authority and a server certificate signed by it, for HTTPS on this
machine: some clients (Terraform's cluster resources) speak nothing but HTTPS.

The CA is made here and trusted by the clients through their own settings (``ca`` of the
Python SDKs, ``SSL_CERT_FILE`` for Go, ``NODE_EXTRA_CA_CERTS`` for Node, ``--cacert`` for
curl); nothing is installed into the system's trust store.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clustertasks import errors

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
CERT_FILE = "server.pem"
KEY_FILE = "server-key.pem"
SERVER_NAMES = ("localhost", "127.0.0.1", "::1")
"""What the server certificate is valid for: the loopback names and addresses."""
CA_DAYS = 3650
SERVER_DAYS = 825
"""The most a server certificate may last for Apple's TLS clients; others accept more."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / CA_FILE

    @property
    def ca_key(self) -> Path:
        return self.directory / CA_KEY_FILE

    @property
    def cert(self) -> Path:
        return self.directory / CERT_FILE

    @property
    def key(self) -> Path:
        return self.directory / KEY_FILE


def make_local_ca(
    directory: Path,
    *,
    names: tuple[str, ...] = SERVER_NAMES,
    overwrite: bool = False,
    now: datetime.datetime | None = None,
) -> TlsFiles:
    """Write a new CA and a server certificate for ``names`` into ``directory``; refuse to
    replace existing files unless ``overwrite`` (clients may already trust that CA)."""
    files = TlsFiles(directory)
    existing = [p for p in (files.ca, files.ca_key, files.cert, files.key) if p.exists()]
    if existing and not overwrite:
        raise errors.ConfigurationError(
            f"{', '.join(str(p) for p in existing)} already exist(s); pass --force to replace "
            "them (clients that trust the old CA must then trust the new one)"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise errors.ConfigurationError(f"cannot create {directory}: {exc}") from exc
    start = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clustertasks local CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(files.ca_key, _private_pem(ca_key), secret=True)
    _write(files.key, _private_pem(server_key), secret=True)
    _write(files.ca, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(files.cert, server_cert.public_bytes(serialization.Encoding.PEM))
    return files


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    # A private key is never readable by others, not even for a moment.
    mode = 0o600 if secret else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, mode)
