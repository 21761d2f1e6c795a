"""Packaging files: Dockerfile, .dockerignore, docker-compose.yml, Mosquitto config, systemd unit.

The image itself is built and run by scripts/container-test (it needs a Docker engine, so it is not
part of this suite); here each piece that can run outside Docker runs for real: the HEALTHCHECK
command against a real health listener, the ENTRYPOINT script under /bin/sh, the compose Mosquitto
config under a real mosquitto, the unit under systemd-analyze.
"""

from __future__ import annotations

import fnmatch
import getpass
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from envoy2mqtt.config import HealthSettings
from envoy2mqtt.health import HealthServer
from envoy2mqtt.metrics import Metrics
from tests.conftest import ROOT, Mosquitto, free_port, mosquitto_binary, wait_port

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
MOSQUITTO_CONF = ROOT / "contrib" / "mosquitto.conf"
UNIT = ROOT / "contrib" / "envoy2mqtt.service"


# --- Dockerfile ----------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, rest = pending.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def instruction(name: str) -> list[str]:
    return [args for keyword, args in dockerfile_instructions() if keyword == name]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list)
    assert all(isinstance(item, str) for item in value)
    return value


def build_args() -> dict[str, str]:
    """ARG name=default, global and per stage."""
    args: dict[str, str] = {}
    for arg in instruction("ARG"):
        name, _, default = arg.partition("=")
        args.setdefault(name, default.strip('"'))
    return args


def test_every_stage_builds_on_the_base_argument_pinned_to_an_exact_slim_python() -> None:
    """One PYTHON_IMAGE argument for every stage: the official image by default, a local base on demand."""
    stages = instruction("FROM")
    assert len(stages) >= 2, "multi-stage: a builder and a runtime"
    assert re.fullmatch(r"python:3\.12\.\d+-slim-bookworm", build_args()["PYTHON_IMAGE"])
    for stage in stages:
        assert stage.split()[0] == "${PYTHON_IMAGE}", stage
    assert stages[0].endswith(" AS builder")
    assert dockerfile_instructions()[0][0] == "ARG", "the base argument comes before the first FROM"


def test_plain_docker_build_works_without_buildkit() -> None:
    """No `# syntax=` frontend (it is pulled from Docker Hub) and no BuildKit-only `RUN --mount`."""
    assert not DOCKERFILE.read_text().startswith("# syntax="), "the frontend image would be pulled"
    assert not any(run.startswith("--") for run in instruction("RUN")), "RUN flags need BuildKit"
    copies = [copy for copy in instruction("COPY") if copy.startswith("--from=builder")]
    assert copies == ["--from=builder /opt/envoy2mqtt /opt/envoy2mqtt"], (
        "the runtime takes the builder's venv"
    )


def test_the_runtime_environment_holds_no_installer_and_no_optional_extra() -> None:
    (builder_run,) = [run for run in instruction("RUN") if "python3 -m venv /opt/envoy2mqtt" in run]
    assert "pip uninstall --yes pip setuptools wheel" in builder_run
    assert "${EXTRAS:+[${EXTRAS}]}" in builder_run, "extras only when asked for"
    assert build_args()["EXTRAS"] == "", "the default image has no extra (no cryptography, no amqtt)"
    (runtime_run,) = [run for run in instruction("RUN") if "useradd" in run]
    assert "site-packages/pip" in runtime_run, "the base image's own pip is removed from the runtime"


