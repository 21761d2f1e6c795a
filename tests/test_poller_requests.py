"""What each cadence asks of the Envoy, counted by the simulator: the requests the README documents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from envoy2mqtt.clock import ManualClock
from envoy2mqtt.config import EnvoySettings, Settings
from envoy2mqtt.envoy import endpoints
from envoy2mqtt.mqtt.publisher import Publisher
from envoy2mqtt.mqtt.topics import Topics
from envoy2mqtt.poller import EnvoyPoller
from envoy2mqtt.simulator import Simulator, SimulatorConfig
from tests.conftest import require_capture


@asynccontextmanager
async def polling(
    config: SimulatorConfig, state_dir: Path
) -> AsyncIterator[tuple[Simulator, EnvoyPoller, ManualClock]]:
    async with Simulator(config) as sim:
        envoy = EnvoySettings(host=sim.url, token=sim.issue_token() if sim.token_auth else "")
        settings = Settings(state_dir=state_dir, envoy=[envoy])
        topics = Topics(settings.mqtt.base_topic, settings.mqtt.discovery_prefix)
        clock = ManualClock()
        # The publisher never connects: publish() keeps the last state per topic, which is all we read.
        poller = EnvoyPoller(envoy, settings, Publisher(settings.mqtt, topics), topics, clock=clock)
        try:
            await poller.connect()
            yield sim, poller, clock
        finally:
            await poller.close()


async def test_the_device_cycle_reuses_the_system_cycles_battery_power(tmp_path: Path) -> None:
    async with polling(SimulatorConfig(profile="metered-3phase-iq"), tmp_path) as (sim, poller, clock):
        clock.advance(poller.polling.device_interval)  # the probe's bodies are now too old for any cadence
        sim.requests.clear()
        await poller._system_tick()
        assert sim.requests[endpoints.ENSEMBLE_POWER] == 1
        sim.requests.clear()
        await poller._device_tick()
        assert poller.failures == 0, poller.last_error
        assert sim.requests[endpoints.ENSEMBLE_POWER] == 0  # read by the system cycle moments ago
        assert sim.requests[endpoints.ENSEMBLE_INVENTORY] == 1
        powers = [p.get("power") for p in poller.battery_payloads.values()]
        assert powers
        assert all(isinstance(p, int | float) for p in powers)

        clock.advance(poller.polling.system_interval + 1)  # the system cycle's body is now too old
        sim.requests.clear()
        await poller._device_tick()
        assert sim.requests[endpoints.ENSEMBLE_POWER] == 1
        assert all(isinstance(p.get("power"), int | float) for p in poller.battery_payloads.values())


async def test_firmware_3_7_reads_one_html_page_a_minute(tmp_path: Path) -> None:
    config = SimulatorConfig(capture_dir=require_capture("3.7.0"))
    async with polling(config, tmp_path) as (sim, poller, clock):
        sim.requests.clear()
        await poller._system_tick()  # right after the probe: its page is reused, nothing read twice
        assert dict(sim.requests) == {}
        clock.advance(poller.polling.system_interval)
        await poller._system_tick()
        assert poller.failures == 0, poller.last_error
        assert dict(sim.requests) == {endpoints.PRODUCTION_HTML: 1}
        assert poller.system_payload is not None
        assert poller.system_payload["production_power"] == 6630
        sim.requests.clear()
        await poller._device_tick()
        assert dict(sim.requests) == {}  # no per-device endpoint on this firmware
        assert poller.failures == 0


async def test_a_ct_less_envoy_reads_production_json_once_per_device_interval(tmp_path: Path) -> None:
    async with polling(SimulatorConfig(profile="legacy-unmetered"), tmp_path) as (sim, poller, clock):
        system, device = poller.polling.system_interval, poller.polling.device_interval
        clock.advance(device)
        sim.requests.clear()
        # an hour of both cadences, as the daemon ticks them (the device cycle moments after the system one)
        for minute in range(int(3600 / system)):
            await poller._system_tick()
            if minute % int(device / system) == 0:
                await poller._device_tick()
            assert poller.failures == 0, poller.last_error
            assert poller.system_payload is not None
            assert poller.system_payload["inverters_count"] is not None
            clock.advance(system)
        # inverter data changes every 5 minutes: both production bodies once per device interval
        assert sim.requests[endpoints.API_V1_PRODUCTION] == 3600 / device
        assert sim.requests[endpoints.PRODUCTION_JSON] == 3600 / device
        assert sum(sim.requests.values()) <= 60  # about one request a minute in all
