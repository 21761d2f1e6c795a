"""Token authentication end to end: the real client against the simulator's Envoy and fake cloud."""

from __future__ import annotations

import dataclasses
import json
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs
from yarl import URL

from envoy2mqtt.clock import ManualClock
from envoy2mqtt.config import CloudSettings, EnvoySettings, TokenSettings
from envoy2mqtt.envoy import endpoints
from envoy2mqtt.envoy.auth.store import TokenStore
from envoy2mqtt.envoy.client import EnvoyClient
from envoy2mqtt.errors import EnvoyAuthError, MfaRequired, TokenRefreshError, TokenRejected
from envoy2mqtt.simulator import Simulator, SimulatorConfig
from tests.conftest import require_capture

DAY = 86400.0
TOKEN_CAPTURE = "8.2.4345_with_device_data"
DATA = endpoints.PRODUCTION_JSON


class JumpClock(ManualClock):
    """Retry pauses move time forward at once, so a test never waits for real."""

    async def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
        await super().sleep(0)


@pytest.fixture
def clock() -> JumpClock:
    return JumpClock()


class Secrets:
    """Collects every secret a test handles; the fixture checks none reached a log line or an error."""

    def __init__(self) -> None:
        self.values: set[str] = set()
        self.errors: list[str] = []
        self.store_dirs: list[Path] = []
        self.logs: list[dict[str, Any]] = []

    def add(self, *values: str) -> None:
        self.values.update(v for v in values if v)

    def error(self, exc: BaseException) -> BaseException:
        self.errors.append(f"{exc!s} {exc!r}")
        return exc


@pytest.fixture
def secrets() -> Iterator[Secrets]:
    found = Secrets()
    with capture_logs() as logs:
        found.logs = logs
        yield found
    for directory in found.store_dirs:
        for path in directory.glob("tokens/*.json"):
            found.add(json.loads(path.read_text())["token"])
    text = repr(logs) + "\n".join(found.errors)
    assert logs, "nothing was logged: the check below would prove nothing"
    for value in found.values:
        assert value not in text


@pytest.fixture
async def sim(clock: JumpClock, request: pytest.FixtureRequest) -> AsyncIterator[Simulator]:
    options: dict[str, Any] = getattr(request, "param", {})
    # A real token-firmware Envoy's capture (the generated profiles would do as well).
    config = SimulatorConfig(capture_dir=require_capture(TOKEN_CAPTURE), **options)
    async with Simulator(config, clock=clock) as simulator:
        yield simulator


def cloud_settings(sim: Simulator) -> CloudSettings:
    return CloudSettings(login_url=sim.login_url, token_url=sim.token_url, ca_file=sim.ca_file, timeout=10)


def envoy_settings(sim: Simulator, *, cloud: bool = True, **extra: Any) -> EnvoySettings:
    if cloud:
        extra.setdefault("enlighten_username", sim.enlighten_username)
        extra.setdefault("enlighten_password", SecretStr(sim.enlighten_password))
    return EnvoySettings(host=sim.url, **extra)


def make_client(
    sim: Simulator,
    state_dir: Path,
    clock: JumpClock,
    secrets: Secrets,
    *,
    token_settings: TokenSettings | None = None,
    **envoy: Any,
) -> EnvoyClient:
    secrets.add(sim.enlighten_password)
    secrets.store_dirs.append(state_dir)
    return EnvoyClient(
        envoy_settings(sim, **envoy), cloud_settings(sim), token_settings or TokenSettings(), state_dir, clock
    )


def check_jwt_calls(sim: Simulator) -> int:
    return sim.requests[endpoints.CHECK_JWT]


