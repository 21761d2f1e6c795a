"""The real-time cadence end to end: the daemon as a subprocess, the simulator, a private mosquitto."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from envoy2mqtt.simulator import Simulator, SimulatorConfig
from tests.conftest import Mosquitto
from tests.e2e import Daemon, Event, Watcher, envoy_table, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def realtime_config(interval: float = 1, source: str = "auto", window: str = "", **extra: Any) -> str:
    lines = [
        "[realtime]",
        "enabled = true",
        f"interval = {interval}",
        f'source = "{source}"',
        f'maintenance_window = "{window}"',
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def live_events(watcher: Watcher, serial: str, since: float = 0.0) -> list[Event]:
    return list(watcher.since(since, f"envoy2mqtt/{serial}/live"))


async def sim_stats(sim: Simulator) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{sim.url}/__sim/stats", ssl=False) as response,
    ):
        body: dict[str, Any] = await response.json()
        return body


async def sim_fault(sim: Simulator, body: dict[str, Any]) -> None:
    """Switch a fault at run time, as an operator would (the HTTP control endpoint)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sim.url}/__sim/faults", json=body, ssl=False) as response,
    ):
        assert response.status == 200, await response.text()


async def start(tmp_path: Path, mosquitto: Mosquitto, sim: Simulator, realtime: str, **envoy: str) -> Daemon:
    config = write_config(
        tmp_path, mosquitto.port, envoy_table(sim, **envoy), sim=sim, extra=realtime, system_interval=60
    )
    daemon = Daemon(config, tmp_path / "daemon.log")
    await daemon.start()
    return daemon


