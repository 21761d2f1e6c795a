"""The command line as a user meets it: real `python -m envoy2mqtt` subprocesses against the simulator.

Covers `--version`, `--help` (examples for every command, the exit codes), the exit codes themselves
(2 configuration, 3 authentication, 4 unreachable) for check/token/capture/run, `check` in text and JSON
against the three generated profiles and a few shared captures, `token` (type and expiry, the token only
with `--show`, `token refresh` fetches a new one), `simulate` + `check` the way the README tells a fresh
clone to try it, and the warning about a config file that others can read.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from envoy2mqtt.check import render_text
from envoy2mqtt.cli import EXIT_AUTH, EXIT_CONFIG, EXIT_OK, EXIT_UNREACHABLE, build_parser
from envoy2mqtt.entities import TABLES
from envoy2mqtt.simulator import Simulator, SimulatorConfig
from tests.conftest import CAPTURES, ROOT, free_port

pytestmark = pytest.mark.timeout(120)

PROFILES = ["metered-3phase-iq", "metered-1phase-acb", "legacy-unmetered"]
SHARED = ["7.6.175_with_cts_3phase", "8.2.4382_ACB", "5.0.62", "8.2.127_with_3cts_and_battery_split"]
COMMANDS = ["run", "check", "simulate", "demo", "token", "capture"]


@dataclass(frozen=True, slots=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def both(self) -> str:
        return self.out + self.err


def cli_env(**extra: str) -> dict[str, str]:
    """The parent environment without any ENVOY2MQTT_* variable that could leak into a test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVOY2MQTT_")}
    env.update(extra)
    return env


async def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    """`python -m envoy2mqtt ARGS` as a real subprocess (the event loop keeps serving in-process simulators)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "envoy2mqtt",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env if env is not None else cli_env(),
        cwd=str(ROOT),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(
            f"envoy2mqtt {' '.join(args)} did not finish: {out.decode()} {err.decode()}"
        ) from None
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


def config_for(
    sim: Simulator,
    directory: Path,
    *,
    name: str = "config.toml",
    mode: int = 0o600,
    cloud: bool = True,
    envoy_extra: str = "",
    top_extra: str = "",
) -> Path:
    """A config pointing at `sim` (its fake cloud, Enlighten credentials for token firmware)."""
    lines = [f'state_dir = "{directory / "state"}"', top_extra]
    lines += [
        "[enphase_cloud]",
        f'login_url = "{sim.login_url}"',
        f'token_url = "{sim.token_url}"',
        f'ca_file = "{sim.ca_file}"',
        "[logging]",
        'format = "json"',
        "[[envoy]]",
        f'host = "{sim.url}"',
    ]
    if cloud and sim.token_auth:
        lines.append(f'enlighten_username = "{sim.enlighten_username}"')
        lines.append(f'enlighten_password = "{sim.enlighten_password}"')
    lines.append(envoy_extra)
    path = directory / name
    path.write_text("\n".join(lines) + "\n")
    path.chmod(mode)
    return path


def unreachable_config(directory: Path) -> Path:
    path = directory / "unreachable.toml"
    port = free_port()  # nothing listens there
    path.write_text(f'state_dir = "{directory / "state"}"\n[[envoy]]\nhost = "http://127.0.0.1:{port}"\n')
    path.chmod(0o600)
    return path


def contract_keys(component: str) -> set[str]:
    keys = {e.key for e in TABLES[component]}
    return keys | {"phases"}


def assert_contract_document(doc: dict[str, Any]) -> None:
    """`check --json`: the members the issue names, each with the contract's keys only."""
    for member in ("system", "gateway", "inverters", "batteries", "meters"):
        assert member in doc, member
    assert set(doc["system"]) <= contract_keys("system"), set(doc["system"]) - contract_keys("system")
    assert set(doc["gateway"]) <= contract_keys("gateway"), set(doc["gateway"]) - contract_keys("gateway")
    for component, member in (("inverter", "inverters"), ("battery", "batteries"), ("meter", "meters")):
        for ident, payload in doc[member].items():
            extra = set(payload) - contract_keys(component)
            assert not extra, f"{member}.{ident}: keys outside the contract: {extra}"
    assert doc["gateway"]["serial"]
    assert doc["gateway"]["firmware"]
    assert doc["gateway"]["auth_mode"] in ("legacy", "token")
    assert doc["system"]["timestamp"].endswith("Z")


# ------------------------------------------------------------------------------------------ help, version