def test_runtime_runs_as_a_fixed_non_root_user() -> None:
    users = instruction("USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit()
    assert int(user) >= 1000
    assert any(f"--uid {user}" in run for run in instruction("RUN"))


def test_no_architecture_specific_strings() -> None:
    text = DOCKERFILE.read_text().lower()
    for arch in ("amd64", "x86_64", "x86-64", "aarch64", "arm64", "armv7", "armhf", "i386", "--platform"):
        assert arch not in text


def test_image_environment_volume_port_labels() -> None:
    env = " ".join(instruction("ENV"))
    assert "ENVOY2MQTT_STATE_DIR=/data" in env
    assert "ENVOY2MQTT_HEALTH__ENABLED=true" in env
    assert "ENVOY2MQTT_HEALTH__HOST=0.0.0.0" in env
    assert "ENVOY2MQTT_HEALTH__PORT=8080" in env
    # set unconditionally it would break "configured only by environment" (a missing file is an error)
    assert "ENVOY2MQTT_CONFIG" not in env
    assert instruction("EXPOSE") == ["8080"]
    assert any("/data" in volume for volume in instruction("VOLUME"))
    labels = " ".join(instruction("LABEL"))
    for key in ("title", "description", "source", "licenses", "version"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert exec_form(instruction("CMD")[-1]) == ["run"]


def test_builder_copies_only_files_that_exist_and_are_in_the_context() -> None:
    for copy in instruction("COPY"):
        if copy.startswith("--from"):
            continue
        *sources, _destination = copy.split()
        matched = False
        for source in sources:
            found = list(ROOT.glob(source.rstrip("/")))
            if not any(ch in source for ch in "*?["):
                assert found, f"COPY {source}: no such file in the repository"
            for path in found:
                matched = True
                assert not docker_ignored(path.relative_to(ROOT).as_posix()), f"{path} is in .dockerignore"
        assert matched


def docker_ignored(path: str) -> bool:
    """.dockerignore semantics for the patterns used here: last match wins, a directory covers its files."""
    ignored = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        variants = [pattern]
        if pattern.startswith("**/"):
            variants.append(pattern[3:])
        hit = any(
            fnmatch.fnmatchcase(candidate, variant)
            or fnmatch.fnmatchcase(candidate.rsplit("/", 1)[-1], variant)
            if variant.startswith(("*", "**")) and "/" not in variant.lstrip("*/")
            else fnmatch.fnmatchcase(candidate, variant)
            for candidate in candidates
            for variant in variants
        )
        if hit:
            ignored = not negated
    return ignored


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("pyproject.toml", False),
        ("envoy2mqtt/cli.py", False),
        ("envoy2mqtt/__pycache__/cli.cpython-312.pyc", True),
        ("config/config.toml", True),
        ("config.example.toml", True),
        ("state/tokens.json", True),
        (".env", True),
        (".git/config", True),
        (".venv/bin/python", True),
        ("tests/conftest.py", True),
    ],
)
def test_dockerignore_keeps_secrets_out_of_the_build_context(path: str, ignored: bool) -> None:
    assert docker_ignored(path) is ignored


async def test_healthcheck_command_probes_the_health_listener(tmp_path: Path) -> None:
    (healthcheck,) = instruction("HEALTHCHECK")
    assert "--interval=" in healthcheck
    command = exec_form(healthcheck.split(" CMD ", 1)[1])
    assert command[0] == "python", "slim images have no curl: Python's urllib does the probe"
    command[0] = sys.executable
    port = free_port()
    env = {**os.environ, "ENVOY2MQTT_HEALTH__PORT": str(port)}

    async def probe() -> int:
        import asyncio

        process = await asyncio.create_subprocess_exec(*command, env=env, cwd=tmp_path)
        return await asyncio.wait_for(process.wait(), 30)

    assert await probe() != 0, "nothing listens yet: the probe must fail"
    server = HealthServer(HealthSettings(enabled=True, port=port), Metrics(), lambda: (False, {}))
    await server.start()
    try:
        assert await probe() == 0
    finally:
        await server.stop()


