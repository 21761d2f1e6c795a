"""The built-in Envoy simulator over real HTTP/TLS: captures, auth, fake cloud, faults, CLI."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from envoy2mqtt.clock import ManualClock
from envoy2mqtt.envoy.auth.passwords import installer_password
from envoy2mqtt.simulator import Simulator, SimulatorConfig, run_simulator_forever
from envoy2mqtt.simulator.server import firmware_version
from tests.conftest import ROOT, capture_params, require_capture

TOKEN_CAPTURE = "8.3.5289_modGone"
LEGACY_CAPTURE = "5.0.62"


def _no_verify() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def token_sim() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorConfig(capture_dir=require_capture(TOKEN_CAPTURE)), ManualClock()) as sim:
        yield sim


@pytest.fixture
async def legacy_sim() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorConfig(capture_dir=require_capture(LEGACY_CAPTURE))) as sim:
        yield sim


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # force_close: a dropped connection must not be hidden by aiohttp's retry on a reused connection
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_no_verify(), force_close=True)) as s:
        yield s


# ------------------------------------------------------------------------------------------ captures


def _expected(folder: Path, name: str) -> tuple[int, bytes]:
    log_file = folder / f"{name}_log.json"
    status = json.loads(log_file.read_text()).get("code", 200) if log_file.is_file() else 200
    return status, (folder / name).read_bytes()


@pytest.mark.parametrize("folder", capture_params())
async def test_serves_every_capture_file_with_its_status(folder: Path) -> None:
    async with Simulator(SimulatorConfig(capture_dir=folder)) as sim:
        info = (folder / "info").read_text()
        assert f"<sn>{sim.serial}</sn>" in info
        assert f"<software>{sim.firmware}</software>" in info
        assert sim.url.startswith("https://" if firmware_version(sim.firmware) >= (7,) else "http://")
        middlewares = () if sim.token_auth else (aiohttp.DigestAuthMiddleware("envoy", sim.serial[-6:]),)
        headers = _bearer(sim.issue_token()) if sim.token_auth else {}
        names = sorted(
            p.name
            for p in folder.iterdir()
            if p.is_file() and not p.name.endswith("_log.json") and p.name[0] != "_"
        )
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=_no_verify()), middlewares=middlewares, headers=headers
        ) as client:
            for name in names:
                # any path whose capture name is `name` is answered by that file
                async with client.get(f"{sim.url}/{name}") as response:
                    body = await response.read()
                status, expected = _expected(folder, name)
                assert (response.status, body) == (status, expected), name
                try:
                    json.loads(expected)
                except ValueError:
                    assert response.content_type in ("text/html", "text/xml"), name
                else:
                    assert response.content_type == "application/json", name
            async with client.get(f"{sim.url}/info.xml") as response:
                assert await response.read() == (folder / "info").read_bytes()
            async with client.get(f"{sim.url}/no/such/endpoint") as response:
                assert response.status == 404
                assert response.content_type == "text/html"
                assert "Page Not Found" in await response.text()


async def test_query_falls_back_to_the_file_without_query(
    token_sim: Simulator, session: aiohttp.ClientSession
) -> None:
    folder = require_capture(TOKEN_CAPTURE)
    headers = _bearer(token_sim.issue_token())
    # 8.3.5289 has both production.json and production.json_details_1: the query picks the right one
    async with session.get(f"{token_sim.url}/production.json?details=1", headers=headers) as response:
        assert await response.read() == (folder / "production.json_details_1").read_bytes()
    async with session.get(f"{token_sim.url}/production.json", headers=headers) as response:
        assert await response.read() == (folder / "production.json").read_bytes()
    # no file for this query: the file without the query answers
    async with session.get(f"{token_sim.url}/production.json?details=7", headers=headers) as response:
        assert await response.read() == (folder / "production.json").read_bytes()
    async with session.get(f"{token_sim.url}/home.json", headers=headers) as response:
        assert await response.read() == (folder / "home").read_bytes()
    assert token_sim.requests["/production.json?details=1"] == 1
    assert token_sim.requests["/home.json"] == 1


async def test_capture_without_details_file_answers_details_query() -> None:
    folder = require_capture("7.6.175_with_cts_3phase")
    async with (
        Simulator(SimulatorConfig(capture_dir=folder)) as sim,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_no_verify())) as client,
        client.get(f"{sim.url}/production.json?details=1", headers=_bearer(sim.issue_token())) as response,
    ):
        assert response.status == 200
        assert await response.read() == (folder / "production.json").read_bytes()


# ------------------------------------------------------------------------------------------ legacy digest


@pytest.mark.parametrize("user", ["envoy", "installer"])
async def test_legacy_digest_users(legacy_sim: Simulator, user: str) -> None:
    assert legacy_sim.url.startswith("http://")
    password = legacy_sim.serial[-6:] if user == "envoy" else installer_password(legacy_sim.serial)
    folder = require_capture(LEGACY_CAPTURE)
    async with aiohttp.ClientSession(middlewares=(aiohttp.DigestAuthMiddleware(user, password),)) as client:
        for _ in range(2):  # the second request reuses the nonce with the next nonce count
            async with client.get(f"{legacy_sim.url}/api/v1/production/inverters") as response:
                assert response.status == 200
                assert await response.read() == (folder / "api_v1_production_inverters").read_bytes()
        async with client.get(f"{legacy_sim.url}/ivp/meters") as response:
            assert response.status == 200


async def test_legacy_digest_rejects_wrong_password_and_no_credentials(legacy_sim: Simulator) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{legacy_sim.url}/api/v1/production/inverters") as response:
            assert response.status == 401
            challenge = response.headers["WWW-Authenticate"]
            assert challenge.startswith("Digest ")
            assert 'realm="enphaseenergy.com"' in challenge
            assert 'qop="auth"' in challenge
            assert (await response.json())["info"] == "Authentication required"
        # open endpoints need nothing on legacy firmware
        for path in ("/info", "/production.json", "/api/v1/production"):
            async with client.get(f"{legacy_sim.url}{path}") as response:
                assert response.status == 200, path
    wrong = aiohttp.DigestAuthMiddleware("envoy", "000000")
    async with (
        aiohttp.ClientSession(middlewares=(wrong,)) as client,
        client.get(f"{legacy_sim.url}/api/v1/production/inverters") as response,
    ):
        assert response.status == 401
    stranger = aiohttp.DigestAuthMiddleware("admin", legacy_sim.serial[-6:])
    async with (
        aiohttp.ClientSession(middlewares=(stranger,)) as client,
        client.get(f"{legacy_sim.url}/inventory.json") as response,
    ):
        assert response.status == 401


async def test_legacy_password_override() -> None:
    config = SimulatorConfig(capture_dir=require_capture(LEGACY_CAPTURE), legacy_password="s3cret")
    async with Simulator(config) as sim:
        for password, status in (("s3cret", 200), (sim.serial[-6:], 401)):
            async with (
                aiohttp.ClientSession(
                    middlewares=(aiohttp.DigestAuthMiddleware("envoy", password),)
                ) as client,
                client.get(f"{sim.url}/api/v1/production/inverters") as response,
            ):
                assert response.status == status


# ------------------------------------------------------------------------------------------ token firmware


async def test_tls_certificate_is_self_signed_with_the_announced_fingerprint(token_sim: Simulator) -> None:
    assert token_sim.url.startswith("https://")
    verified = aiohttp.TCPConnector(ssl=ssl.create_default_context())
    async with aiohttp.ClientSession(connector=verified) as client:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await client.get(f"{token_sim.url}/info")
    pinned = aiohttp.Fingerprint(bytes.fromhex(token_sim.envoy_cert_fingerprint))
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"{token_sim.url}/info", ssl=pinned) as response,
    ):
        assert response.status == 200
        assert response.content_type == "text/xml"


async def test_bearer_token_rules(token_sim: Simulator, session: aiohttp.ClientSession) -> None:
    url = f"{token_sim.url}/api/v1/production"
    async with session.get(url) as response:
        assert response.status == 401
        assert "401 Authorization Required" in await response.text()
    async with session.get(url, headers=_bearer(token_sim.issue_token())) as response:
        assert response.status == 200
    async with session.get(
        url, headers=_bearer(token_sim.issue_token("installer", lifetime=43200))
    ) as response:
        assert response.status == 200
    rejected = {
        "expired": token_sim.issue_token(lifetime=-1),
        "other serial": token_sim.issue_token(serial="999999999999"),
        "garbage": "Error in generating Token",
    }
    good = token_sim.issue_token()
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["exp"] += 10
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    rejected["forged claims"] = f"{header}.{forged}.{signature}"
    rejected["foreign key"] = jwt.encode(claims, "a-key-that-is-not-the-simulator-one!", algorithm="HS256")
    for why, token in rejected.items():
        async with session.get(url, headers=_bearer(token)) as response:
            assert response.status == 401, why


async def test_token_expires_on_the_simulator_clock(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with Simulator(SimulatorConfig(capture_dir=require_capture(TOKEN_CAPTURE)), clock) as sim:
        token = sim.issue_token(lifetime=3600)
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["aud"] == sim.serial
        assert claims["exp"] - claims["iat"] == 3600
        async with session.get(f"{sim.url}/api/v1/production", headers=_bearer(token)) as response:
            assert response.status == 200
        clock.advance(3601)
        async with session.get(f"{sim.url}/api/v1/production", headers=_bearer(token)) as response:
            assert response.status == 401


async def test_check_jwt_sets_a_session_cookie_valid_ten_idle_minutes(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with Simulator(SimulatorConfig(capture_dir=require_capture(TOKEN_CAPTURE)), clock) as sim:
        check = f"{sim.url}/auth/check_jwt"
        async with session.get(check) as response:
            assert response.status == 401
        async with session.get(check, headers=_bearer(sim.issue_token(lifetime=-5))) as response:
            assert response.status == 401
        async with session.post(check, headers=_bearer(sim.issue_token())) as response:
            assert response.status == 200
            assert await response.text() == "<!DOCTYPE html><h2>Valid token.</h2>"
        async with session.get(check, headers=_bearer(sim.issue_token())) as response:
            assert response.status == 200
            cookie = response.cookies["sessionId"].value
        data = f"{sim.url}/production.json?details=1"
        cookie_header = {"Cookie": f"sessionId={cookie}"}
        async with session.get(data, headers=cookie_header) as response:
            assert response.status == 200
        clock.advance(599)  # each use restarts the idle timer
        async with session.get(data, headers=cookie_header) as response:
            assert response.status == 200
        clock.advance(601)
        async with session.get(data, headers=cookie_header) as response:
            assert response.status == 401
        async with session.get(data, headers={"Cookie": "sessionId=made-up"}) as response:
            assert response.status == 401


# ------------------------------------------------------------------------------------------ fake cloud


async def _cloud_token(sim: Simulator, client: aiohttp.ClientSession, serial: str | None = None) -> str:
    form = {"user[email]": sim.enlighten_username, "user[password]": sim.enlighten_password}
    async with client.post(sim.login_url, data=form) as response:
        assert response.status == 200
        login = await response.json()
    assert login["is_consumer"] is True
    body = {
        "session_id": login["session_id"],
        "serial_num": serial or sim.serial,
        "username": sim.enlighten_username,
    }
    async with client.post(sim.token_url, json=body) as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        return await response.text()


async def test_cloud_login_tokens_then_envoy(session: aiohttp.ClientSession) -> None:
    config = SimulatorConfig(
        capture_dir=require_capture(TOKEN_CAPTURE), token_type="installer", token_lifetime=43200
    )
    async with Simulator(config) as sim:
        assert sim.login_url == f"{sim.cloud_url}/login/login.json"
        assert sim.token_url == f"{sim.cloud_url}/tokens"
        verified = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(sim.ca_file)))
        async with aiohttp.ClientSession(connector=verified) as cloud:
            token = await _cloud_token(sim, cloud)
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["aud"] == sim.serial
        assert claims["iss"] == "Entrez"
        assert claims["enphaseUser"] == "installer"
        assert claims["username"] == sim.enlighten_username
        assert claims["exp"] - claims["iat"] == 43200
        assert claims["jti"]
        async with session.get(f"{sim.url}/auth/check_jwt", headers=_bearer(token)) as response:
            assert response.status == 200
        async with session.get(f"{sim.url}/ivp/meters/readings", headers=_bearer(token)) as response:
            assert response.status == 200
        assert sim.cloud_calls == {"login": 1, "tokens": 1}


async def test_cloud_certificate_is_signed_by_the_test_ca(token_sim: Simulator) -> None:
    async with aiohttp.ClientSession() as client:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await client.post(token_sim.login_url, data={})


async def test_cloud_switches(token_sim: Simulator) -> None:
    sim = token_sim
    form = {"user[email]": sim.enlighten_username, "user[password]": sim.enlighten_password}
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(sim.ca_file)))
    async with aiohttp.ClientSession(connector=connector) as cloud:
        bad = {"user[email]": sim.enlighten_username, "user[password]": "wrong"}
        async with cloud.post(sim.login_url, data=bad) as response:
            assert response.status == 401
            assert "session_id" not in await response.json()

        sim.cloud.login_fails = True
        async with cloud.post(sim.login_url, data=form) as response:
            assert response.status == 401
        sim.cloud.login_fails = False

        sim.cloud.mfa = True
        async with cloud.post(sim.login_url, data=form) as response:
            assert response.status == 200
            assert "session_id" not in await response.json()
        sim.cloud.mfa = False

        sim.cloud.garbage_token = True
        async with cloud.post(sim.login_url, data=form) as response:
            session_id = (await response.json())["session_id"]
        body = {"session_id": session_id, "serial_num": sim.serial, "username": sim.enlighten_username}
        async with cloud.post(sim.token_url, json=body) as response:
            assert response.status == 200
            assert await response.text() == "Error in generating Token"
        sim.cloud.garbage_token = False

        async with cloud.post(sim.token_url, json={**body, "session_id": "forged"}) as response:
            assert response.status == 401

        sim.cloud.down = True
        async with cloud.post(sim.login_url, data=form) as response:
            assert response.status == 503
        async with cloud.post(sim.token_url, json=body) as response:
            assert response.status == 503
        sim.cloud.down = False

        token = await _cloud_token(sim, cloud, serial="111111111111")
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "111111111111"
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_no_verify())) as client,
        client.get(f"{sim.url}/api/v1/production", headers=_bearer(token)) as response,
    ):
        assert response.status == 401  # a token for another Envoy
    assert sim.cloud_calls["login"] == 6
    assert sim.cloud_calls["tokens"] == 4


# ------------------------------------------------------------------------------------------ faults


async def test_fault_unauthorized_and_server_error(
    token_sim: Simulator, session: aiohttp.ClientSession
) -> None:
    headers = _bearer(token_sim.issue_token())
    url = f"{token_sim.url}/api/v1/production"
    token_sim.faults.unauthorized(2)
    statuses = []
    for _ in range(3):
        async with session.get(url, headers=headers) as response:
            statuses.append(response.status)
    assert statuses == [401, 401, 200]
    token_sim.faults.server_error(1, status=502)
    for expected in (502, 200):
        async with session.get(url, headers=headers) as response:
            assert response.status == expected
    token_sim.faults.server_error(5)
    token_sim.faults.clear()
    async with session.get(url, headers=headers) as response:
        assert response.status == 200


async def test_fault_malformed(token_sim: Simulator, session: aiohttp.ClientSession) -> None:
    headers = _bearer(token_sim.issue_token())
    token_sim.faults.malformed(1)
    async with session.get(f"{token_sim.url}/production.json?details=1", headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        with pytest.raises(ValueError):
            json.loads(await response.read())
    async with session.get(f"{token_sim.url}/production.json?details=1", headers=headers) as response:
        json.loads(await response.read())


async def test_fault_drop(token_sim: Simulator, session: aiohttp.ClientSession) -> None:
    # aiohttp retries an idempotent request once on a dropped connection: drop both attempts
    token_sim.faults.drop(2)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with session.get(f"{token_sim.url}/info") as response:
            await response.read()
    assert token_sim.requests["/info"] == 2
    async with session.get(f"{token_sim.url}/info") as response:
        assert response.status == 200


async def test_fault_slow(token_sim: Simulator, session: aiohttp.ClientSession) -> None:
    token_sim.faults.slow(60.0, count=1)
    with pytest.raises(asyncio.TimeoutError):
        await session.get(f"{token_sim.url}/info", timeout=aiohttp.ClientTimeout(total=0.3))
    async with session.get(f"{token_sim.url}/info") as response:  # count exhausted
        assert response.status == 200
    token_sim.faults.slow(0.05)  # every request until cleared, still answered
    for _ in range(2):
        async with session.get(f"{token_sim.url}/info") as response:
            assert response.status == 200
    assert token_sim.faults.snapshot()["slow_left"] is None
    token_sim.faults.clear()
    assert token_sim.faults.snapshot()["slow_seconds"] == 0


async def test_fault_offline_and_back_on_the_same_port(
    token_sim: Simulator, session: aiohttp.ClientSession
) -> None:
    url = f"{token_sim.url}/info"
    token_sim.faults.offline()
    with pytest.raises(aiohttp.ClientConnectorError):
        await session.get(url)
    token_sim.faults.clear()
    async with session.get(url) as response:
        assert response.status == 200
    token_sim.stop_envoy()
    with pytest.raises(aiohttp.ClientConnectorError):
        await session.get(url)
    await token_sim.start_envoy()
    async with session.get(url) as response:
        assert response.status == 200


async def test_offline_closes_kept_alive_connections(token_sim: Simulator) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_no_verify())) as client:
        async with client.get(f"{token_sim.url}/info") as response:
            assert response.status == 200
        token_sim.faults.offline()
        with pytest.raises(aiohttp.ClientConnectionError):
            async with client.get(f"{token_sim.url}/info") as response:
                await response.read()
        await token_sim.start_envoy()
        assert not token_sim.faults.is_offline
        async with client.get(f"{token_sim.url}/info") as response:
            assert response.status == 200


async def test_fault_control_over_http(token_sim: Simulator, session: aiohttp.ClientSession) -> None:
    control = f"{token_sim.url}/__sim/faults"
    async with session.post(control, json={"fault": "unauthorized", "count": 1}) as response:
        assert response.status == 200
    headers = _bearer(token_sim.issue_token())
    async with session.get(f"{token_sim.url}/api/v1/production", headers=headers) as response:
        assert response.status == 401
    async with session.post(control, json={"fault": "server_error", "count": 1, "status": 500}) as response:
        assert response.status == 200
    async with session.get(f"{token_sim.url}/api/v1/production", headers=headers) as response:
        assert response.status == 500
    async with session.post(control, json={"fault": "nonsense"}) as response:
        assert response.status == 400
    async with session.get(f"{token_sim.url}/__sim/stats") as response:
        stats = await response.json()
    assert stats["requests"] == {"/api/v1/production": 2}
    assert token_sim.requests == {"/api/v1/production": 2}  # control calls are not counted

    async with session.post(control, json={"fault": "offline", "seconds": 0.2}) as response:
        assert (await response.json())["offline"] is True
    assert token_sim.faults.is_offline
    for _ in range(200):  # comes back by itself
        if not token_sim.faults.is_offline:
            break
        await asyncio.sleep(0.05)
    await token_sim.start_envoy()
    async with session.get(f"{token_sim.url}/info") as response:
        assert response.status == 200


# ------------------------------------------------------------------------------------------ CLI


async def test_run_simulator_forever_prints_urls_and_serves() -> None:
    lines: list[str] = []
    config = SimulatorConfig(capture_dir=require_capture(TOKEN_CAPTURE))
    task = asyncio.create_task(run_simulator_forever(config, print_fn=lines.append))
    for _ in range(400):
        if any(line.startswith("Enlighten pass") for line in lines):
            break
        await asyncio.sleep(0.025)
    text = "\n".join(lines)
    url = next(line.split()[-1] for line in lines if line.startswith("Envoy URL"))
    token = next(line.split()[-1] for line in lines if line.startswith("Owner token"))
    assert "Cloud login URL" in text
    assert "Cloud CA file" in text
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_no_verify())) as client,
        client.get(f"{url}/api/v1/production", headers=_bearer(token)) as response,
    ):
        assert response.status == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_python_m_simulator_starts_and_prints_its_urls() -> None:
    folder = require_capture(LEGACY_CAPTURE)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "envoy2mqtt.simulator", str(folder), "--host", "127.0.0.1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("Enlighten pass"):
                break
        url = next(line.split()[-1] for line in lines if line.startswith("Envoy URL"))
        assert url.startswith("http://127.0.0.1:")
        assert any("Digest user envoy" in line for line in lines)

        with urllib.request.urlopen(f"{url}/info", timeout=10) as response:
            assert b"<software>D5.0.62</software>" in response.read()
    finally:
        proc.terminate()
        proc.wait(10)


def _start_simulate(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """`envoy2mqtt simulate ARGS` as a real subprocess, its temporary files under tmp_path; the banner."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "envoy2mqtt", "simulate", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        if line.startswith("Fault control"):
            break
    if not lines or not lines[-1].startswith("Fault control"):
        proc.kill()
        proc.wait()
        pytest.fail(f"simulate ended before its banner: {lines}")
    return proc, lines


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_simulate_stops_cleanly_on_sigterm_and_sigint(tmp_path: Path, sig: signal.Signals) -> None:
    """`docker stop` / systemd send SIGTERM: exit 0 and the temporary directory (private keys) is gone."""
    proc, lines = _start_simulate(tmp_path, "--profile", "metered-3phase-iq")
    try:
        ca_file = Path(next(line.split()[-1] for line in lines if line.startswith("Cloud CA file")))
        temporary = ca_file.parent
        assert temporary.parent == tmp_path
        keys = list(temporary.glob("*key*"))
        assert keys, sorted(p.name for p in temporary.iterdir())
        proc.send_signal(sig)
        code = proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0
    assert not temporary.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("host", "every_interface"), [("0.0.0.0", True), ("127.0.0.1", False), ("::1", False)]
)
def test_simulate_prints_the_address_it_really_listens_on(
    tmp_path: Path, host: str, every_interface: bool
) -> None:
    """In a container the simulator binds 0.0.0.0: the banner says so, not only a loopback URL."""
    proc, lines = _start_simulate(tmp_path, "--profile", "legacy-unmetered", "--host", host)
    try:
        listening = next(line for line in lines if line.startswith("Listening on:"))
        url = next(line.split()[-1] for line in lines if line.startswith("Envoy URL"))
        port = int(url.rsplit(":", 1)[1])
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        assert listening.split()[2] == shown, listening
        assert ("every interface" in "\n".join(lines)) is every_interface
        with urllib.request.urlopen(f"{url}/info", timeout=10) as response:  # the URL works from here
            assert response.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


