"""TLS (CA, client certificate, insecure) and username/password against real mosquitto listeners."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ipaddress
import os
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from envoy2mqtt.errors import MqttError
from envoy2mqtt.mqtt.publisher import Publisher
from tests.conftest import Mosquitto, free_port
from tests.test_mqtt_publisher import WAIT, retained, running, settings_for, wait_connected

# --------------------------------------------------------------------------- a test PKI


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def _issue(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(folder: Path) -> dict[str, Path]:
    ca_key = _key()
    ca = _issue("envoy2mqtt test CA", ca_key, None, ca=True)
    _write(folder / "ca", ca, ca_key)
    server_key = _key()
    _write(folder / "server", _issue("localhost", server_key, (ca.subject, ca_key), server=True), server_key)
    client_key = _key()
    _write(folder / "client", _issue("envoy2mqtt", client_key, (ca.subject, ca_key)), client_key)
    other_key = _key()  # a CA the broker does not know
    _write(folder / "other", _issue("another CA", other_key, None, ca=True), other_key)
    return {
        "ca": folder / "ca.crt",
        "server_cert": folder / "server.crt",
        "server_key": folder / "server.key",
        "client_cert": folder / "client.crt",
        "client_key": folder / "client.key",
        "other_ca": folder / "other.crt",
    }


def listener(port: int) -> str:
    # mosquitto started as root drops to the `mosquitto` user before reading certificates and password
    # files; pytest's tmp_path is private to us, so stay who we are.
    keep_user = "user root\n" if os.geteuid() == 0 else ""
    return f"{keep_user}listener {port} 127.0.0.1\n"


@pytest.fixture
def tls_broker(tmp_path: Path) -> tuple[Mosquitto, dict[str, Path]]:
    pki = make_pki(tmp_path)
    port = free_port()
    config = (
        f"{listener(port)}"
        "allow_anonymous true\n"
        f"cafile {pki['ca']}\n"
        f"certfile {pki['server_cert']}\n"
        f"keyfile {pki['server_key']}\n"
        "require_certificate true\n"
    )
    broker = Mosquitto(tmp_path, extra_config=config, port=port)
    broker.start()
    yield broker, pki  # type: ignore[misc]
    broker.stop()


def client_tls(pki: dict[str, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    context.load_cert_chain(str(pki["client_cert"]), str(pki["client_key"]))
    return context


async def test_tls_with_ca_and_client_certificate(tls_broker: tuple[Mosquitto, dict[str, Path]]) -> None:
    broker, pki = tls_broker
    settings, topics = settings_for(
        broker.port,
        tls={
            "enabled": True,
            "ca_file": pki["ca"],
            "cert_file": pki["client_cert"],
            "key_file": pki["client_key"],
        },
    )
    publisher = Publisher(settings, topics)
    publisher.publish(topics.system("E1"), {"production_power": 1})
    async with running(publisher):
        await wait_connected(publisher)
        await publisher.republish_all()
        kept = await retained(broker.port, "#", tls_context=client_tls(pki))
    assert kept == {topics.bridge_availability: b"online", topics.system("E1"): b'{"production_power":1}'}


async def test_tls_insecure_accepts_an_unknown_broker_certificate(
    tls_broker: tuple[Mosquitto, dict[str, Path]],
) -> None:
    broker, pki = tls_broker
    settings, topics = settings_for(
        broker.port,
        host="127.0.0.1",
        tls={
            "enabled": True,
            "ca_file": pki["other_ca"],  # does not sign the broker's certificate
            "cert_file": pki["client_cert"],
            "key_file": pki["client_key"],
            "insecure": True,
        },
    )
    publisher = Publisher(settings, topics)
    async with running(publisher):
        await wait_connected(publisher)
        kept = await retained(broker.port, "#", tls_context=client_tls(pki))
    assert kept == {topics.bridge_availability: b"online"}


async def test_tls_verification_rejects_an_unknown_broker_certificate(
    tls_broker: tuple[Mosquitto, dict[str, Path]],
) -> None:
    broker, pki = tls_broker
    settings, topics = settings_for(
        broker.port,
        tls={
            "enabled": True,
            "ca_file": pki["other_ca"],
            "cert_file": pki["client_cert"],
            "key_file": pki["client_key"],
        },
    )
    publisher = Publisher(settings, topics, initial_backoff=0.05, max_backoff=0.1)
    async with running(publisher) as task:
        # the broker sees the handshake fail (our client rejects its certificate), again and again
        async with asyncio.timeout(WAIT):
            while broker.log.read_text(errors="replace").count("alert unknown ca") < 3:
                await asyncio.sleep(0.05)
        assert not publisher.connected.is_set()
        assert not task.done()  # a TLS failure is retried, not fatal
    kept = await retained(broker.port, "#", tls_context=client_tls(pki))
    assert kept == {}


def test_unreadable_tls_files_are_a_clear_error(tmp_path: Path) -> None:
    settings, topics = settings_for(8883, tls={"enabled": True, "ca_file": tmp_path / "missing.crt"})
    with pytest.raises(MqttError, match=r"mqtt\.tls"):
        Publisher(settings, topics)


# --------------------------------------------------------------------------- username / password


def _pbkdf2_line(user: str, password: str) -> str:
    """mosquitto's `$7$` password-file format (PBKDF2-SHA512), for hosts without mosquitto_passwd."""
    salt = os.urandom(12)
    iterations = 101
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"{user}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def write_password_file(path: Path, user: str, password: str) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool:
        path.touch(mode=0o600)
        subprocess.run([tool, "-b", str(path), user, password], check=True, capture_output=True)
    else:
        path.write_text(_pbkdf2_line(user, password) + "\n")
        path.chmod(0o600)


