"""The running daemon as operators meet it: health/metrics endpoints, an unrecoverable broker, the demo."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from envoy2mqtt.simulator import Simulator, SimulatorConfig
from tests.conftest import ROOT, Mosquitto, free_port
from tests.e2e import Daemon, Watcher, envoy_table, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def test_health_readiness_and_metrics_of_the_running_daemon(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    port = free_port()
    async with (
        Simulator(SimulatorConfig(profile="metered-1phase-acb")) as sim,
        Watcher(mosquitto.port) as watcher,
    ):
        extra = f"[health]\nenabled = true\nport = {port}\n"
        config = write_config(tmp_path, mosquitto.port, envoy_table(sim), sim=sim, extra=extra)
        daemon = Daemon(config, tmp_path / "daemon.log")
        await daemon.start()
        await watcher.wait_for(
            lambda: f"envoy2mqtt/{sim.serial}/system" in watcher.latest, 30, "first reading"
        )
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200
            for _ in range(50):
                async with session.get(f"{base}/readyz") as response:
                    body = await response.json()
                    if response.status == 200:
                        break
                await asyncio.sleep(0.2)
            assert response.status == 200, body
            assert body["mqtt"] == "connected"
            async with session.get(f"{base}/metrics") as response:
                text = await response.text()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert "envoy2mqtt_poll_duration_seconds" in families
        polled = {s.labels.get("endpoint") for s in families["envoy2mqtt_poll_duration_seconds"].samples}
        # the first cycle reuses the probe's bodies (nothing read twice); the CT readings are always read
        assert "/ivp/meters/readings" in polled
        assert "envoy2mqtt_last_successful_poll_timestamp_seconds" in families
        assert "envoy2mqtt_token_expiry_seconds" in families

        # readiness follows the broker: stop it and /readyz turns 503 naming MQTT
        mosquitto.stop()
        async with aiohttp.ClientSession() as session:
            for _ in range(50):
                async with session.get(f"{base}/readyz") as response:
                    body = await response.json()
                    if response.status == 503:
                        break
                await asyncio.sleep(0.2)
        assert response.status == 503
        assert body["mqtt"] == "disconnected"
        mosquitto.start()
        code, _ = await daemon.terminate()
        assert code == 0


def _passwd(path: Path, user: str, password: str) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed")
    subprocess.run([tool, "-c", "-b", str(path), user, password], check=True, capture_output=True)


async def test_broker_refusing_our_credentials_exits_non_zero(tmp_path: Path) -> None:
    """MQTT that cannot be restored must not leave the daemon half-dead: exit 5 so systemd/Docker restart it."""
    passwords = tmp_path / "passwd"
    _passwd(passwords, "bridge", "right-password")
    port = free_port()
    broker = Mosquitto(
        tmp_path,
        port=port,
        # mosquitto started as root drops to the `mosquitto` user, which cannot read pytest's tmp_path
        extra_config=("user root\n" if os.geteuid() == 0 else "")
        + f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n",
    )
    broker.start()
    try:
        async with Simulator(SimulatorConfig(profile="legacy-unmetered")) as sim:
            extra = '[mqtt]\nusername = "bridge"\npassword = "wrong-password"\n'
            config = write_config(tmp_path, broker.port, envoy_table(sim), sim=sim)
            text = config.read_text().replace("[mqtt]\n", extra, 1)
            config.write_text(text)
            daemon = Daemon(config, tmp_path / "daemon.log")
            await daemon.start()
            assert daemon.proc is not None
            code = await asyncio.wait_for(daemon.proc.wait(), 60)
            assert code == 5, daemon.log_text()[-2000:]
            log = daemon.log_text()
            assert "wrong-password" not in log
            assert "mqtt_unrecoverable" in log or "not authorized" in log.lower()
    finally:
        broker.stop()


def test_demo_runs_with_nothing_else_and_stops_cleanly() -> None:
    """`envoy2mqtt demo`: simulator + embedded broker + bridge; prints what is published; stops by itself."""
    result = subprocess.run(
        [sys.executable, "-m", "envoy2mqtt", "demo", "--duration", "15"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=str(ROOT),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "embedded" in out
    assert "production_power" in out
    assert "microinverters" in out
    assert "Home Assistant discovery:" in out
    assert "demo stopped" in out
    # discovery entities were announced
    counts = [line for line in out.splitlines() if line.startswith("Home Assistant discovery:")]
    assert any(not line.startswith("Home Assistant discovery: 0 devices") for line in counts)
    json.dumps(out)  # printable text only


async def test_authentication_failure_is_published_with_its_reason(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """MFA on the Enlighten account: availability offline, the reason in `gateway.last_error`, no crash."""
    async with (
        Simulator(SimulatorConfig(profile="metered-1phase-acb")) as sim,
        Watcher(mosquitto.port) as watcher,
    ):
        sim.cloud.mfa = True
        config = write_config(tmp_path, mosquitto.port, envoy_table(sim), sim=sim)
        daemon = Daemon(config, tmp_path / "daemon.log")
        await daemon.start()
        gateway = f"envoy2mqtt/{sim.serial}/gateway"
        availability = f"envoy2mqtt/{sim.serial}/availability"
        await watcher.wait_for(lambda: gateway in watcher.latest, 30, "the gateway diagnostics")
        assert (
            "multi-factor" in (watcher.json(gateway)["last_error"] or "").lower()
            or "mfa" in (watcher.json(gateway)["last_error"] or "").lower()
        )
        await watcher.wait_for(lambda: watcher.latest.get(availability) == b"offline", 60, "offline")
        assert daemon.running
        code, _ = await daemon.terminate()
        assert code == 0
