"""Today's production from the lifetime counter since local midnight, where the Envoy reports no daily value."""

from __future__ import annotations

from pathlib import Path

from envoy2mqtt.clock import ManualClock
from envoy2mqtt.config import EnvoySettings, Settings
from envoy2mqtt.derived_daily import TODAY, DerivedDaily, derives_daily
from envoy2mqtt.mqtt.publisher import Publisher
from envoy2mqtt.mqtt.topics import Topics
from envoy2mqtt.poller import EnvoyPoller
from envoy2mqtt.simulator import Simulator, SimulatorConfig
from envoy2mqtt.state import StateFile
from tests.conftest import require_capture

MIDNIGHT = 1_780_012_800.0  # 2026-05-29 00:00 UTC
LIFE = "production_energy_lifetime"


def test_nothing_before_the_first_midnight_then_the_lifetime_since_midnight(tmp_path: Path) -> None:
    daily = DerivedDaily(StateFile(tmp_path / "daily.json"))
    evening = daily.apply({LIFE: 1000.0}, MIDNIGHT - 600)
    assert TODAY not in evening  # the bridge did not see the day start: no value rather than a wrong one
    assert not daily.active
    night = daily.apply({LIFE: 1000.0}, MIDNIGHT + 60)
    assert night[TODAY] == 0.0
    noon = daily.apply({LIFE: 4321.5}, MIDNIGHT + 12 * 3600)
    assert noon[TODAY] == 3321.5
    # a restart during the day goes on from the saved baseline
    again = DerivedDaily(StateFile(tmp_path / "daily.json"))
    assert again.apply({LIFE: 5000.0}, MIDNIGHT + 13 * 3600)[TODAY] == 4000.0
    # the next midnight starts over
    again.apply({LIFE: 6000.0}, MIDNIGHT + 86400 - 1800)
    assert again.apply({LIFE: 6000.0}, MIDNIGHT + 86400 + 30)[TODAY] == 0.0


def test_a_bridge_down_across_midnight_waits_for_the_next_one(tmp_path: Path) -> None:
    daily = DerivedDaily(StateFile(tmp_path / "daily.json"))
    daily.apply({LIFE: 1000.0}, MIDNIGHT - 600)
    later = daily.apply({LIFE: 3000.0}, MIDNIGHT + 10 * 3600)  # down from 23:50 to 10:00
    assert TODAY not in later
    daily.apply({LIFE: 5000.0}, MIDNIGHT + 86400 - 60)
    assert daily.apply({LIFE: 5000.0}, MIDNIGHT + 86400 + 60)[TODAY] == 0.0
    # once announced, a later gap keeps the key (null) until the next midnight: the entity stays
    gap = daily.apply({LIFE: 7000.0}, MIDNIGHT + 3 * 86400 + 12 * 3600)
    assert gap[TODAY] is None


def test_local_midnight_follows_the_envoys_timezone(tmp_path: Path) -> None:
    daily = DerivedDaily(StateFile(tmp_path / "daily.json"), "Europe/Berlin")  # UTC+2 in May
    daily.apply({LIFE: 1.0}, MIDNIGHT - 2 * 3600 - 60)
    assert daily.apply({LIFE: 1.0}, MIDNIGHT - 2 * 3600 + 60)[TODAY] == 0.0


async def test_a_metered_envoy_without_daily_values_publishes_a_derived_today(tmp_path: Path) -> None:
    config = SimulatorConfig(capture_dir=require_capture("8.2.4264_metered_noct"))
    async with Simulator(config) as sim:
        envoy = EnvoySettings(host=sim.url, token=sim.issue_token(), timezone="UTC")
        settings = Settings(state_dir=tmp_path, envoy=[envoy])
        topics = Topics(settings.mqtt.base_topic, settings.mqtt.discovery_prefix)
        clock = ManualClock(start=MIDNIGHT - 120)
        poller = EnvoyPoller(envoy, settings, Publisher(settings.mqtt, topics), topics, clock=clock)
        try:
            await poller.connect()
            assert poller.features is not None
            assert derives_daily(poller.features)
            await poller.poll_system()
            assert poller.system_payload is not None
            assert TODAY not in poller.system_payload
            assert "derived_daily" not in poller.gateway_payload()
            clock.advance(180)  # past midnight
            await poller.poll_system()
            assert poller.system_payload[TODAY] == 0.0  # the capture's counter does not move
            assert poller.gateway_payload()["derived_daily"] == [TODAY]
        finally:
            await poller.close()


async def test_envoys_with_their_own_daily_value_derive_nothing(tmp_path: Path) -> None:
    async with Simulator(SimulatorConfig(profile="metered-3phase-iq")) as sim:
        envoy = EnvoySettings(host=sim.url, token=sim.issue_token())
        settings = Settings(state_dir=tmp_path, envoy=[envoy])
        topics = Topics(settings.mqtt.base_topic, settings.mqtt.discovery_prefix)
        poller = EnvoyPoller(envoy, settings, Publisher(settings.mqtt, topics), topics, clock=ManualClock())
        try:
            await poller.connect()
            assert poller.derived is None
        finally:
            await poller.close()