@pytest.fixture
def auth_broker(tmp_path: Path) -> Mosquitto:
    passwords = tmp_path / "passwd"
    write_password_file(passwords, "bridge", "s3cret-pa55")
    port = free_port()
    config = f"{listener(port)}allow_anonymous false\npassword_file {passwords}\n"
    broker = Mosquitto(tmp_path, extra_config=config, port=port)
    broker.start()
    yield broker  # type: ignore[misc]
    broker.stop()


async def test_username_and_password(auth_broker: Mosquitto) -> None:
    settings, topics = settings_for(auth_broker.port, username="bridge", password="s3cret-pa55")
    publisher = Publisher(settings, topics)
    async with running(publisher):
        await wait_connected(publisher)
        kept = await retained(auth_broker.port, "#", username="bridge", password="s3cret-pa55")
    assert kept == {topics.bridge_availability: b"online"}


async def test_wrong_password_ends_run_with_a_clear_error(auth_broker: Mosquitto) -> None:
    settings, topics = settings_for(auth_broker.port, username="bridge", password="wrong-Pa55word")
    publisher = Publisher(settings, topics)
    with pytest.raises(MqttError) as caught:
        async with asyncio.timeout(WAIT):
            await publisher.run()
    message = str(caught.value)
    assert "refused" in message
    assert "not authorized" in message or "user name or password" in message
    assert "mqtt.password" in message  # names the setting to fix
    assert "wrong-Pa55word" not in message
    assert "wrong-Pa55word" not in repr(caught.value.__cause__)
    assert not publisher.connected.is_set()


async def test_pbkdf2_password_file_format(tmp_path: Path) -> None:
    """The fallback format works with this mosquitto too, so the auth tests run without mosquitto_passwd."""
    passwords = tmp_path / "passwd-fallback"
    passwords.write_text(_pbkdf2_line("bridge", "other-pa55") + "\n")
    passwords.chmod(0o600)
    port = free_port()
    broker = Mosquitto(
        tmp_path,
        extra_config=f"{listener(port)}allow_anonymous false\npassword_file {passwords}\n",
        port=port,
    )
    broker.start()
    try:
        settings, topics = settings_for(port, username="bridge", password="other-pa55")
        publisher = Publisher(settings, topics)
        async with running(publisher):
            await wait_connected(publisher)
    finally:
        broker.stop()