async def test_site_control_shades_silences_clouds_and_cuts_the_grid(session: aiohttp.ClientSession) -> None:
    async with Simulator(SimulatorConfig(profile="metered-3phase-iq", enpower=True)) as sim:
        control = f"{sim.url}/__sim/site"
        headers = _bearer(sim.issue_token())

        async def inverters() -> dict[str, dict[str, Any]]:
            async with session.get(f"{sim.url}/api/v1/production/inverters", headers=headers) as response:
                return {row["serialNumber"]: row for row in await response.json()}

        before = await inverters()
        shaded, silent = sorted(before)[2], sorted(before)[3]
        async with session.post(control, json={"inverter": shaded, "output": 0.5}) as response:
            assert response.status == 200
        async with session.post(
            control, json={"inverter": silent, "reporting": False, "silent_for": 900}
        ) as response:
            assert response.status == 200
        after = await inverters()
        assert after[shaded]["lastReportWatts"] == pytest.approx(before[shaded]["lastReportWatts"] / 2, abs=1)
        assert after[silent]["lastReportDate"] <= before[silent]["lastReportDate"] - 600
        async with session.post(control, json={"on_grid": False}) as response:
            assert (await response.json())["on_grid"] is False
        async with session.get(f"{sim.url}/ivp/ensemble/inventory", headers=headers) as response:
            groups = {g["type"]: g["devices"] for g in await response.json()}
        assert groups["ENPOWER"][0]["mains_oper_state"] == "open"
        async with session.post(control, json={"weather": "cloudy"}) as response:
            assert (await response.json())["cloudy"] is True
        for bad in ({"inverter": "nope", "output": 0.5}, {"weather": "rain"}, {"on_grid": "yes"}, [1]):
            async with session.post(control, json=bad) as response:
                assert response.status == 400, bad
    async with Simulator(SimulatorConfig(profile="legacy-unmetered")) as plain:
        answer = await session.post(f"{plain.url}/__sim/site", json={"on_grid": False})
        assert answer.status == 400  # no relay at this site
        answer.release()
