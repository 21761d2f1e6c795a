"""Legacy (firmware < 7) digest authentication against the simulator serving real legacy captures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from envoy2mqtt.clock import ManualClock
from envoy2mqtt.config import CloudSettings, EnvoySettings, TokenSettings
from envoy2mqtt.envoy import endpoints
from envoy2mqtt.envoy.auth.legacy import legacy_credentials
from envoy2mqtt.envoy.auth.passwords import installer_password
from envoy2mqtt.envoy.client import EnvoyClient
from envoy2mqtt.errors import EnvoyAuthError
from envoy2mqtt.readers import probe
from envoy2mqtt.simulator import Simulator, SimulatorConfig
from tests.conftest import require_capture

LEGACY_CAPTURE = "5.0.62"


class JumpClock(ManualClock):
    async def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
        await super().sleep(0)


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


@pytest.fixture
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[Simulator]:
    folder = getattr(request, "param", LEGACY_CAPTURE)
    async with Simulator(SimulatorConfig(capture_dir=require_capture(folder))) as simulator:
        yield simulator


def client_for(sim: Simulator, tmp_path: Path, host: str | None = None, **extra: Any) -> EnvoyClient:
    settings = EnvoySettings(host=host or sim.url, **extra)
    return EnvoyClient(settings, CloudSettings(), TokenSettings(), tmp_path, JumpClock())


def test_credentials_defaults() -> None:
    serial = "121621012167"
    default = legacy_credentials(EnvoySettings(host="h"), serial)
    assert (default.username, default.password, default.derived) == ("envoy", "012167", True)
    installer = legacy_credentials(EnvoySettings(host="h", username="installer"), serial)
    assert installer.password == installer_password(serial)
    assert installer.derived
    given = legacy_credentials(
        EnvoySettings(host="h", username="envoy", password=SecretStr("pw1234")), serial
    )
    assert (given.password, given.derived) == ("pw1234", False)
    assert "pw1234" not in repr(given)
    assert installer.password not in repr(installer)


async def test_default_envoy_user(sim: Simulator, tmp_path: Path, logs: list[dict[str, Any]]) -> None:
    async with client_for(sim, tmp_path) as client:
        info = await client.connect()
        assert info.auth_mode == "legacy"
        assert client.token_manager is None
        inverters = await client.get_json(endpoints.API_V1_INVERTERS)  # digest-protected
        assert isinstance(inverters, list)
        assert inverters
        status = client.auth_status
        assert status.mode == "legacy"
        assert status.ok
        assert status.token_type is None
        assert sim.requests[endpoints.API_V1_INVERTERS] == 2  # challenge, then the digest answer
        await client.get_json(endpoints.API_V1_INVERTERS)
        assert sim.requests[endpoints.API_V1_INVERTERS] == 3  # later requests answer the challenge directly
    assert sum(sim.cloud_calls.values()) == 0


async def test_installer_user_with_computed_password(
    sim: Simulator, tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    async with client_for(sim, tmp_path, username="installer") as client:
        await client.connect()
        assert isinstance(await client.get_json(endpoints.API_V1_INVERTERS), list)
    assert sim.installer_password not in repr(logs)


async def test_wrong_password(sim: Simulator, tmp_path: Path, logs: list[dict[str, Any]]) -> None:
    async with client_for(sim, tmp_path, username="envoy", password=SecretStr("wrong-pass")) as client:
        await client.connect()
        # open endpoints work without (or with wrong) credentials
        production = await client.get_json(endpoints.API_V1_PRODUCTION)
        assert "wattHoursLifetime" in production
        assert sim.requests[endpoints.API_V1_PRODUCTION] == 1  # no challenge for an open page
        with pytest.raises(EnvoyAuthError) as info:
            await client.get_json(endpoints.API_V1_INVERTERS)
        message = str(info.value)
        assert "'envoy'" in message
        assert "wrong-pass" not in message
        status = client.auth_status
        assert not status.ok
        assert status.reason
        assert "wrong-pass" not in status.reason
        # the open endpoint still works and does not mark auth as repaired
        await client.get_json(endpoints.API_V1_PRODUCTION)
        assert not client.auth_status.ok
    assert "wrong-pass" not in repr(logs)
    assert logs


async def test_https_then_http_fallback(sim: Simulator, tmp_path: Path, logs: list[dict[str, Any]]) -> None:
    assert sim.url.startswith("http://")
    host = sim.url.removeprefix("http://")  # no scheme: https is tried first
    async with client_for(sim, tmp_path, host=host) as client:
        info = await client.connect()
        assert info.serial == sim.serial
        assert client.base_url == f"http://{host}"
        assert isinstance(await client.get_json(endpoints.API_V1_INVERTERS), list)
        assert any(e["event"] == "envoy_info_unreachable" and "https://" in e["url"] for e in logs)


@pytest.mark.parametrize("sim", ["3.9.36_bad_auth"], indirect=True)
async def test_probe_treats_401_and_error_documents_as_absent(
    sim: Simulator, tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    async with client_for(sim, tmp_path) as client:
        await client.connect()
        probed = await probe(client)
        features = probed.features
        # /api/v1/production/inverters answers 401 even with valid digest, /ivp/meters {"error": "404..."}
        assert endpoints.API_V1_INVERTERS not in probed.bodies
        assert endpoints.METERS not in probed.bodies
        assert endpoints.API_V1_PRODUCTION in probed.bodies
        assert endpoints.METERS not in features.endpoints
        # at runtime the same 401 is an authentication error
        with pytest.raises(EnvoyAuthError):
            await client.get_json(endpoints.API_V1_INVERTERS)