async def test_meters_source_publishes_live_power_every_second_not_retained(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with (
        Simulator(SimulatorConfig(profile="metered-1phase-acb", live=True)) as sim,
        Watcher(mosquitto.port) as watcher,
    ):
        daemon = await start(tmp_path, mosquitto, sim, realtime_config(1, "auto"))
        try:
            topic = f"envoy2mqtt/{sim.serial}/live"
            await watcher.wait_for(
                lambda: len(live_events(watcher, sim.serial)) >= 5, 40, "five live messages"
            )
            await watcher.wait_for(
                lambda: "realtime" in _bridge_envoy(watcher, sim.serial),
                20,
                "the real-time state in bridge/info",
            )
        finally:
            await daemon.terminate()
        events = live_events(watcher, sim.serial)
        assert not any(e.retain for e in events)
        payload = json.loads(events[-1].payload)
        assert set(payload) == {"timestamp", "grid_power", "production_power", "consumption_power"}
        gaps = [b.at - a.at for a, b in itertools.pairwise(events)]
        assert max(gaps) < 3.0, gaps
        gateway = watcher.json(f"envoy2mqtt/{sim.serial}/gateway")
        assert gateway["realtime_source"] == "meters"
        assert gateway["realtime_interval"] == 1
        logs = daemon.log_text()
        assert "realtime_started" in logs
        info = watcher.json("envoy2mqtt/bridge/info")["envoys"][sim.serial]
        assert info["cadences"]["realtime"] == 1
        assert info["realtime"] == {"source": "meters", "state": "running"}
        assert topic not in (await _retained(mosquitto.port))


def _bridge_envoy(watcher: Watcher, serial: str) -> dict[str, Any]:
    info = json.loads(watcher.latest.get("envoy2mqtt/bridge/info", b"{}"))
    entry: dict[str, Any] = info.get("envoys", {}).get(serial, {})
    return entry


async def _retained(port: int) -> dict[str, bytes]:
    """What a fresh subscriber gets as retained messages."""
    async with Watcher(port) as fresh:
        await asyncio.sleep(1.0)
        return dict(fresh.latest)


async def test_livedata_source_keeps_the_stream_alive_across_its_expiry(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """auto picks livedata on the IQ Battery site; the stream lapses every 3 s and is renewed."""
    config = SimulatorConfig(profile="metered-3phase-iq", live=True, stream_expiry=3.0)
    async with Simulator(config) as sim, Watcher(mosquitto.port) as watcher:
        daemon = await start(tmp_path, mosquitto, sim, realtime_config(1, "auto"))
        try:
            await watcher.wait_for(
                lambda: len(live_events(watcher, sim.serial)) >= 12, 60, "twelve live messages"
            )
        finally:
            await daemon.terminate()
        stats = await sim_stats(sim)
        events = live_events(watcher, sim.serial)
        payload = json.loads(events[-1].payload)
        assert set(payload) == {
            "timestamp",
            "grid_power",
            "production_power",
            "consumption_power",
            "battery_power",
            "battery_soc",
            "phases",
        }
        assert set(payload["phases"]) == {"l1", "l2", "l3"}
        # twelve or more seconds of live values across an expiry every 3 s: renewed several times, and
        # a lapse never left a gap of more than a few intervals
        assert stats["livedata"]["stream_enables"] >= 3
        gaps = [b.at - a.at for a, b in itertools.pairwise(events)]
        assert max(gaps) < 4.0, gaps
        # no frozen body was published: every timestamp moves forward
        stamps = [json.loads(e.payload)["timestamp"] for e in events]
        assert stamps == sorted(stamps)
        assert watcher.json(f"envoy2mqtt/{sim.serial}/gateway")["realtime_source"] == "livedata"
        assert "livedata_stream_lapsed" in daemon.log_text()


async def test_meters_source_can_be_forced_on_a_battery_site(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with (
        Simulator(SimulatorConfig(profile="metered-3phase-iq", live=True)) as sim,
        Watcher(mosquitto.port) as watcher,
    ):
        daemon = await start(tmp_path, mosquitto, sim, realtime_config(1, "meters"))
        try:
            await watcher.wait_for(lambda: len(live_events(watcher, sim.serial)) >= 3, 40, "live messages")
        finally:
            await daemon.terminate()
        payload = json.loads(live_events(watcher, sim.serial)[-1].payload)
        assert "battery_power" in payload  # the storage CT
        assert "battery_soc" not in payload  # CTs do not measure charge
        stats = await sim_stats(sim)
        assert "/ivp/livedata/status" not in stats["requests"]


async def test_live_and_minute_topics_agree_on_the_same_simulator_instant(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A static site (frozen instant): live and system carry the same grid, solar and battery power, and
    the system cycle reuses the real-time reader's CT body instead of reading it again."""
    async with (
        Simulator(SimulatorConfig(profile="metered-3phase-iq")) as sim,
        Watcher(mosquitto.port) as watcher,
    ):
        config = write_config(
            tmp_path,
            mosquitto.port,
            envoy_table(sim),
            sim=sim,
            extra=realtime_config(1, "meters"),
            system_interval=10,
        )
        daemon = Daemon(config, tmp_path / "daemon.log")
        await daemon.start()
        system_topic = f"envoy2mqtt/{sim.serial}/system"
        try:
            await watcher.wait_for(
                lambda: len(watcher.since(0, system_topic)) >= 3, 60, "three system cycles"
            )
        finally:
            await daemon.terminate()
        stats = await sim_stats(sim)
        live = json.loads(live_events(watcher, sim.serial)[-1].payload)
        system = watcher.json(system_topic)
        assert live["timestamp"] == system["timestamp"]
        assert live["production_power"] == system["production_power"]
        assert live["grid_power"] == system["net_power"]
        assert live["battery_power"] == system["battery_power"]
        for line in ("l1", "l2", "l3"):
            assert live["phases"][line]["grid_power"] == system["phases"][line]["net_power"]
            assert live["phases"][line]["production_power"] == system["phases"][line]["production_power"]
        # the simulator's house load includes the battery; the CTs' consumption is production + net, as
        # a real Envoy counts it (capture 8.2.127): the two differ by exactly the battery power
        assert abs(system["consumption_power"] - live["consumption_power"] - live["battery_power"]) < 0.01
        # one CT read per real-time tick; the system cycles after the first reused it
        readings = stats["requests"].get("/ivp/meters/readings", 0)
        published = len(live_events(watcher, sim.serial))
        assert readings <= published + 2, (readings, published)


async def test_an_envoy_without_cts_says_so_and_keeps_its_cadences(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with (
        Simulator(SimulatorConfig(profile="legacy-unmetered")) as sim,
        Watcher(mosquitto.port) as watcher,
    ):
        daemon = await start(tmp_path, mosquitto, sim, realtime_config(1, "auto"), name="Garage")
        try:
            await watcher.wait_for(
                lambda: f"envoy2mqtt/{sim.serial}/system" in watcher.latest, 40, "the system reading"
            )
            await watcher.wait_for(lambda: "realtime_unavailable" in daemon.log_text(), 20, "the refusal")
            await asyncio.sleep(2.0)
        finally:
            code, _ = await daemon.terminate()
        assert code == 0
        refusal = next(line for line in daemon.log_lines() if line.get("event") == "realtime_unavailable")
        assert refusal["envoy"] == "Garage"
        assert "5 minutes" in refusal["reason"]
        assert live_events(watcher, sim.serial) == []
        gateway = watcher.json(f"envoy2mqtt/{sim.serial}/gateway")
        assert "realtime_source" not in gateway
        config = watcher.json(f"homeassistant/device/envoy2mqtt_{sim.serial}/config")
        assert not any(key.startswith("live_") for key in config["components"])


async def test_overload_backs_off_then_recovers(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with (
        Simulator(SimulatorConfig(profile="metered-1phase-acb", live=True)) as sim,
        Watcher(mosquitto.port) as watcher,
    ):
        daemon = await start(tmp_path, mosquitto, sim, realtime_config(1, "meters", calm_period=5))
        gateway_topic = f"envoy2mqtt/{sim.serial}/gateway"
        try:
            await watcher.wait_for(lambda: len(live_events(watcher, sim.serial)) >= 3, 40, "live messages")
            # an Envoy that takes half a request a second: slower answers, then 503s for 4 s
            overload = {"fault": "overload", "limit": 0.5, "window": 4, "overload_after": 2, "busy_for": 4}
            await sim_fault(sim, overload)
            await watcher.wait_for(
                lambda: watcher.json(gateway_topic).get("realtime_interval", 1) >= 4, 60, "the back-off"
            )
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"{sim.url}/__sim/faults", json={"fault": "clear"}, ssl=False) as response,
            ):
                assert response.status == 200
            await watcher.wait_for(
                lambda: watcher.json(gateway_topic).get("realtime_interval") == 1, 90, "the recovery"
            )
        finally:
            await daemon.terminate()
        changes = [line for line in daemon.log_lines() if line.get("event") == "realtime_interval_changed"]
        assert changes[0]["interval"] == 2
        assert changes[-1]["interval"] == 1
        assert changes[-1]["reason"] == "calm again"
        assert daemon.running is False


async def test_nightly_maintenance_window_pauses_real_time(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """A window around the Envoy's current local minute: no live values, state paused-maintenance."""
    async with (
        Simulator(SimulatorConfig(profile="metered-1phase-acb", live=True)) as sim,
        Watcher(mosquitto.port) as watcher,
    ):
        local = datetime.now(ZoneInfo("US/Pacific"))  # the profile's timezone, read from /home.json
        start_at = local - timedelta(minutes=1)
        end_at = local + timedelta(minutes=3)
        window = f"{start_at:%H:%M}-{end_at:%H:%M}"
        daemon = await start(tmp_path, mosquitto, sim, realtime_config(1, "meters", window=window))
        gateway_topic = f"envoy2mqtt/{sim.serial}/gateway"
        try:
            await watcher.wait_for(
                lambda: (
                    gateway_topic in watcher.latest
                    and watcher.json(gateway_topic).get("realtime_state") == "paused-maintenance"
                ),
                40,
                "the pause",
            )
            await asyncio.sleep(3.0)
        finally:
            await daemon.terminate()
        assert live_events(watcher, sim.serial) == []
        paused = next(line for line in daemon.log_lines() if line.get("event") == "realtime_paused")
        assert paused["reason"] == "maintenance window"
        assert paused["window"] == window
        stats = await sim_stats(sim)
        assert stats["requests"].get("/ivp/meters/readings", 0) <= 2  # the minute cycle only
