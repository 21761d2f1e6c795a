"""The status page in a real browser: Debian's chromium, headless, loads the page a daemon serves.

`./scripts/test` installs chromium when it is missing (as it does mosquitto); without it this test is
skipped with the reason. `ENVOY2MQTT_STATUS_SCREENSHOT=<path.png>` also saves the screenshot there (the
README's picture is made that way).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from envoy2mqtt.simulator import Simulator, SimulatorConfig
from envoy2mqtt.statuspage import PAGE
from tests.conftest import Mosquitto, free_port
from tests.e2e import Daemon, Watcher, envoy_table, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (./scripts/test installs it: apt-get install -y chromium)")


async def _browser(url: str, profile: Path, *extra: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        _chromium(),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--virtual-time-budget=8000",
        *extra,
        url,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"chromium exited {proc.returncode}"
    return out.decode(errors="replace")


async def _site(sim: Simulator, body: dict[str, Any]) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sim.url}/__sim/site", json=body, ssl=False) as response,
    ):
        assert response.status == 200, await response.text()


def test_the_page_needs_nothing_from_outside() -> None:
    assert not re.search(r"(src|href)\s*=", PAGE), "no external script, style, font or image"
    assert "http://" not in PAGE
    assert "https://" not in PAGE
    assert len(PAGE.encode()) < 16_000


async def test_status_page_in_a_real_browser(mosquitto: Mosquitto, tmp_path: Path) -> None:
    _chromium()
    port = free_port()
    async with (
        Simulator(SimulatorConfig(profile="metered-3phase-iq", enpower=True)) as sim,
        Watcher(mosquitto.port) as watcher,
    ):
        serials = [inv.serial for inv in sim._source.model.inverters]  # type: ignore[union-attr]
        shaded, silent = serials[5], serials[9]
        await _site(sim, {"inverter": shaded, "output": 0.35})
        await _site(sim, {"inverter": silent, "reporting": False, "silent_for": 1800})
        extra = f"[health]\nenabled = true\nport = {port}\n[fleet]\nwindow = 1\nconsecutive = 1\n"
        envoys = envoy_table(sim, name="Rooftop")
        config = write_config(tmp_path, mosquitto.port, envoys, sim=sim, extra=extra)
        daemon = Daemon(config, tmp_path / "daemon.log")
        await daemon.start()
        await watcher.wait_for(
            lambda: (
                f"envoy2mqtt/{sim.serial}/health" in watcher.latest
                and f"envoy2mqtt/{sim.serial}/system" in watcher.latest
            ),
            60,
            "the first device poll",
        )
        url = f"http://127.0.0.1:{port}/"
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as response:
                assert response.status == 200
                assert "default-src 'none'" in response.headers["Content-Security-Policy"]
            async with session.post(url) as response:
                assert response.status == 405  # read-only
            async with session.get(f"{url}status.json") as response:
                document = await response.json()
        envoy = document["envoys"][0]
        assert envoy["serial"] == sim.serial
        assert len(envoy["inverters"]) == 24
        assert sim.enlighten_password not in str(document)

        dom = await _browser(url, tmp_path / "chromium", "--dump-dom")
        assert 'data-loaded="1"' in dom, dom[:2000]
        assert "Rooftop" in dom
        assert sim.serial in dom
        assert sim.firmware in dom
        assert ">online<" in dom
        assert '<dd class="v">on grid</dd>' in dom  # the relay is closed
        tiles = re.findall(r'<div class="tile[^"]*" data-serial="(\d+)"', dom)
        assert sorted(tiles) == sorted(serials)
        under = re.findall(r'<div class="tile[^"]*\bunder\b[^"]*" data-serial="(\d+)"', dom)
        assert under == [shaded]
        stale = re.findall(r'<div class="tile[^"]*\bstale\b[^"]*" data-serial="(\d+)"', dom)
        assert stale == [silent]
        assert "Token expiry" in dom
        assert "Last error" in dom

        screenshot = tmp_path / "status.png"
        await _browser(
            url, tmp_path / "chromium-shot", f"--screenshot={screenshot}", "--window-size=1100,460"
        )
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        target = os.environ.get("ENVOY2MQTT_STATUS_SCREENSHOT")
        if target:
            shutil.copyfile(screenshot, target)
        code, _ = await daemon.terminate()
        assert code == 0
