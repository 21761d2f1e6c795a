"""The daemon runs without the optional extras (and without prometheus-client); `simulate` and the demo say which extra to install.

`cryptography` (the simulator's certificates) and `amqtt` (the demo's embedded broker) are the
`simulator` and `demo` extras: the container image has neither. Each test runs a real subprocess in
which the extras' top-level modules cannot be imported (`sys.modules[name] = None` makes `import name`
raise ModuleNotFoundError exactly as when the package is not installed).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import aiomqtt
import pytest

from envoy2mqtt.simulator import Simulator, SimulatorConfig
from tests.conftest import ROOT, Mosquitto, free_port
from tests.e2e import envoy_table, write_config

EXTRAS = ("cryptography", "amqtt")
# the daemon commands run without these too: prometheus-client is only the tests' reference parser
NOT_NEEDED = (*EXTRAS, "prometheus_client")

WITHOUT_EXTRAS = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None
from envoy2mqtt.cli import main
code = main(sys.argv[1:])
loaded = sorted(
    m for m, mod in sys.modules.items()
    if mod is not None and (m.split('.')[0] in {blocked!r} or m == 'envoy2mqtt.simulator.server')
)
print('LOADED', loaded, file=sys.stderr)
sys.exit(code)
"""


async def run_without(
    blocked: tuple[str, ...], *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WITHOUT_EXTRAS.format(blocked=blocked),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(ROOT),
        env=dict(env or os.environ),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVOY2MQTT_")}
    env.update(extra)
    return env


async def test_check_reads_an_envoy_without_the_extras(tmp_path: Path) -> None:
    """The whole read path (auth, probe, every endpoint, normalizers) runs with neither extra installed."""
    async with Simulator(SimulatorConfig(profile="metered-3phase-iq")) as sim:
        env = clean_env(
            ENVOY2MQTT_ENVOY=json.dumps([{"host": sim.url, "token": sim.issue_token("owner")}]),
            ENVOY2MQTT_STATE_DIR=str(tmp_path / "state"),
        )
        code, out, err = await run_without(NOT_NEEDED, "check", "--json", env=env)
    assert code == 0, err
    assert json.loads(out)["system"]["production_power"] is not None
    assert "LOADED []" in err, err


async def test_the_daemon_runs_publishes_and_stops_without_the_extras(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """`run` with neither extra importable: states published, SIGTERM → exit 0, nothing extra loaded."""
    async with Simulator(SimulatorConfig(profile="metered-3phase-iq")) as sim:
        health = free_port()
        config = write_config(
            tmp_path,
            mosquitto.port,
            envoy_table(sim, "Lean"),
            sim=sim,
            extra=f"[health]\nenabled = true\nport = {health}\n",
        )
        log = tmp_path / "daemon.log"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WITHOUT_EXTRAS.format(blocked=NOT_NEEDED),
            "run",
            "--config",
            str(config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log.open("wb"),
            cwd=str(ROOT),
            env=clean_env(),
        )
        try:
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
                await client.subscribe("envoy2mqtt/+/system")
                async with asyncio.timeout(60):
                    message = await anext(aiter(client.messages))
            assert "production_power" in json.loads(bytes(message.payload))  # type: ignore[arg-type]
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{health}/metrics") as response,
            ):
                assert response.status == 200
                assert "envoy2mqtt_poll_duration_seconds_bucket{" in await response.text()
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0, log.read_text()[-2000:]
    assert "LOADED []" in log.read_text()


async def test_simulate_without_the_simulator_extra_names_it() -> None:
    code, _out, err = await run_without(("cryptography",), "simulate")
    assert code == 2
    assert "pip install 'envoy2mqtt[simulator]'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("blocked", "args", "missing"),
    [
        (EXTRAS, (), "cryptography, amqtt"),
        (("amqtt",), (), "amqtt"),
        # with a broker of its own the demo needs no embedded one, but still the simulator
        (EXTRAS, ("--mqtt-url", "mqtt://127.0.0.1:1"), "cryptography"),
    ],
)
async def test_demo_without_the_demo_extra_says_how_to_install_it(
    blocked: tuple[str, ...], args: tuple[str, ...], missing: str
) -> None:
    code, _out, err = await run_without(blocked, "demo", *args)
    assert code == 2
    assert f"missing: {missing}." in err
    assert "pip install 'envoy2mqtt[demo]'" in err
    assert "./scripts/demo" in err
    assert "Traceback" not in err


def test_dev_extra_pulls_the_demo_and_simulator_extras() -> None:
    """./scripts/test installs `.[dev]`: the tests run the simulator and the demo, so dev includes both."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dependencies = " ".join(project["dependencies"])
    assert "cryptography" not in dependencies
    assert "amqtt" not in dependencies
    assert "prometheus" not in dependencies
    extras = project["optional-dependencies"]
    assert any(item.startswith("cryptography") for item in extras["simulator"])
    assert "envoy2mqtt[simulator]" in extras["demo"]
    assert any(item.startswith("amqtt") for item in extras["demo"])
    assert "envoy2mqtt[demo]" in extras["dev"]
    assert "'.[demo]'" in (ROOT / "scripts" / "demo").read_text()