async def test_version_and_top_level_help() -> None:
    from envoy2mqtt import __version__

    version = await run_cli("--version")
    assert version.code == EXIT_OK
    assert version.out.strip() == f"envoy2mqtt {__version__}"

    help_ = await run_cli("--help")
    assert help_.code == EXIT_OK
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s", help_.out, re.MULTILINE), f"{command} missing from --help"
        assert f"envoy2mqtt {command}" in help_.out, f"no example for {command} in --help"
    for code in ("0", "1", "2", "3", "4", "5"):
        assert re.search(rf"^\s+{code}\s+\w", help_.out, re.MULTILINE), f"exit code {code} not documented"
    assert "configuration error" in help_.out
    assert "authentication error" in help_.out
    assert "unreachable" in help_.out


async def test_no_command_prints_help_and_exits_2() -> None:
    result = await run_cli()
    assert result.code == EXIT_CONFIG
    assert "usage: envoy2mqtt" in result.out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args([command, "--help"])
    assert stopped.value.code == 0
    text = capsys.readouterr().out
    assert "example" in text
    assert f"envoy2mqtt {command}" in text.split("example", 1)[1]


# ------------------------------------------------------------------------------------------ exit codes


async def test_configuration_errors_exit_2_and_name_the_fix(tmp_path: Path) -> None:
    missing = await run_cli("check", "--config", str(tmp_path / "nope.toml"))
    assert missing.code == EXIT_CONFIG
    assert "configuration file not found" in missing.err

    syntax = tmp_path / "syntax.toml"
    syntax.write_text("state_dir = \n")
    broken = await run_cli("token", "--config", str(syntax))
    assert broken.code == EXIT_CONFIG
    assert str(syntax) in broken.err

    floor = tmp_path / "floor.toml"
    floor.write_text('[polling]\nsystem_interval = 2\n[[envoy]]\nhost = "192.0.2.1"\n')
    too_fast = await run_cli("run", "--config", str(floor))
    assert too_fast.code == EXIT_CONFIG
    assert "polling.system_interval" in too_fast.err
    assert "at least 10 seconds" in too_fast.err

    no_envoy = tmp_path / "empty.toml"
    no_envoy.write_text(f'state_dir = "{tmp_path}"\n')
    nothing = await run_cli("capture", "--config", str(no_envoy), "--output", str(tmp_path / "cap"))
    assert nothing.code == EXIT_CONFIG
    assert "[[envoy]]" in nothing.err
    assert not (tmp_path / "cap").exists()

    unknown = await run_cli("check", env=cli_env(ENVOY2MQTT_ENVOY='[{"host": "x", "colour": "red"}]'))
    assert unknown.code == EXIT_CONFIG
    assert "unknown key" in unknown.err


async def test_unreachable_envoy_exits_4(tmp_path: Path) -> None:
    config = unreachable_config(tmp_path)
    outputs = {}
    for args in (("check", "--json"), ("token",), ("capture", "--output", str(tmp_path / "cap"))):
        result = await run_cli(*args, "--config", str(config))
        assert result.code == EXIT_UNREACHABLE, (args, result)
        assert "Traceback" not in result.err, (args, result.err)
        outputs[args[0]] = result
    document = json.loads(outputs["check"].out)
    assert document["exit_code"] == EXIT_UNREACHABLE
    assert "127.0.0.1" in document["error"]
    assert "Cannot connect" in outputs["token"].err


async def test_authentication_errors_exit_3_with_what_to_fix(tmp_path: Path) -> None:
    async with Simulator(SimulatorConfig(profile="metered-1phase-acb")) as sim:
        config = config_for(sim, tmp_path, envoy_extra="")
        text = config.read_text().replace(sim.enlighten_password, "not-the-password")
        config.write_text(text)
        for args in (("check",), ("token",), ("capture", "--output", str(tmp_path / "cap"))):
            result = await run_cli(*args, "--config", str(config))
            assert result.code == EXIT_AUTH, (args, result)
            assert "enlighten_password" in result.both, (args, result)
            assert "Traceback" not in result.err
            assert "not-the-password" not in result.both

    async with Simulator(SimulatorConfig(profile="legacy-unmetered")) as sim:
        config = config_for(sim, tmp_path, name="legacy.toml", envoy_extra='password = "wrong-pw"')
        result = await run_cli("check", "--config", str(config))
        assert result.code == EXIT_AUTH, result
        assert "password" in result.both
        assert "wrong-pw" not in result.both


# ------------------------------------------------------------------------------------------ check


