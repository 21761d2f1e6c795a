"""The real-time cadence end to end: the daemon as a subprocess, the simulator, a private mosquitto."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

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
        assert "realtime started" in logs
        assert topic not in (await _retained(mosquitto.port))


async def _retained(port: int) -> dict[str, bytes]:
    """What a fresh subscriber gets as retained messages."""
    async with Watcher(port) as fresh:
        await asyncio.sleep(1.0)
        return dict(fresh.latest)
