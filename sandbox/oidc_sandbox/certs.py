"""A throwaway CA and a server certificate for ``127.0.0.1``, ``localhost`` and ``::1``.

Generated at every start (EC P-256, so it takes milliseconds) and written to the state directory:
``ca.pem`` (the CA certificate clients trust), ``server.pem`` + ``server-key.pem`` (for uvicorn) and
``ca-bundle.pem`` (certifi's public roots plus the sandbox CA, for ``REQUESTS_CA_BUNDLE``/``SSL_CERT_FILE``).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclasses.dataclass(frozen=True)
class CertFiles:
    """Paths of the generated PEM files."""

    ca_file: str
    cert_file: str
    key_file: str
    bundle_file: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "oidc_federation.azure sandbox"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _write(path: str, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)


def generate(directory: str, hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")) -> CertFiles:
    """Create a CA and a server certificate for ``hosts`` in ``directory``; return the file paths."""
    os.makedirs(directory, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("oidc_federation.azure sandbox CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0])).issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    files = CertFiles(
        ca_file=os.path.join(directory, "ca.pem"),
        cert_file=os.path.join(directory, "server.pem"),
        key_file=os.path.join(directory, "server-key.pem"),
        bundle_file=os.path.join(directory, "ca-bundle.pem"),
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    _write(files.ca_file, ca_pem)
    _write(files.cert_file, cert.public_bytes(serialization.Encoding.PEM))
    _write(files.key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), 0o600)
    _write(files.bundle_file, _public_roots() + b"\n" + ca_pem)
    return files


def _public_roots() -> bytes:
    """certifi's CA store (empty when certifi is not installed)."""
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with requests/httpx
        return b""
    with open(certifi.where(), "rb") as fh:
        return fh.read()
