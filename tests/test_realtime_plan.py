"""The real-time cadence in the read plan: one more consumer whose CT body the system cadence reuses;
`check --plan` says which source and why, and the daemon builds the same planner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from envoy2mqtt.bridge import EnvoyStatus
from envoy2mqtt.check import check_envoy, read_planner, render_plan
from envoy2mqtt.clock import ManualClock
from envoy2mqtt.config import EnvoySettings, RealtimeSettings, Settings
from envoy2mqtt.envoy import endpoints
from envoy2mqtt.mqtt.publisher import Publisher
from envoy2mqtt.mqtt.topics import Topics
from envoy2mqtt.poller import EnvoyPoller
from envoy2mqtt.readers import SYSTEM
from envoy2mqtt.realtime.plan import REALTIME
from envoy2mqtt.simulator import Simulator, SimulatorConfig
from tests.conftest import require_capture
from tests.test_normalize_support import load_capture


def _settings(tmp_path: Path, enabled: bool = True, interval: float = 5) -> Settings:
    return Settings(
        state_dir=tmp_path,
        envoy=[EnvoySettings(host="192.0.2.1")],
        realtime=RealtimeSettings(enabled=enabled, interval=interval),
    )


def test_a_real_time_ct_read_spares_the_system_cadence_its_own(tmp_path: Path) -> None:
    features = load_capture(require_capture("7.6.175_with_cts")).features
    without = read_planner(features, _settings(tmp_path, enabled=False)).requests_per_hour()
    assert without[SYSTEM][endpoints.METERS_READINGS] == 60
    with_meters = read_planner(features, _settings(tmp_path), "meters").requests_per_hour()
    assert with_meters[REALTIME] == {endpoints.METERS_READINGS: 720}
    assert with_meters[SYSTEM].get(endpoints.METERS_READINGS, 0) == 0  # reused, never read twice
    assert sum(with_meters[SYSTEM].values()) == sum(without[SYSTEM].values()) - 60


def test_livedata_is_its_own_endpoint_in_the_plan(tmp_path: Path) -> None:
    features = load_capture(require_capture("8.2.127_with_3cts_and_battery_split")).features
    plan = read_planner(features, _settings(tmp_path, interval=1), "livedata").requests_per_hour()
    assert plan[REALTIME] == {"/ivp/livedata/status": 3600}
    assert plan[SYSTEM][endpoints.METERS_READINGS] == 60  # the minute cycle still reads its CTs


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("metered-1phase-acb", "real-time: meters every 5 s"),
        ("metered-3phase-iq", "real-time: livedata every 5 s, plus 6 stream renewals/h"),
        ("legacy-unmetered", "real-time: no source on this Envoy"),
    ],
)
async def test_check_plan_says_which_source_and_why_as_the_daemon_plans_it(
    profile: str, expected: str, tmp_path: Path
) -> None:
    async with Simulator(SimulatorConfig(profile=profile)) as sim:
        envoy = EnvoySettings(host=sim.url, token=sim.issue_token() if sim.token_auth else "")
        settings = Settings(state_dir=tmp_path, envoy=[envoy], realtime=RealtimeSettings(enabled=True))
        result = await check_envoy(envoy, settings)
        text = render_plan(result)
        assert expected in text, text
        assert result["realtime"]["reason"] in text
        topics = Topics(settings.mqtt.base_topic, settings.mqtt.discovery_prefix)
        poller = EnvoyPoller(envoy, settings, Publisher(settings.mqtt, topics), topics, clock=ManualClock())
        try:
            await poller.connect()
            assert poller.planner is not None
            assert poller.realtime_choice is not None
            assert poller.realtime_choice.source == result["realtime"]["source"]
            assert list(poller.planner.intervals) == list(result["plan"]["cadences"])
            for consumer in poller.planner.intervals:
                planned = [s.path for s in poller.planner.steps(consumer)]
                assert list(result["plan"]["cadences"][consumer]["endpoints"]) == planned
        finally:
            await poller.close()


async def test_check_with_real_time_off_sends_no_extra_request(tmp_path: Path) -> None:
    async with Simulator(SimulatorConfig(profile="metered-3phase-iq")) as sim:
        envoy = EnvoySettings(host=sim.url, token=sim.issue_token())
        settings = Settings(state_dir=tmp_path, envoy=[envoy])
        result = await check_envoy(envoy, settings)
        assert "/ivp/livedata/status" not in sim.requests
        assert REALTIME not in result["plan"]["cadences"]
        assert "real-time: off" in render_plan(result)
        assert "it would use livedata" in render_plan(result)


def test_bridge_info_carries_the_real_time_cadence_and_state() -> None:
    values: dict[str, Any] = {
        "id": "E1", "name": "Envoy E1", "serial": "E1", "firmware": "D8.2.4345", "part_number": None,
        "auth_mode": "token", "token_type": "owner", "token_expires_at": None, "available": True,
        "ready": True, "ready_reason": "ok", "last_poll_ok": None, "last_error": None,
        "system_interval": 60, "device_interval": 300,
    }  # fmt: skip
    off = EnvoyStatus(**values).info()
    assert off["cadences"] == {"system": 60, "devices": 300}
    assert "realtime" not in off
    fields = {"realtime_source": "livedata", "realtime_interval": 4.0, "realtime_state": "running"}
    on = EnvoyStatus(**values, realtime=fields).info()
    assert on["cadences"] == {"system": 60, "devices": 300, "realtime": 4.0}
    assert on["realtime"] == {"source": "livedata", "state": "running"}
