"""Throw-away TLS material: a self-signed Envoy certificate and a test CA that signs the fake cloud."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_VALIDITY = datetime.timedelta(days=3650)


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    ca_file: Path
    envoy_cert: Path
    envoy_key: Path
    cloud_cert: Path
    cloud_key: Path
    envoy_fingerprint: str  # SHA-256 hex of the Envoy certificate (DER)


def _subject_alt_names(hosts: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in [*hosts, "127.0.0.1", "localhost"]:
        if host in seen or host in ("0.0.0.0", "::", ""):  # noqa: S104 - a bind-all address is not a name
            continue
        seen.add(host)
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "envoy2mqtt simulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def generate_tls_material(directory: Path, hosts: list[str]) -> TlsMaterial:
    """Write a CA, a cloud certificate signed by it and a self-signed Envoy certificate into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    sans = _subject_alt_names(hosts)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("envoy2mqtt simulator test CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    cloud_key = ec.generate_private_key(ec.SECP256R1())
    cloud_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("enlighten.simulator"))
        .issuer_name(ca_name)
        .public_key(cloud_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(sans, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    envoy_key = ec.generate_private_key(ec.SECP256R1())
    envoy_name = _name("envoy")
    envoy_cert = (
        x509.CertificateBuilder()
        .subject_name(envoy_name)
        .issuer_name(envoy_name)
        .public_key(envoy_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(sans, critical=False)
        .sign(envoy_key, hashes.SHA256())
    )

    material = TlsMaterial(
        ca_file=directory / "simulator-ca.pem",
        envoy_cert=directory / "envoy-cert.pem",
        envoy_key=directory / "envoy-key.pem",
        cloud_cert=directory / "cloud-cert.pem",
        cloud_key=directory / "cloud-key.pem",
        envoy_fingerprint=hashlib.sha256(envoy_cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
    )
    material.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    material.cloud_cert.write_bytes(cloud_cert.public_bytes(serialization.Encoding.PEM))
    material.envoy_cert.write_bytes(envoy_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(cloud_key, material.cloud_key)
    _write_key(envoy_key, material.envoy_key)
    return material
