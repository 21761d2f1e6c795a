"""Fleet health and grid state end to end: the daemon, the simulator with injected faults, real mosquitto."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from envoy2mqtt.mqtt.validator import validate_device_discovery
from envoy2mqtt.simulator import Simulator, SimulatorConfig
from tests.conftest import Mosquitto
from tests.e2e import Daemon, Watcher, envoy_table, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

# judge at once (the multi-report logic is tested on its own in tests/test_fleet.py)
FLEET = "[fleet]\nwindow = 1\nconsecutive = 1\n"


async def _site(sim: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sim.url}/__sim/site", json=body, ssl=False) as response,
    ):
        answer: dict[str, Any] = await response.json()
        assert response.status == 200, answer
        return answer


async def test_health_topic_underperforming_stale_and_grid_state(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    relay_site = SimulatorConfig(profile="metered-3phase-iq", enpower=True)
    async with (
        Simulator(relay_site) as sim,
        Simulator(SimulatorConfig(profile="legacy-unmetered")) as plain,  # digest auth: no second cloud
        Watcher(mosquitto.port) as watcher,
    ):
        serials = [inv.serial for inv in sim._source.model.inverters]  # type: ignore[union-attr]
        shaded, silent = serials[5], serials[9]
        await _site(sim, {"inverter": shaded, "output": 0.3})
        await _site(sim, {"inverter": silent, "reporting": False, "silent_for": 1800})
        await _site(sim, {"on_grid": False})
        envoys = envoy_table(sim, name="Relay site") + envoy_table(plain, name="Plain site")
        config = write_config(tmp_path, mosquitto.port, envoys, sim=sim, extra=FLEET)
        daemon = Daemon(config, tmp_path / "daemon.log")
        await daemon.start()
        prefix, plain_prefix = f"envoy2mqtt/{sim.serial}", f"envoy2mqtt/{plain.serial}"
        gateway_config = f"homeassistant/device/envoy2mqtt_{sim.serial}/config"

        def complete() -> bool:
            latest = watcher.latest
            return (
                f"{prefix}/health" in latest
                and f"{plain_prefix}/health" in latest
                and f"{prefix}/system" in latest
                and f"{prefix}/gateway" in latest
                and gateway_config in latest
                and "health" in latest[gateway_config].decode()
                and all(f"{prefix}/inverter/{s}" in latest for s in serials)
            )

        await watcher.wait_for(complete, 60, "health, system and inverter topics of both Envoys")
        health = watcher.json(f"{prefix}/health")
        assert health["inverters_provisioned"] == 24
        assert health["inverters_communicating"] == 23  # the silent unit is marked not communicating
        assert health["inverters_reporting"] == 23
        assert [s["serial"] for s in health["inverters_stale"]] == [silent]
        assert health["inverters_stale"][0]["last_report"].endswith("Z")
        assert health["inverters_underperforming"] == 1
        assert health["underperforming_serials"] == [shaded]
        assert 20 < health["site_output"] <= 100
        assert health["batteries_provisioned"] == 2
        assert health["batteries_reporting"] == 2
        assert health["batteries_stale"] == []

        shaded_state = watcher.json(f"{prefix}/inverter/{shaded}")
        assert shaded_state["underperforming"] is True
        assert shaded_state["relative_output"] == pytest.approx(30, abs=3)
        fine = watcher.json(f"{prefix}/inverter/{serials[0]}")
        assert fine["underperforming"] is False
        assert fine["relative_output"] == pytest.approx(100, abs=8)
        silent_state = watcher.json(f"{prefix}/inverter/{silent}")
        assert silent_state["relative_output"] is None  # stale units are not judged
        assert silent_state["underperforming"] is False

        # grid state: the relay site says off grid; the site without a relay has no such key
        assert watcher.json(f"{prefix}/system")["on_grid"] is False
        assert "on_grid" not in watcher.json(f"{plain_prefix}/system")

        # discovery: the new entities exist, validate strictly, and only where the hardware has them
        await watcher.wait_for(
            lambda: all(
                "relative_output"
                in watcher.latest.get(f"homeassistant/device/envoy2mqtt_{s}/config", b"").decode()
                for s in serials
            ),
            30,
            "inverter discovery with the fleet entities",
        )
        configs = {
            t: json.loads(p) for t, p in watcher.latest.items() if t.startswith("homeassistant/device/")
        }
        for topic, payload in configs.items():
            assert validate_device_discovery(topic, payload) == [], topic
        components = configs[gateway_config]["components"]
        assert components["on_grid"]["platform"] == "binary_sensor"
        assert components["on_grid"]["state_topic"] == f"{prefix}/system"
        for key in ("inverters_reporting", "inverters_stale", "inverters_underperforming", "batteries_stale"):
            assert components[key]["state_topic"] == f"{prefix}/health", key
        plain_components = configs[f"homeassistant/device/envoy2mqtt_{plain.serial}/config"]["components"]
        assert "on_grid" not in plain_components
        assert "inverters_reporting" in plain_components
        inverter_components = configs[f"homeassistant/device/envoy2mqtt_{shaded}/config"]["components"]
        assert inverter_components["underperforming"]["device_class"] == "problem"
        assert inverter_components["relative_output"]["unit_of_measurement"] == "%"
        # the Last error entity reads OK while nothing is wrong (the payload keeps null)
        assert watcher.json(f"{prefix}/gateway")["last_error"] is None
        assert "'OK'" in components["last_error"]["value_template"]

        code, _ = await daemon.terminate()
        assert code == 0


async def test_a_uniform_site_has_no_underperformer(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with (
        Simulator(SimulatorConfig(profile="metered-1phase-acb")) as sim,
        Watcher(mosquitto.port) as watcher,
    ):
        config = write_config(tmp_path, mosquitto.port, envoy_table(sim), sim=sim, extra=FLEET)
        daemon = Daemon(config, tmp_path / "daemon.log")
        await daemon.start()
        topic = f"envoy2mqtt/{sim.serial}/health"
        await watcher.wait_for(lambda: topic in watcher.latest, 60, "the health topic")
        health = watcher.json(topic)
        assert health["inverters_underperforming"] == 0
        assert health["inverters_stale"] == []
        assert health["inverters_reporting"] == health["inverters_provisioned"] == 12
        code, _ = await daemon.terminate()
        assert code == 0