def run_entrypoint(tmp_path: Path, config_exists: bool, env: dict[str, str] | None = None) -> list[str]:
    """Run the image's ENTRYPOINT + CMD under /bin/sh with a stub envoy2mqtt that reports what it got."""
    entrypoint = exec_form(instruction("ENTRYPOINT")[-1])
    cmd = exec_form(instruction("CMD")[-1])
    tmp_path.mkdir()
    config = tmp_path / "config" / "config.toml"
    if config_exists:
        config.parent.mkdir()
        config.write_text("[[envoy]]\nhost = 'envoy.local'\n")
    entrypoint = [part.replace("/config/config.toml", str(config)) for part in entrypoint]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    stub = bindir / "envoy2mqtt"
    stub.write_text('#!/bin/sh\necho "config=${ENVOY2MQTT_CONFIG:-<unset>}"\necho "args=$*"\n')
    stub.chmod(0o755)
    result = subprocess.run(
        [*entrypoint, *cmd],
        env={"PATH": f"{bindir}:/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.splitlines()


def test_entrypoint_uses_the_config_file_only_when_it_exists(tmp_path: Path) -> None:
    assert run_entrypoint(tmp_path / "a", config_exists=False) == ["config=<unset>", "args=run"]
    with_file = run_entrypoint(tmp_path / "b", config_exists=True)
    assert with_file == [f"config={tmp_path / 'b' / 'config' / 'config.toml'}", "args=run"]
    explicit = run_entrypoint(
        tmp_path / "c", config_exists=True, env={"ENVOY2MQTT_CONFIG": "/elsewhere.toml"}
    )
    assert explicit == ["config=/elsewhere.toml", "args=run"]


def test_entrypoint_passes_other_commands_through(tmp_path: Path) -> None:
    entrypoint = exec_form(instruction("ENTRYPOINT")[-1])
    bindir = tmp_path / "bin"
    bindir.mkdir()
    stub = bindir / "envoy2mqtt"
    stub.write_text('#!/bin/sh\necho "args=$*"\n')
    stub.chmod(0o755)
    result = subprocess.run(
        [*entrypoint, "check", "--json"],
        env={"PATH": f"{bindir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.strip() == "args=check --json"


# --- docker-compose.yml --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def test_compose_services_volumes_restart(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"mosquitto", "envoy2mqtt"} <= set(services)

    broker = services["mosquitto"]
    assert re.fullmatch(r"eclipse-mosquitto:2\.\d+\.\d+", broker["image"])
    assert "./contrib/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" in broker["volumes"]
    assert any(v.endswith(":/mosquitto/data") for v in broker["volumes"])
    assert broker["restart"] == "unless-stopped"
    assert (ROOT / "contrib" / "mosquitto.conf").is_file()

    bridge = services["envoy2mqtt"]
    assert bridge["build"] == "."
    assert bridge["restart"] == "unless-stopped"
    assert "./config:/config:ro" in bridge["volumes"]
    assert "envoy2mqtt-data:/data" in bridge["volumes"]
    assert "mosquitto" in bridge["depends_on"]
    assert bridge["environment"]["ENVOY2MQTT_MQTT__HOST"] == "mosquitto"
    assert "profiles" not in bridge
    assert "profiles" not in broker

    declared = set(compose["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            name = volume.split(":")[0]
            if not name.startswith((".", "/")):
                assert name in declared, f"volume {name} is not declared"


def test_compose_health_port_is_published_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if str(port).endswith(":8080"):
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes the health port to the LAN"


def test_compose_demo_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    demo = {name: s for name, s in services.items() if "demo" in s.get("profiles", [])}
    assert "simulator" in demo
    command = demo["simulator"]["command"]
    assert command[0] == "simulate"
    assert "--live" in command
    assert command[command.index("--host") + 1] == "0.0.0.0"
    profile = command[command.index("--profile") + 1]
    assert profile in ("metered-3phase-iq", "metered-1phase-acb", "legacy-unmetered")
    port = command[command.index("--port") + 1]

    # the simulator needs the simulator extra; the bridge's own image does not carry it
    assert demo["simulator"]["build"]["args"]["EXTRAS"] == "simulator"
    assert demo["simulator"]["image"] != services["envoy2mqtt"]["image"]

    (reader,) = [s for name, s in demo.items() if name != "simulator"]
    env = reader["environment"]
    envoys = json.loads(env["ENVOY2MQTT_ENVOY"])
    assert envoys[0]["host"] in (f"http://simulator:{port}", f"https://simulator:{port}", f"simulator:{port}")
    if profile != "legacy-unmetered":  # token firmware: the reader needs a token or the fake cloud
        assert envoys[0].get("token") or env.get("ENVOY2MQTT_ENPHASE_CLOUD__LOGIN_URL")
    assert env["ENVOY2MQTT_MQTT__HOST"] == "mosquitto"
    assert "simulator" in reader["depends_on"]
    assert not any(v.startswith("./config") for v in reader.get("volumes", [])), (
        "configured by environment only"
    )


def test_compose_environment_is_valid_configuration(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo bridge's environment (plus the image's) loads with the real settings loader."""
    from envoy2mqtt.config import load_settings

    image_env = {}
    for env in instruction("ENV"):
        for item in re.findall(r"(\w+)=(\S+)", env):
            image_env[item[0]] = item[1]
    for key in [k for k in os.environ if k.startswith("ENVOY2MQTT_")]:
        monkeypatch.delenv(key)
    for name, service in compose["services"].items():
        if name == "simulator" or "environment" not in service:
            continue
        for key, value in {**image_env, **service["environment"]}.items():
            if key.startswith("ENVOY2MQTT_"):
                monkeypatch.setenv(key, str(value))
        if "ENVOY2MQTT_ENVOY" not in service["environment"]:
            monkeypatch.setenv(
                "ENVOY2MQTT_ENVOY", '[{"host": "envoy.local"}]'
            )  # from config.toml in real use
        settings = load_settings(None)
        assert settings.mqtt.host == "mosquitto"
        assert settings.health.enabled
        assert settings.health.host == "0.0.0.0"
        assert str(settings.state_dir) == "/data"
        for key in [k for k in os.environ if k.startswith("ENVOY2MQTT_")]:
            monkeypatch.delenv(key)


def test_compose_mosquitto_config_runs_under_a_real_mosquitto(tmp_path: Path) -> None:
    mosquitto_binary()
    port = free_port()
    text = MOSQUITTO_CONF.read_text()
    assert re.search(r"^listener 1883$", text, re.M)
    data = tmp_path / "data"
    data.mkdir()
    text = re.sub(r"^listener 1883$", f"listener {port} 127.0.0.1", text, flags=re.M)
    text = text.replace("/mosquitto/data/", f"{data}/")
    # started as root, mosquitto would switch to the "mosquitto" user, which cannot write in tmp_path
    text += f"\nuser {getpass.getuser()}\n"
    broker = Mosquitto(tmp_path, extra_config=text, port=port)
    broker.write_config = lambda: broker.conf.write_text(text)  # type: ignore[method-assign]
    broker.start()
    try:
        wait_port(port)
        assert broker.proc is not None
        assert broker.proc.poll() is None
    finally:
        broker.stop()
    log = broker.log.read_text()
    assert "Error" not in log, log


# --- systemd unit --------------------------------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key, []).append(value)
    return settings


def test_unit_file_settings() -> None:
    unit = unit_settings()
    assert unit["ExecStart"] == ["/opt/envoy2mqtt/bin/envoy2mqtt run --config /etc/envoy2mqtt/config.toml"]
    assert unit.get("DynamicUser") == ["yes"] or unit.get("User", [""])[0] not in ("", "root")
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartSec"]
    assert unit["StateDirectory"] == ["envoy2mqtt"]
    assert "ENVOY2MQTT_STATE_DIR=%S/envoy2mqtt" in unit["Environment"]
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet": "",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
    }.items():
        assert unit[key] == [value], key
    assert "@system-service" in unit["SystemCallFilter"]


def verifiable_unit(tmp_path: Path) -> Path:
    """The shipped unit, with ExecStart pointed at an executable stub when the real binary is absent."""
    text = UNIT.read_text()
    binary = "/opt/envoy2mqtt/bin/envoy2mqtt"
    if not Path(binary).exists():
        stub = tmp_path / "envoy2mqtt"
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
        text = text.replace(binary, str(stub))
    copy = tmp_path / "envoy2mqtt.service"
    copy.write_text(text)
    return copy


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    unit = verifiable_unit(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "envoy2mqtt.service" not in result.stderr, result.stderr  # no warning about our unit


def test_systemd_security_exposure_is_low(tmp_path: Path) -> None:
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    unit = verifiable_unit(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    if match is None:
        pytest.skip(f"this systemd-analyze cannot score a unit offline: {result.stderr.strip()[:200]}")
    assert float(match.group(1)) <= 2.0, result.stdout