def _sources() -> list[Any]:
    params: list[Any] = [pytest.param(SimulatorConfig(profile=p), id=p) for p in PROFILES]
    for name in SHARED:
        marks = (
            []
            if (CAPTURES / name).is_dir()
            else [pytest.mark.skip(reason=f"../shared capture {name} absent")]
        )
        params.append(pytest.param(SimulatorConfig(capture_dir=CAPTURES / name), id=name, marks=marks))
    return params


@pytest.mark.parametrize("sim_config", _sources())
async def test_check_text_and_json(sim_config: SimulatorConfig, tmp_path: Path) -> None:
    async with Simulator(sim_config) as sim:
        config = config_for(sim, tmp_path)
        as_json = await run_cli("check", "--json", "--config", str(config))
        assert as_json.code == EXIT_OK, as_json.err
        doc = json.loads(as_json.out)
        assert_contract_document(doc)
        assert doc["gateway"]["serial"] == sim.serial
        assert doc["gateway"]["firmware"] == sim.firmware
        if sim.token_auth:
            assert doc["gateway"]["auth_mode"] == "token"
            assert doc["gateway"]["token_type"] == "owner"
            assert doc["gateway"]["token_expires_at"].endswith("Z")
        else:
            assert doc["gateway"]["auth_mode"] == "legacy"
        stats = sim.requests

        text = await run_cli("check", "--config", str(config))
        assert text.code == EXIT_OK, text.err
        out = text.out
        assert f"{sim.url}: OK" in out
        assert re.search(rf"firmware\s+{re.escape(sim.firmware)}", out)
        assert re.search(rf"auth_mode\s+{doc['gateway']['auth_mode']}", out)
        if sim.token_auth:
            assert re.search(r"token_type\s+owner", out)
            assert re.search(rf"token_expires_at\s+{doc['gateway']['token_expires_at'][:10]}", out)
        assert re.search(rf"inverters\s+{len(doc['inverters'])}\b", out)
        assert re.search(rf"batteries\s+{len(doc['batteries'])}\b", out)
        for feature in ("production_ct", "net_consumption", "iq_batteries", "acb"):
            assert re.search(rf"^\s+{feature}\s+(yes|no)$", out, re.MULTILINE), feature
        # one full normalized reading: every system value appears in the table
        assert "System (" in out
        for key in doc["system"]:
            assert re.search(rf"^\s+{key}\s", out, re.MULTILINE), key
        for ct in doc["meters"]:
            assert f"CT meter {ct}" in out
        for serial in doc["inverters"]:
            assert serial in out
        assert not re.search(r"eyJ[\w-]+\.eyJ", out + as_json.out)
        assert stats  # the simulator served the requests


async def test_check_two_envoys_one_unreachable(tmp_path: Path) -> None:
    async with Simulator(SimulatorConfig(profile="legacy-unmetered")) as sim:
        dead = free_port()
        config = config_for(
            sim,
            tmp_path,
            envoy_extra=f'name = "alive"\n[[envoy]]\nname = "dead"\nhost = "http://127.0.0.1:{dead}"',
        )
        result = await run_cli("check", "--json", "--config", str(config))
        assert result.code == EXIT_UNREACHABLE
        alive, gone = json.loads(result.out)
        assert alive["envoy"] == "alive"
        assert_contract_document(alive)
        assert gone == {"envoy": "dead", "error": gone["error"], "exit_code": EXIT_UNREACHABLE}
        # the text form of the same results (rendered in-process: another run costs the retry time again)
        assert render_text(alive).startswith("Envoy alive: OK")
        assert render_text(gone) == f"dead: FAILED — {gone['error']}"


# ------------------------------------------------------------------------------------------ token


async def test_token_shows_type_and_expiry_never_the_token_unless_asked(tmp_path: Path) -> None:
    async with Simulator(SimulatorConfig(profile="metered-3phase-iq", token_lifetime=30 * 86400)) as sim:
        config = config_for(sim, tmp_path)
        first = await run_cli("token", "--config", str(config))
        assert first.code == EXIT_OK, first.err
        assert sim.cloud_calls["tokens"] == 1
        store = tmp_path / "state" / "tokens" / f"{sim.serial}.json"
        token = _stored_token(store)
        assert f"serial {sim.serial}, owner token, expires " in first.out
        assert re.search(r"\((29\.9|30\.0) days left\)", first.out), first.out
        assert token not in first.both
        assert not re.search(r"eyJ[\w-]+\.eyJ", first.both)

        again = await run_cli("token", "show", "--config", str(config))
        assert again.code == EXIT_OK
        assert sim.cloud_calls["tokens"] == 1  # the stored token is reused
        assert token not in again.both

        shown = await run_cli("token", "--show", "--config", str(config))
        assert shown.code == EXIT_OK
        assert f"token: {token}" in shown.out
        assert token not in shown.err  # the logs stay redacted even then

        refreshed = await run_cli("token", "refresh", "--config", str(config))
        assert refreshed.code == EXIT_OK, refreshed.err
        assert sim.cloud_calls["tokens"] == 2
        new_token = _stored_token(store)
        assert new_token != token
        assert new_token not in refreshed.both
        assert "owner token" in refreshed.out
        assert stat.S_IMODE(store.stat().st_mode) == 0o600
        assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700


