"""Mesh PKI: a CA and one SPIFFE identity per service account, written as PEM files.

The supervisor calls ``MeshPKI.create`` once per sandbox; sidecars load the files
(``spiffe://cluster.local/ns/<ns>/sa/<sa>`` as URI SAN), and tests use them to act as
a mesh workload when they need a real mTLS client, as the local target's authorization check does
(``issued``: the files of an identity the supervisor has issued, from another process).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=2)


@dataclass(frozen=True)
class IdentityFiles:
    spiffe_id: str
    cert: str
    key: str


class MeshPKI:
    """A throw-away mesh CA in ``directory`` that issues workload certificates on demand."""

    def __init__(self, directory: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate) -> None:
        self.directory = directory
        self._ca_key = ca_key
        self._ca_cert = ca_cert
        self._issued: dict[str, IdentityFiles] = {}

    @property
    def ca_path(self) -> str:
        return str(self.directory / "ca.crt")

    @classmethod
    def create(cls, directory: Path) -> MeshPKI:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chaosmesh-qa"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "chaosmesh-qa mesh CA")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .sign(key, hashes.SHA256())
        )
        pki = cls(directory, key, cert)
        _write(directory / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))
        return pki

    def identity(self, spiffe_id: str, dns_name: str, ip_addresses: tuple[str, ...] = ()) -> IdentityFiles:
        """Certificate + key for ``spiffe_id`` (issued once, then reused); ``ip_addresses`` add IP SANs."""
        if spiffe_id in self._issued:
            return self._issued[spiffe_id]
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chaosmesh-qa")]))
            .issuer_name(self._ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + _VALIDITY)
            .add_extension(x509.SubjectAlternativeName([
                x509.UniformResourceIdentifier(spiffe_id), x509.DNSName(dns_name),
                *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses)]), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        stem = _stem(spiffe_id)
        cert_path, key_path = self.directory / f"{stem}.crt", self.directory / f"{stem}.key"
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        _write(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        files = IdentityFiles(spiffe_id, str(cert_path), str(key_path))
        self._issued[spiffe_id] = files
        return files


def issued(directory: Path, spiffe_id: str) -> IdentityFiles | None:
    """The certificate and key a sandbox's PKI in ``directory`` issued for ``spiffe_id``, or None if it has not."""
    stem = _stem(spiffe_id)
    cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    return IdentityFiles(spiffe_id, str(cert), str(key)) if cert.is_file() and key.is_file() else None


def _stem(spiffe_id: str) -> str:
    return spiffe_id.rsplit("/ns/", 1)[-1].replace("/", "-")


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=not ca,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)
