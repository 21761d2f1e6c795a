"""Transport rules of the Envoy client: retries, bad bodies, pinning, the single request queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr
from structlog.testing import capture_logs

from envoy2mqtt.clock import ManualClock
from envoy2mqtt.config import CloudSettings, EnvoySettings, TokenSettings
from envoy2mqtt.envoy import endpoints
from envoy2mqtt.envoy.client import EnvoyClient
from envoy2mqtt.errors import BadEnvoyData, EnvoyHttpError, EnvoyNotFound, EnvoyUnreachable
from envoy2mqtt.readers import probe
from envoy2mqtt.simulator import Simulator, SimulatorConfig
from tests.conftest import free_port, require_capture

HTML_CAPTURE = "3.7.0"  # production.json: 200 + HTML "Page Not Found"; production: 200 + HTML page
LEGACY_CAPTURE = "5.0.62"
TOKEN_CAPTURE = "8.2.4345_with_device_data"


class JumpClock(ManualClock):
    """Records the retry pauses and moves time at once."""

    def __init__(self) -> None:
        super().__init__()
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
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


def make_client(url: str, state_dir: Path, clock: JumpClock | None = None, **extra: Any) -> EnvoyClient:
    return EnvoyClient(
        EnvoySettings(host=url, **extra), CloudSettings(), TokenSettings(), state_dir, clock or JumpClock()
    )


@pytest.mark.parametrize("sim", [HTML_CAPTURE], indirect=True)
async def test_html_bodies_with_status_200(sim: Simulator, tmp_path: Path) -> None:
    async with make_client(sim.url, tmp_path) as client:
        await client.connect()
        with pytest.raises(EnvoyNotFound):
            await client.get_json(endpoints.PRODUCTION_JSON_PLAIN)  # 200, HTML "Page Not Found"
        with pytest.raises(BadEnvoyData, match="HTML"):
            await client.get_json("/production")  # 200, the HTML production page
        assert "Currently" in await client.get_text("/production")  # as text it is fine
        probed = await probe(client)  # fw 3.7.0 serves no JSON at all: only the HTML page is usable
        features = probed.features
        assert set(probed.bodies) == {endpoints.PRODUCTION_HTML}
        assert features.endpoints == {endpoints.PRODUCTION_HTML}


async def test_404_is_not_found_and_not_retried(sim: Simulator, tmp_path: Path) -> None:
    clock = JumpClock()
    async with make_client(sim.url, tmp_path, clock) as client:
        await client.connect()
        with pytest.raises(EnvoyNotFound) as info:
            await client.get_json("/no/such/endpoint")
        assert info.value.status == 404
        assert sim.requests["/no/such/endpoint"] == 1
        assert clock.slept == []


async def test_5xx_is_retried_then_succeeds(sim: Simulator, tmp_path: Path) -> None:
    clock = JumpClock()
    async with make_client(sim.url, tmp_path, clock) as client:
        await client.connect()
        sim.faults.server_error(2)
        data = await client.get_json(endpoints.API_V1_PRODUCTION)
        assert "wattsNow" in data
        assert sim.requests[endpoints.API_V1_PRODUCTION] == 3
        assert len(clock.slept) == 2
        assert clock.slept[1] > clock.slept[0] * 0.3  # jittered, growing on average
        assert all(0 < s <= 15 for s in clock.slept)


async def test_persistent_5xx_gives_up_after_a_few_attempts(sim: Simulator, tmp_path: Path) -> None:
    async with make_client(sim.url, tmp_path) as client:
        await client.connect()
        sim.faults.server_error(10, status=502)
        with pytest.raises(EnvoyHttpError) as info:
            await client.get_json(endpoints.API_V1_PRODUCTION)
        assert info.value.status == 502
        assert sim.requests[endpoints.API_V1_PRODUCTION] == 3


async def test_dropped_connection_is_retried(sim: Simulator, tmp_path: Path) -> None:
    async with make_client(sim.url, tmp_path) as client:
        await client.connect()
        sim.faults.drop(1)
        assert "wattsNow" in await client.get_json(endpoints.API_V1_PRODUCTION)
        assert sim.requests[endpoints.API_V1_PRODUCTION] == 2


async def test_truncated_json_is_bad_data(sim: Simulator, tmp_path: Path) -> None:
    async with make_client(sim.url, tmp_path) as client:
        await client.connect()
        sim.faults.malformed(1)
        with pytest.raises(BadEnvoyData, match="truncated"):
            await client.get_json(endpoints.API_V1_PRODUCTION)
        assert "wattsNow" in await client.get_json(endpoints.API_V1_PRODUCTION)


async def test_offline_envoy_is_unreachable(sim: Simulator, tmp_path: Path) -> None:
    clock = JumpClock()
    async with make_client(sim.url, tmp_path, clock) as client:
        await client.connect()
        sim.faults.offline()
        with pytest.raises(EnvoyUnreachable):
            await client.get_json(endpoints.API_V1_PRODUCTION)
        assert len(clock.slept) == 2  # three attempts
        sim.faults.clear()
        await sim.start_envoy()
        assert "wattsNow" in await client.get_json(endpoints.API_V1_PRODUCTION)


async def test_unreachable_at_connect(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    async with make_client(f"127.0.0.1:{port}", tmp_path) as client:
        with pytest.raises(EnvoyUnreachable):
            await client.connect()
        assert client.info is None


async def test_one_request_in_flight(sim: Simulator, tmp_path: Path) -> None:
    async with make_client(sim.url, tmp_path) as client:
        await client.connect()
        in_flight = 0
        highest = 0
        send = client._send_once

        async def counting_send(url: str, headers: Any, *request: Any, **options: Any) -> Any:
            nonlocal in_flight, highest
            in_flight += 1
            highest = max(highest, in_flight)
            try:
                return await send(url, headers, *request, **options)
            finally:
                in_flight -= 1

        client._send_once = counting_send  # type: ignore[method-assign]
        sim.faults.slow(0.02, 8)
        paths = [endpoints.API_V1_PRODUCTION, endpoints.API_V1_INVERTERS] * 4
        results = await asyncio.gather(*(client.get_json(p) for p in paths))
        assert len(results) == 8
        assert highest == 1


# --- certificate pinning (token firmware, https) -------------------------------------------------


@pytest.mark.parametrize("sim", [TOKEN_CAPTURE], indirect=True)
async def test_fingerprint_pinning(sim: Simulator, tmp_path: Path, logs: list[dict[str, Any]]) -> None:
    token = SecretStr(sim.issue_token("owner"))
    right = sim.envoy_cert_fingerprint
    host = sim.url.removeprefix("https://")
    colons = ":".join(right[i : i + 2] for i in range(0, len(right), 2)).upper()
    async with make_client(host, tmp_path, cert_fingerprint=colons, token=token) as client:
        await client.connect()
        assert client.base_url == sim.url
        assert "production" in await client.get_json(endpoints.PRODUCTION_JSON)

    wrong = "00" * 32
    info_reads = sim.requests[endpoints.INFO]
    clock = JumpClock()
    async with make_client(host, tmp_path, clock, cert_fingerprint=wrong, token=token) as client:
        with pytest.raises(EnvoyUnreachable, match="certificate fingerprint mismatch") as info:
            await client.connect()
        assert wrong in str(info.value)
        assert right in str(info.value)
        assert clock.slept == []  # not retried
    assert sim.requests[endpoints.INFO] == info_reads  # nothing was sent, no http fallback either


@pytest.mark.parametrize("sim", [TOKEN_CAPTURE], indirect=True)
async def test_self_signed_certificate_accepted_without_pin(sim: Simulator, tmp_path: Path) -> None:
    async with make_client(sim.url, tmp_path, token=SecretStr(sim.issue_token("owner"))) as client:
        await client.connect()
        probed = await probe(client)
        assert endpoints.PRODUCTION_JSON in probed.bodies
        assert endpoints.DEVICE_DATA in probed.bodies
        assert probed.features.detailed_inverters


# --- bodies no capture has: a small real HTTP server ---------------------------------------------


@pytest.fixture
async def odd_envoy() -> AsyncIterator[str]:
    info = (require_capture(LEGACY_CAPTURE) / "info").read_bytes()

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/info":
            return web.Response(body=info, content_type="text/xml")
        if path == "/error-doc":
            return web.json_response({"error": "Not available on this firmware"})
        if path == "/error-404":
            return web.json_response({"error": "404 - Not Found"})
        if path == "/data-with-error-key":
            return web.json_response({"error": 0, "wattsNow": 5, "wattHoursToday": 1})
        if path == "/redirect":
            raise web.HTTPMovedPermanently("https://localhost/home")
        if path == "/empty":
            return web.Response(body=b"", content_type="application/json")
        if path == "/forbidden-html":
            return web.Response(status=400, text="<html>bad</html>", content_type="text/html")
        return web.Response(status=404)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_error_documents_and_redirects(odd_envoy: str, tmp_path: Path) -> None:
    clock = JumpClock()
    async with make_client(odd_envoy, tmp_path, clock) as client:
        await client.connect()
        with pytest.raises(EnvoyNotFound, match="Not available"):
            await client.get_json("/error-doc")
        with pytest.raises(EnvoyNotFound) as info:
            await client.get_json("/error-404")
        assert info.value.status == 404
        # a data object that merely has an "error" field is data
        assert (await client.get_json("/data-with-error-key"))["wattsNow"] == 5
        with pytest.raises(EnvoyHttpError, match="not followed") as redirect:
            await client.get_json("/redirect")
        assert redirect.value.status == 301
        with pytest.raises(BadEnvoyData, match="empty"):
            await client.get_json("/empty")
        with pytest.raises(EnvoyHttpError) as bad_request:
            await client.get_json("/forbidden-html")
        assert bad_request.value.status == 400
        assert clock.slept == []  # none of these is retried


@pytest.mark.parametrize("profile", ["metered-3phase-iq", "metered-1phase-acb", "legacy-unmetered"])
async def test_generated_profiles_connect_and_probe(profile: str, tmp_path: Path) -> None:
    """Needs no shared capture: the simulator's generated sites, token and legacy."""
    async with Simulator(SimulatorConfig(profile=profile)) as simulator:
        token = SecretStr(simulator.issue_token("owner")) if simulator.token_auth else SecretStr("")
        async with make_client(simulator.url, tmp_path, token=token) as client:
            info = await client.connect()
            assert info.serial == simulator.serial
            assert info.auth_mode == ("token" if simulator.token_auth else "legacy")
            features = (await probe(client)).features
            assert features.endpoints
            assert client.auth_status.ok
            for path in sorted(features.endpoints):
                assert await client.get_json(path) is not None