async def test_token_on_legacy_firmware_says_so(tmp_path: Path) -> None:
    async with Simulator(SimulatorConfig(profile="legacy-unmetered")) as sim:
        config = config_for(sim, tmp_path)
        result = await run_cli("token", "--config", str(config))
        assert result.code == EXIT_OK
        assert "legacy digest authentication (no token)" in result.out


def _stored_token(path: Path) -> str:
    data = json.loads(path.read_text())
    found = [v for v in _strings(data) if v.startswith("eyJ")]
    assert len(found) == 1, data.keys()
    return found[0]


def _strings(data: Any) -> list[str]:
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [s for v in data.values() for s in _strings(v)]
    if isinstance(data, list):
        return [s for v in data for s in _strings(v)]
    return []


# ------------------------------------------------------------------------------------------ config file


async def test_config_readable_by_others_with_secrets_warns(tmp_path: Path) -> None:
    async with Simulator(SimulatorConfig(profile="legacy-unmetered")) as sim:
        private = config_for(
            sim, tmp_path, name="private.toml", envoy_extra=f'password = "{sim.legacy_envoy_password}"'
        )
        quiet = await run_cli("check", "--config", str(private))
        assert quiet.code == EXIT_OK
        assert "readable by other users" not in quiet.err

        shared = config_for(
            sim,
            tmp_path,
            name="shared.toml",
            mode=0o644,
            envoy_extra=f'password = "{sim.legacy_envoy_password}"',
        )
        loud = await run_cli("check", "--config", str(shared))
        assert loud.code == EXIT_OK
        assert (
            f"warning: {shared} contains secrets and is readable by other users: run chmod 600 {shared}"
            in loud.err
        )

        no_secret = config_for(sim, tmp_path, name="nosecret.toml", mode=0o644)
        fine = await run_cli("check", "--config", str(no_secret))
        assert fine.code == EXIT_OK
        assert "readable by other users" not in fine.err


async def test_check_keeps_the_state_dir_private(tmp_path: Path) -> None:
    async with Simulator(SimulatorConfig(profile="metered-1phase-acb")) as sim:
        config = config_for(sim, tmp_path)
        result = await run_cli("check", "--config", str(config))
        assert result.code == EXIT_OK, result.err
    state = tmp_path / "state"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for path in state.rglob("*"):
        expected = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


# ------------------------------------------------------------------------------------------ fresh clone


async def test_simulate_then_check_like_the_readme(tmp_path: Path) -> None:
    """`envoy2mqtt simulate --profile legacy-unmetered --port P`, then `check` with only environment variables."""
    port = free_port()
    sim = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "envoy2mqtt",
        "simulate",
        "--profile",
        "legacy-unmetered",
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=cli_env(),
        cwd=str(tmp_path),
    )
    try:
        assert sim.stdout is not None
        banner: list[str] = []
        while not any(line.startswith("Fault control") for line in banner):
            line = await asyncio.wait_for(sim.stdout.readline(), 30)
            assert line, f"simulate ended early: {banner}"
            banner.append(line.decode().rstrip())
        assert f"Envoy URL:        http://127.0.0.1:{port}" in banner
        env = cli_env(
            ENVOY2MQTT_ENVOY=json.dumps([{"host": f"127.0.0.1:{port}"}]),
            ENVOY2MQTT_STATE_DIR=str(tmp_path / "state"),
        )
        result = await run_cli("check", env=env)
        assert result.code == EXIT_OK, result.both
        assert re.search(r"auth_mode +legacy", result.out)
        assert "Microinverters (" in result.out
        as_json = await run_cli("check", "--json", env=env)
        assert_contract_document(json.loads(as_json.out))
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            code = await asyncio.wait_for(sim.wait(), 10)
        except TimeoutError:
            sim.kill()
            code = await sim.wait()
    assert code == EXIT_OK
