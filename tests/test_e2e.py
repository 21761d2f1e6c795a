"""The daemon end to end: a real `envoy2mqtt run` subprocess, a real mosquitto, the simulator over real HTTP.

These follow the issue "The daemon end to end": the contract on every generated profile (and the shared
captures named there when ../shared exists), live values, the Home Assistant birth message, a broker
restart, an Envoy outage, two Envoys with one dead, and SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from envoy2mqtt.check import check_envoy
from envoy2mqtt.config import CloudSettings, EnvoySettings, Settings
from envoy2mqtt.mqtt.validator import validate_device_discovery
from envoy2mqtt.simulator import Simulator, SimulatorConfig
from tests.conftest import CAPTURES, Mosquitto, free_port
from tests.e2e import Daemon, Watcher, envoy_table, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

BASE = "envoy2mqtt"
PROFILES = ["metered-3phase-iq", "metered-1phase-acb", "legacy-unmetered"]
CONTRACT_CAPTURES = [
    "7.6.175_with_cts_3phase",
    "8.2.127_with_3cts_and_battery_split",
    "5.0.62",
    "8.2.4345_with_device_data",
    "3.7.0",  # the oldest firmware: production only from the HTML /production page
]


def _sources() -> list[Any]:
    params: list[Any] = [pytest.param(("profile", p), id=p) for p in PROFILES]
    for name in CONTRACT_CAPTURES:
        marks = (
            []
            if (CAPTURES / name).is_dir()
            else [pytest.mark.skip(reason=f"../shared capture {name} absent")]
        )
        params.append(pytest.param(("capture", name), id=name, marks=marks))
    return params


def _sim_config(source: tuple[str, str], **kw: Any) -> SimulatorConfig:
    kind, value = source
    if kind == "profile":
        return SimulatorConfig(profile=value, **kw)
    return SimulatorConfig(capture_dir=CAPTURES / value, **kw)


async def _expected(sim: Simulator, state_dir: Path) -> dict[str, Any]:
    """What the normalizers compute for this Envoy, through our own client (the `check --json` document)."""
    token_firmware = sim.url.startswith("https")
    envoy = EnvoySettings(
        host=sim.url,
        enlighten_username=sim.enlighten_username if token_firmware else "",
        enlighten_password=sim.enlighten_password if token_firmware else "",
    )
    settings = Settings(
        state_dir=state_dir,
        enphase_cloud=CloudSettings(login_url=sim.login_url, token_url=sim.token_url, ca_file=sim.ca_file),
        envoy=[envoy],
    )
    return await check_envoy(envoy, settings)


def _discovery_configs(watcher: Watcher) -> dict[str, dict[str, Any]]:
    return {t: json.loads(p) for t, p in watcher.latest.items() if t.startswith("homeassistant/device/")}


@pytest.mark.parametrize("source", _sources())
async def test_contract_topics_values_discovery_and_sigterm(
    source: tuple[str, str], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with Simulator(_sim_config(source)) as sim, Watcher(mosquitto.port) as watcher:
        config = write_config(tmp_path, mosquitto.port, envoy_table(sim, name="Test Envoy"), sim=sim)
        daemon = Daemon(config, tmp_path / "daemon.log")
        await daemon.start()
        expected = await _expected(sim, tmp_path / "check-state")
        serial = sim.serial
        prefix = f"{BASE}/{serial}"
        inverters = expected["inverters"]
        batteries = expected["batteries"]

        def complete() -> bool:
            latest = watcher.latest
            return (
                latest.get(f"{BASE}/bridge/availability") == b"online"
                and latest.get(f"{prefix}/availability") == b"online"
                and f"{prefix}/system" in latest
                and f"{prefix}/gateway" in latest
                and all(f"{prefix}/meter/{ct}" in latest for ct in expected["meters"])
                and all(f"{prefix}/inverter/{s}" in latest for s in inverters)
                and all(f"{prefix}/battery/{s}" in latest for s in batteries)
                and f"homeassistant/device/envoy2mqtt_{serial}/config" in latest
                and all(
                    f"homeassistant/device/envoy2mqtt_{s}/config" in latest for s in (*inverters, *batteries)
                )
            )

        await watcher.wait_for(complete, 30, "every contract topic")

        # the values are exactly what the normalizers compute
        assert watcher.json(f"{prefix}/system") == expected["system"]
        for ct, payload in expected["meters"].items():
            assert watcher.json(f"{prefix}/meter/{ct}") == payload
        for inverter, payload in inverters.items():
            assert watcher.json(f"{prefix}/inverter/{inverter}") == payload
        for battery, payload in batteries.items():
            assert watcher.json(f"{prefix}/battery/{battery}") == payload
        gateway = watcher.json(f"{prefix}/gateway")
        for key in ("serial", "firmware", "part_number", "metered", "ct_meters", "phase_count", "auth_mode"):
            assert gateway[key] == expected["gateway"][key], key
        assert gateway["last_error"] is None
        assert gateway["last_poll_ok"].endswith("Z")
        assert not any(isinstance(v, str) and v.startswith("eyJ") for v in gateway.values())

        # every state is retained
        retained_topics = {e.topic for e in watcher.events if e.retain}
        assert f"{prefix}/system" in retained_topics or any(
            e.topic == f"{prefix}/system" for e in watcher.events
        )

        # every discovery config validates, and only entities the hardware can fill are announced
        configs = _discovery_configs(watcher)
        for topic, payload in configs.items():
            assert validate_device_discovery(topic, payload) == [], topic
        gateway_components = configs[f"homeassistant/device/envoy2mqtt_{serial}/config"]["components"]
        has_consumption = "consumption_power" in expected["system"]
        assert ("consumption_power" in gateway_components) == has_consumption
        assert ("battery_soc" in gateway_components) == ("battery_soc" in expected["system"])
        for child in (*inverters, *batteries):
            child_config = configs[f"homeassistant/device/envoy2mqtt_{child}/config"]
            assert child_config["device"]["via_device"] == f"envoy2mqtt_{serial}"

        # SIGTERM: offline published, exit code 0, within 5 s
        code, seconds = await daemon.terminate()
        assert code == 0, daemon.log_text()[-3000:]
        assert seconds < 5
        await watcher.wait_for(
            lambda: (
                watcher.latest.get(f"{BASE}/bridge/availability") == b"offline"
                and watcher.latest.get(f"{prefix}/availability") == b"offline"
            ),
            5,
            "offline after SIGTERM",
        )
        errors = [line for line in daemon.log_lines() if line.get("level") in ("error", "critical")]
        assert errors == []


async def test_live_values_birth_message_and_broker_restart(mosquitto: Mosquitto, tmp_path: Path) -> None:
    config_sim = SimulatorConfig(profile="metered-1phase-acb", live=True, time_scale=600)
    async with Simulator(config_sim) as sim, Watcher(mosquitto.port) as watcher:
        config = write_config(tmp_path, mosquitto.port, envoy_table(sim), sim=sim, system_interval=10)
        daemon = Daemon(config, tmp_path / "daemon.log")
        await daemon.start()
        system_topic = f"{BASE}/{sim.serial}/system"
        gateway_config = f"homeassistant/device/envoy2mqtt_{sim.serial}/config"
        await watcher.wait_for(lambda: system_topic in watcher.latest, 30, "first system reading")
        await watcher.wait_for(
            lambda: any(f"/{sim.serial}/battery/" in t for t in watcher.latest), 30, "battery state"
        )
        first = watcher.json(system_topic)

        # live mode: values move between two system polls
        await watcher.wait_for(lambda: watcher.json(system_topic) != first, 25, "a second, different reading")
        second = watcher.json(system_topic)
        assert second["production_energy_lifetime"] >= first["production_energy_lifetime"]
        assert second["timestamp"] != first["timestamp"]

        # Home Assistant birth: every config and the last states are published again (after 1-5 s)
        before = time.monotonic()
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.publish("homeassistant/status", "online")
        expected_topics = {
            t for t in watcher.latest if t.startswith(("homeassistant/device/", f"{BASE}/{sim.serial}/"))
        }
        assert gateway_config in expected_topics
        await watcher.wait_for(
            lambda: expected_topics <= {e.topic for e in watcher.since(before)},
            20,
            "every config and every last state again after the birth message",
        )
        # republished configs (same payload as before the birth) come after a random 1-5 s delay, not at once
        configs_before = {t: p for t, p in watcher.latest.items() if t.startswith("homeassistant/device/")}
        republished = [
            e.at
            for e in watcher.since(before, "homeassistant/device/")
            if configs_before.get(e.topic) == e.payload
        ]
        assert republished
        assert min(republished) - before >= 0.9

        # broker restart: the daemon reconnects and restores the whole retained set by itself
        retained_before = set(watcher.latest) - {"homeassistant/status"}
        mosquitto.restart()  # persistence is off: the broker comes back empty
        restarted = time.monotonic()
        await asyncio.wait_for(watcher.connected.wait(), 15)

        async def retained_now() -> set[str]:
            seen: set[str] = set()
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
                await client.subscribe("#")
                try:
                    async with asyncio.timeout(1.0):
                        async for message in client.messages:
                            if message.retain:
                                seen.add(str(message.topic))
                except TimeoutError:
                    pass
            return seen

        deadline = time.monotonic() + 45
        restored: set[str] = set()
        while time.monotonic() < deadline:
            restored = await retained_now()
            if retained_before <= restored:
                break
            await asyncio.sleep(1)
        assert retained_before <= restored, sorted(retained_before - restored)
        assert any(
            e.topic == f"{BASE}/bridge/availability" and e.payload == b"online"
            for e in watcher.since(restarted)
        )
        assert daemon.running
        code, _ = await daemon.terminate()
        assert code == 0


async def test_envoy_outage_goes_offline_and_recovers(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with (
        Simulator(SimulatorConfig(profile="legacy-unmetered")) as sim,
        Watcher(mosquitto.port) as watcher,
    ):
        config = write_config(tmp_path, mosquitto.port, envoy_table(sim), sim=sim, system_interval=10)
        daemon = Daemon(config, tmp_path / "daemon.log")
        await daemon.start()
        availability = f"{BASE}/{sim.serial}/availability"
        await watcher.wait_for(lambda: watcher.latest.get(availability) == b"online", 30, "online")
        lines_before = len(daemon.log_text().splitlines())

        sim.stop_envoy()
        down = time.monotonic()
        # CT-less: production is read once per device interval (60 s here), then every system cycle
        # while it fails: offline within one device interval plus three system intervals
        await watcher.wait_for(lambda: watcher.latest.get(availability) == b"offline", 120, "offline")
        assert time.monotonic() - down >= 15  # not on the first failed poll: after 3 of them
        gateway = watcher.json(f"{BASE}/{sim.serial}/gateway")
        assert gateway["last_error"]
        assert daemon.running

        await sim.start_envoy()
        await watcher.wait_for(lambda: watcher.latest.get(availability) == b"online", 90, "online again")
        await watcher.wait_for(
            lambda: watcher.json(f"{BASE}/{sim.serial}/gateway")["last_error"] is None,
            5,
            "last_error cleared",
        )
        lines_during = len(daemon.log_text().splitlines()) - lines_before
        assert lines_during < 40, daemon.log_text()[-4000:]
        code, _ = await daemon.terminate()
        assert code == 0


async def _blackhole(port: int) -> asyncio.Server:
    """An 'Envoy' that accepts connections and never answers."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(-1)
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def test_two_envoys_one_dead_the_other_keeps_publishing_on_time(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    dead_port = free_port()
    server = await _blackhole(dead_port)
    try:
        async with (
            Simulator(SimulatorConfig(profile="metered-3phase-iq")) as sim,
            Watcher(mosquitto.port) as watcher,
        ):
            envoys = (
                envoy_table(sim, name="Alive")
                + f'[[envoy]]\nhost = "http://127.0.0.1:{dead_port}"\nname = "Dead"\n'
            )
            config = write_config(tmp_path, mosquitto.port, envoys, sim=sim, system_interval=10)
            daemon = Daemon(config, tmp_path / "daemon.log")
            await daemon.start()
            system_topic = f"{BASE}/{sim.serial}/system"
            await watcher.wait_for(
                lambda: system_topic in watcher.latest, 30, "the live Envoy's first reading"
            )
            start = time.monotonic()
            await watcher.wait_for(
                lambda: sum(1 for e in watcher.since(start) if e.topic == system_topic) >= 2,
                35,
                "two more on-time system readings while the other Envoy hangs",
            )
            assert daemon.running
            code, seconds = await daemon.terminate()
            assert code == 0
            assert seconds < 5
    finally:
        server.close()
