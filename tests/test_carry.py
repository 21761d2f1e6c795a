"""Values carried between two reads of production.json / secctrl, against the simulator's own counters.

The daemon reads production.json and /ivp/ensemble/secctrl once per device interval on Envoys with CTs
and IQ Batteries; the minutes between carry their values from the CT readings and ensemble/power
(`envoy2mqtt.carry`). Here a poller lives a simulated day (midnight included) on the live simulator,
and after every system cycle its published values are compared with what a fresh read of every body
at the same simulated instant gives. bench/README.md states the largest differences.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from envoy2mqtt.clock import ManualClock
from envoy2mqtt.config import EnvoySettings, Settings
from envoy2mqtt.envoy import endpoints as ep
from envoy2mqtt.envoy.client import EnvoyClient
from envoy2mqtt.mqtt.publisher import Publisher
from envoy2mqtt.mqtt.topics import Topics
from envoy2mqtt.normalize import normalize_system
from envoy2mqtt.poller import EnvoyPoller
from envoy2mqtt.readers import DEVICE, SYSTEM, probe, raw_system_data
from envoy2mqtt.simulator import Simulator, SimulatorConfig

pytestmark = pytest.mark.timeout(600)

ENERGY_TOLERANCE = 0.01  # Wh: the carried counters add the same CT deltas the simulator integrates
POWER_TOLERANCE = 0.01  # W
BATTERY_ENERGY_TOLERANCE = 5.0  # Wh (1.6 Wh measured; the charge moves by 10 Wh a minute here)


def flatten(payload: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in payload.items():
        if isinstance(value, bool) or key == "timestamp":
            continue
        if isinstance(value, int | float):
            out[key] = float(value)
        elif key == "phases" and isinstance(value, dict):
            for line, values in value.items():
                for name, number in values.items():
                    if isinstance(number, int | float):
                        out[f"phases.{line}.{name}"] = float(number)
    return out


async def fresh_payload(
    client: EnvoyClient, features: Any, info: Any, held: dict[str, Any]
) -> dict[str, Any]:
    bodies = dict(held)
    for path in (ep.PRODUCTION_JSON, ep.METERS_READINGS, ep.ENSEMBLE_POWER, ep.ENSEMBLE_SECCTRL):
        bodies[path] = await client.get_body(path)
    return normalize_system(raw_system_data(bodies), info, features).payload()


async def test_a_simulated_day_of_carried_values_matches_the_simulators_counters(tmp_path: Path) -> None:
    clock = ManualClock()
    config = SimulatorConfig(profile="metered-3phase-iq", live=True)
    async with Simulator(config, clock=clock) as sim:
        envoy = EnvoySettings(host=sim.url, token=sim.issue_token())
        settings = Settings(state_dir=tmp_path / "state", envoy=[envoy])
        topics = Topics(settings.mqtt.base_topic, settings.mqtt.discovery_prefix)
        poller = EnvoyPoller(envoy, settings, Publisher(settings.mqtt, topics), topics, clock=clock)
        reference = EnvoyClient(envoy, settings.enphase_cloud, settings.token, tmp_path / "ref", clock=clock)
        try:
            await poller.connect()
            await reference.connect()
            probed = await probe(reference)
            held = {p: probed.bodies.get(p) for p in (ep.METERS, ep.ENSEMBLE_INVENTORY)}
            assert poller.carry is not None
            assert poller.carry.production
            assert poller.carry.battery
            assert poller.planner is not None
            system_reads = {s.path: s.need.within for s in poller.planner.steps(SYSTEM)}
            assert system_reads[ep.PRODUCTION_JSON] == DEVICE
            assert system_reads[ep.ENSEMBLE_SECCTRL] == DEVICE
            interval = settings.polling.system_interval
            device_every = round(settings.polling.device_interval / interval)
            worst: dict[str, float] = {}
            carried_minutes = 0
            start_day = poller.carry._day(clock.time())
            for minute in range(round(25 * 3600 / interval)):
                clock.advance(interval)
                sim.requests.clear()
                await poller._system_tick()
                if minute % device_every == 0:
                    await poller._device_tick()
                assert poller.failures == 0, poller.last_error
                carried = sim.requests[ep.PRODUCTION_JSON] == 0
                carried_minutes += carried
                ours = flatten(poller.system_payload or {})
                truth = flatten(await fresh_payload(reference, poller.features, poller.info, held))
                assert ours.keys() == truth.keys()
                for key, value in truth.items():
                    diff = abs(ours[key] - value)
                    worst[key] = max(worst.get(key, 0.0), diff)
            assert poller.carry._day(clock.time()) != start_day  # the day crossed a local midnight
            assert carried_minutes >= 25 * 60 * 0.75  # most minutes were carried, not read
            print("largest difference per key:", {k: round(v, 3) for k, v in sorted(worst.items()) if v})
            for key, diff in worst.items():
                if key == "battery_energy_available":
                    # the battery power integrated between secctrl reads; the Envoy rounds to whole Wh
                    assert diff <= BATTERY_ENERGY_TOLERANCE, (key, diff)
                elif "energy" in key:
                    assert diff <= ENERGY_TOLERANCE, (key, diff)
                else:
                    assert diff <= POWER_TOLERANCE or math.isclose(diff, 0.0), (key, diff)
        finally:
            await poller.close()
            await reference.close()