async def test_pasted_token_without_cloud(
    sim: Simulator, tmp_path: Path, clock: JumpClock, secrets: Secrets
) -> None:
    token = sim.issue_token("owner")
    secrets.add(token)
    async with make_client(sim, tmp_path, clock, secrets, cloud=False, token=SecretStr(token)) as client:
        info = await client.connect()
        assert info.serial == sim.serial
        assert info.auth_mode == "token"
        data = await client.get_json(DATA)
        assert "production" in data
        await client.get_json(DATA)
        status = client.auth_status
        assert status.ok
        assert status.mode == "token"
        assert status.token_type == "owner"
        assert status.token_expires_at == pytest.approx(clock.time() + 365 * DAY, abs=5)
        # validated exactly once, then the session cookie rides along with the bearer token
        assert check_jwt_calls(sim) == 1
        assert client._session is not None
        cookies = client._session.cookie_jar.filter_cookies(URL(client.base_url or ""))
        assert "sessionId" in cookies
    assert sum(sim.cloud_calls.values()) == 0


async def test_cloud_token_fetch_store_and_reuse_after_restart(
    sim: Simulator, tmp_path: Path, clock: JumpClock, secrets: Secrets
) -> None:
    async with make_client(sim, tmp_path, clock, secrets) as client:
        await client.connect()
        assert sim.cloud_calls == {"login": 1, "tokens": 1}
        await client.get_json(DATA)
        assert client.auth_status.ok
        store_file = TokenStore(tmp_path).path_for(sim.serial)
        assert stat.S_IMODE(store_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(store_file.parent.stat().st_mode) == 0o700
    # A restart: a new client on the same state directory asks the cloud nothing.
    async with make_client(sim, tmp_path, clock, secrets) as client:
        await client.connect()
        await client.get_json(DATA)
        assert client.auth_status.ok
    assert sim.cloud_calls == {"login": 1, "tokens": 1}
    assert check_jwt_calls(sim) == 2  # each process validates its token once


@pytest.mark.parametrize("sim", [{"token_type": "installer", "token_lifetime": 12 * 3600}], indirect=True)
async def test_proactive_refresh_of_installer_token(
    sim: Simulator, tmp_path: Path, clock: JumpClock, secrets: Secrets
) -> None:
    async with make_client(sim, tmp_path, clock, secrets) as client:
        await client.connect()
        manager = client.token_manager
        assert manager is not None
        first_expiry = client.auth_status.token_expires_at
        assert client.auth_status.token_type == "installer"
        assert not await manager.refresh_if_due()
        clock.advance(10 * 3600)  # 2 h left: not yet (60 minutes before expiry by default)
        assert not await manager.refresh_if_due()
        assert sim.cloud_calls["tokens"] == 1
        clock.advance(3600 + 60)  # 59 minutes left
        assert await manager.refresh_if_due()
        assert sim.cloud_calls["tokens"] == 2
        assert client.auth_status.token_expires_at == pytest.approx(
            (first_expiry or 0) + 11 * 3600 + 60, abs=5
        )
        assert not await manager.refresh_if_due()  # the new one is far from expiry
        await client.get_json(DATA)
        stored = TokenStore(tmp_path).load(sim.serial, clock.time())
        assert stored is not None
        assert stored.claims.expires_at == client.auth_status.token_expires_at


async def test_proactive_refresh_of_owner_token(
    sim: Simulator, tmp_path: Path, clock: JumpClock, secrets: Secrets
) -> None:
    async with make_client(
        sim, tmp_path, clock, secrets, token_settings=TokenSettings(refresh_days_before_expiry=30)
    ) as client:
        await client.connect()
        manager = client.token_manager
        assert manager is not None
        clock.advance(334 * DAY)  # 31 days left
        assert not await manager.refresh_if_due()
        clock.advance(2 * DAY)  # 29 days left
        assert await manager.refresh_if_due()
        assert sim.cloud_calls["tokens"] == 2
        await client.get_json(DATA)


async def test_unauthorized_storm_backs_off(
    sim: Simulator, tmp_path: Path, clock: JumpClock, secrets: Secrets
) -> None:
    settings = TokenSettings(max_backoff=600)
    async with make_client(sim, tmp_path, clock, secrets, token_settings=settings) as client:
        await client.connect()
        await client.get_json(DATA)
        assert sim.cloud_calls["tokens"] == 1
        sim.faults.unauthorized(100_000)  # everything answers 401, check_jwt included

        def counts() -> tuple[int, int, int]:
            return sim.requests[DATA], check_jwt_calls(sim), sim.cloud_calls["tokens"]

        data0, jwt0, tokens0 = counts()
        with pytest.raises(EnvoyAuthError) as first:
            await client.get_json(DATA)
        secrets.error(first.value)
        # one data request, one re-validation of the current token, one new token from the cloud
        # (validated once with check_jwt before use), then the Envoy is marked unauthenticated
        assert counts() == (data0 + 1, jwt0 + 2, tokens0 + 1)
        status = client.auth_status
        assert not status.ok
        assert status.reason
        # meanwhile: errors without a single network call
        for _ in range(20):
            with pytest.raises(EnvoyAuthError, match="next attempt"):
                await client.get_json(DATA)
        assert counts() == (data0 + 1, jwt0 + 2, tokens0 + 1)

        delays = [60, 120, 240, 480, 600, 600]  # doubling, capped at max_backoff
        for step, delay in enumerate(delays, start=1):
            clock.advance(delay - 1)
            with pytest.raises(EnvoyAuthError):
                await client.get_json(DATA)
            assert counts() == (data0 + step, jwt0 + 2 * step, tokens0 + step)
            clock.advance(1)
            with pytest.raises(EnvoyAuthError):
                await client.get_json(DATA)
            assert counts() == (data0 + step + 1, jwt0 + 2 * (step + 1), tokens0 + step + 1)

        # The Envoy accepts tokens again: the next step recovers and the backoff resets.
        sim.faults.clear()
        clock.advance(600)
        assert "production" in await client.get_json(DATA)
        assert client.auth_status.ok
        assert client.auth_status.reason is None
        assert client._firmware_check_requested  # an auth failure asks for a fresh /info


async def test_stale_session_recovers_with_one_revalidation(
    sim: Simulator, tmp_path: Path, clock: JumpClock, secrets: Secrets
) -> None:
    async with make_client(sim, tmp_path, clock, secrets) as client:
        await client.connect()
        await client.get_json(DATA)
        jwt_before = check_jwt_calls(sim)
        sim.faults.unauthorized(1)  # e.g. the Envoy rebooted and forgot its sessions
        assert "production" in await client.get_json(DATA)
        assert check_jwt_calls(sim) == jwt_before + 1
        assert sim.cloud_calls["tokens"] == 1  # no new token needed
        assert client.auth_status.ok


async def test_garbage_token_is_rejected_and_the_old_one_kept(
    sim: Simulator, tmp_path: Path, clock: JumpClock, secrets: Secrets
) -> None:
    async with make_client(sim, tmp_path, clock, secrets) as client:
        await client.connect()
        store = TokenStore(tmp_path)
        before = store.path_for(sim.serial).read_text()
        expiry = client.auth_status.token_expires_at
        sim.cloud.garbage_token = True
        clock.advance(340 * DAY)
        manager = client.token_manager
        assert manager is not None
        assert not await manager.refresh_if_due()
        assert sim.cloud_calls["tokens"] == 2
        assert store.path_for(sim.serial).read_text() == before
        assert client.auth_status.token_expires_at == expiry
        assert client.auth_status.ok  # the current token is still valid
        assert "not a well-formed JWT" in (client.auth_status.reason or "")
        await client.get_json(DATA)  # polling goes on with the old token
        # no second attempt before the backoff step has passed
        assert not await manager.refresh_if_due()
        assert sim.cloud_calls["tokens"] == 2
        clock.advance(61)
        sim.cloud.garbage_token = False
        assert await manager.refresh_if_due()
        assert client.auth_status.token_expires_at != expiry


async def test_garbage_token_at_first_start(
    sim: Simulator, tmp_path: Path, clock: JumpClock, secrets: Secrets
) -> None:
    sim.cloud.garbage_token = True
    async with make_client(sim, tmp_path, clock, secrets) as client:
        with pytest.raises(TokenRejected, match="not a well-formed JWT") as info:
            await client.connect()
        secrets.error(info.value)
        assert client.info is not None  # /info was read before authentication failed
        assert not client.auth_status.ok
        assert not TokenStore(tmp_path).path_for(sim.serial).exists()
        with pytest.raises(EnvoyAuthError):
            await client.get_json(DATA)
        assert sim.cloud_calls["tokens"] == 1  # the backoff holds the cloud off


async def test_cloud_down_with_a_valid_cached_token(
    sim: Simulator, tmp_path: Path, clock: JumpClock, secrets: Secrets
) -> None:
    async with make_client(sim, tmp_path, clock, secrets) as client:
        await client.connect()
    sim.cloud.down = True
    calls = sum(sim.cloud_calls.values())
    async with make_client(sim, tmp_path, clock, secrets) as client:
        await client.connect()
        for _ in range(3):
            await client.get_json(DATA)
        assert sum(sim.cloud_calls.values()) == calls
        clock.advance(340 * DAY)  # refresh due, cloud still down
        manager = client.token_manager
        assert manager is not None
        assert not await manager.refresh_if_due()
        assert "unreachable" in (client.auth_status.reason or "") or "503" in (
            client.auth_status.reason or ""
        )
        await client.get_json(DATA)
        assert client.auth_status.ok


async def test_mfa_message(sim: Simulator, tmp_path: Path, clock: JumpClock, secrets: Secrets) -> None:
    sim.cloud.mfa = True
    async with make_client(sim, tmp_path, clock, secrets) as client:
        with pytest.raises(MfaRequired) as info:
            await client.connect()
        secrets.error(info.value)
        message = str(info.value)
        assert "multi-factor authentication" in message
        assert "Disable MFA" in message
        assert "envoy.token" in message
        assert sim.cloud_calls == {"login": 1}
        assert not client.auth_status.ok
        assert "multi-factor" in (client.auth_status.reason or "")
        # the poller reconnects: no new cloud call before the backoff step has passed
        with pytest.raises(TokenRefreshError, match="not asking the Enphase cloud again"):
            await client.connect()
        assert sim.cloud_calls == {"login": 1}
        assert "multi-factor" in (client.auth_status.reason or "")
        clock.advance(60)
        with pytest.raises(MfaRequired):
            await client.connect()
        assert sim.cloud_calls == {"login": 2}


async def test_wrong_enlighten_password(
    sim: Simulator, tmp_path: Path, clock: JumpClock, secrets: Secrets
) -> None:
    secrets.add("not-the-password")
    async with make_client(
        sim, tmp_path, clock, secrets, enlighten_password=SecretStr("not-the-password")
    ) as client:
        with pytest.raises(Exception, match="enlighten_password") as info:
            await client.connect()
        secrets.error(info.value)


async def test_pasted_token_for_another_serial(
    sim: Simulator, tmp_path: Path, clock: JumpClock, secrets: Secrets
) -> None:
    token = sim.issue_token("owner", serial="999999999999")
    secrets.add(token)
    async with make_client(sim, tmp_path, clock, secrets, cloud=False, token=SecretStr(token)) as client:
        with pytest.raises(TokenRejected) as info:
            await client.connect()
        secrets.error(info.value)
        assert "999999999999" in str(info.value)
        assert sim.serial in str(info.value)
        assert check_jwt_calls(sim) == 0  # rejected locally


async def test_cloud_token_for_a_wrongly_configured_serial(
    sim: Simulator, tmp_path: Path, clock: JumpClock, secrets: Secrets
) -> None:
    async with make_client(sim, tmp_path, clock, secrets, serial="999999999999") as client:
        with pytest.raises(TokenRejected) as info:
            await client.connect()
        secrets.error(info.value)
        assert "999999999999" in str(info.value)
        assert sim.serial in str(info.value)


async def test_pasted_token_expiry_warning_then_error(
    sim: Simulator, tmp_path: Path, clock: JumpClock, secrets: Secrets
) -> None:
    token = sim.issue_token("owner", lifetime=10 * DAY)
    secrets.add(token)
    async with make_client(sim, tmp_path, clock, secrets, cloud=False, token=SecretStr(token)) as client:
        await client.connect()
        await client.get_json(DATA)
        status = client.auth_status
        assert status.ok
        assert "expires" in (status.reason or "")
        warnings = [e for e in secrets.logs if e["event"] == "token_expiring"]
        assert len(warnings) == 1
        assert warnings[0]["log_level"] == "warning"
        clock.advance(10 * DAY + 1)
        with pytest.raises(EnvoyAuthError) as info:
            await client.get_json(DATA)
        secrets.error(info.value)
        assert "expired" in str(info.value)
        assert not client.auth_status.ok
        assert "envoy.token" in (client.auth_status.reason or "")


async def test_pasted_token_replaced_by_cloud_when_rejected(
    sim: Simulator, tmp_path: Path, clock: JumpClock, secrets: Secrets
) -> None:
    bogus = sim.issue_token("owner")[:-4] + "AAAA"  # right shape and claims, wrong signature
    secrets.add(bogus)
    async with make_client(sim, tmp_path, clock, secrets, token=SecretStr(bogus)) as client:
        await client.connect()
        assert check_jwt_calls(sim) == 2  # the pasted one (refused), then the cloud's
        assert sim.cloud_calls["tokens"] == 1
        await client.get_json(DATA)


async def test_firmware_check_interval_and_change(
    sim: Simulator, tmp_path: Path, clock: JumpClock, secrets: Secrets
) -> None:
    async with make_client(sim, tmp_path, clock, secrets) as client:
        client.set_firmware_check_interval(3600)
        await client.connect()
        info_reads = sim.requests[endpoints.INFO]
        assert not await client.refresh_firmware_if_due()
        assert sim.requests[endpoints.INFO] == info_reads
        clock.advance(3600)
        assert not await client.refresh_firmware_if_due()  # read again, unchanged
        assert sim.requests[endpoints.INFO] == info_reads + 1
        # as if the Envoy had run older firmware when we connected
        assert client.info is not None
        client.info = dataclasses.replace(client.info, firmware="D7.6.175", version=(7, 6, 175))
        clock.advance(3600)
        assert await client.refresh_firmware_if_due()
        assert client.info.firmware == sim.firmware
        await client.get_json(DATA)


async def test_cloud_certificate_is_verified(
    sim: Simulator, tmp_path: Path, clock: JumpClock, secrets: Secrets
) -> None:
    secrets.add(sim.enlighten_password)
    untrusted = CloudSettings(login_url=sim.login_url, token_url=sim.token_url, timeout=10)  # no test CA
    settings = envoy_settings(sim)
    async with EnvoyClient(settings, untrusted, TokenSettings(), tmp_path, clock) as client:
        with pytest.raises(TokenRefreshError, match="unreachable") as info:
            await client.connect()
        secrets.error(info.value)
    assert sum(sim.cloud_calls.values()) == 0  # the TLS handshake failed before any request


async def test_force_refresh(sim: Simulator, tmp_path: Path, clock: JumpClock, secrets: Secrets) -> None:
    async with make_client(sim, tmp_path, clock, secrets) as client:
        await client.connect()
        manager = client.token_manager
        assert manager is not None
        clock.advance(10)
        await manager.force_refresh()
        assert sim.cloud_calls["tokens"] == 2
        sim.cloud.down = True
        with pytest.raises(TokenRefreshError) as info:
            await manager.force_refresh()
        secrets.error(info.value)
        await client.get_json(DATA)  # the current token stays in use
    token = sim.issue_token()
    secrets.add(token)
    other_dir = tmp_path / "pasted"
    async with make_client(sim, other_dir, clock, secrets, cloud=False, token=SecretStr(token)) as c:
        await c.connect()
        assert c.token_manager is not None
        with pytest.raises(TokenRefreshError, match="enlighten_username"):
            await c.token_manager.force_refresh()
