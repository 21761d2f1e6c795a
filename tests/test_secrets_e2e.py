"""Secrets never leak: the daemon at debug level through every auth flow, then check, token and capture.

For each flow a real `envoy2mqtt run` subprocess talks to the simulator and a real mosquitto while a
watcher records every MQTT message. Then `check`, `check --json`, `token` and `capture` run against the
same simulator with the same configuration. Every byte they produced (daemon output, MQTT topics and
payloads, command output, the capture folder) is searched for every secret of the flow: configured
passwords (legacy `envoy` user, installer, Enlighten, MQTT), every token that existed (pasted, issued by
the cloud and kept in the token store), every `sessionId` cookie the simulated Envoy handed out, and
anything shaped like a JWT or a 32-hex-digit session id. The state directory stays private.
"""

from __future__ import annotations

import json
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from envoy2mqtt.simulator import Simulator, SimulatorConfig
from tests.conftest import Mosquitto
from tests.e2e import Daemon, Watcher
from tests.test_cli import cli_env, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

BASE = "envoy2mqtt"
JWT = re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}")
HEX_SESSION = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{32}(?![0-9A-Za-z])")


@dataclass(frozen=True, slots=True)
class Flow:
    name: str
    profile: str
    legacy_password: str | None = None  # simulator's `envoy` password (None: derived from the serial)
    user: str = ""  # envoy.username
    cloud: bool = False  # configure Enlighten credentials
    wrong_enlighten: bool = False
    pasted: bool = False
    mfa: bool = False
    garbage: bool = False
    storm: bool = False  # 401 storm once data flows
    works: bool = True  # data reaches MQTT
    wait_log: str = ""  # failure flows: the log event that proves the flow ran


FLOWS = [
    Flow("legacy-digest-custom-password", "legacy-unmetered", legacy_password=f"pw-{secrets.token_hex(5)}"),
    Flow("legacy-installer", "legacy-unmetered", user="installer"),
    Flow("pasted-token", "metered-1phase-acb", pasted=True),
    # the cloud fetch, then a 401 storm: revalidation fails, a new token is fetched and refused too
    Flow("enlighten-cloud-fetch-then-401-storm", "metered-3phase-iq", cloud=True, storm=True),
    Flow("mfa-answer", "metered-1phase-acb", cloud=True, mfa=True, works=False, wait_log="multi-factor"),
    Flow(
        "garbage-token",
        "metered-1phase-acb",
        cloud=True,
        garbage=True,
        works=False,
        wait_log="token_fetch_failed",
    ),
    Flow(
        "wrong-enlighten-password",
        "metered-1phase-acb",
        cloud=True,
        wrong_enlighten=True,
        works=False,
        wait_log="token_fetch_failed",
    ),
]


@dataclass
class Secrets:
    values: set[str] = field(default_factory=set)

    def add(self, *values: str) -> None:
        self.values.update(v for v in values if v)

    def find_in(self, text: str, where: str) -> list[str]:
        leaks = [f"{where}: secret {_hint(v)}" for v in self.values if v in text]
        leaks += [f"{where}: JWT-like {_hint(m)}" for m in JWT.findall(text)]
        leaks += [f"{where}: session-id-like {_hint(m)}" for m in HEX_SESSION.findall(text)]
        return leaks


def _hint(value: str) -> str:
    return f"{value[:4]}…({len(value)} chars)"


def _session_cookies(sim: Simulator) -> set[str]:
    """The `sessionId` cookies the simulated Envoy handed out (no public accessor: read its authority)."""
    authority = sim._tokens
    sessions: dict[str, float] = authority._sessions
    return set(sessions)


def _stored_tokens(state: Path) -> set[str]:
    found = set()
    for path in (state / "tokens").glob("*.json"):
        found |= set(JWT.findall(path.read_text())) | {json.loads(path.read_text()).get("token", "")}
    return {t for t in found if t}


def _config(
    directory: Path, sim: Simulator, flow: Flow, broker: int, mqtt_password: str, envoy: list[str]
) -> Path:
    text = "\n".join(
        [
            f'state_dir = "{directory / "state"}"',
            "[mqtt]",
            'host = "127.0.0.1"',
            f"port = {broker}",
            'username = "bridge"',
            f'password = "{mqtt_password}"',
            "[polling]",
            "system_interval = 10",
            "device_interval = 60",
            "[enphase_cloud]",
            f'login_url = "{sim.login_url}"',
            f'token_url = "{sim.token_url}"',
            f'ca_file = "{sim.ca_file}"',
            "[logging]",
            'level = "debug"',
            'format = "json"',
            "[[envoy]]",
            f'host = "{sim.url}"',
            *envoy,
        ]
    )
    path = directory / "config.toml"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("flow", FLOWS, ids=[f.name for f in FLOWS])
async def test_no_secret_leaks_through_any_auth_flow(
    flow: Flow, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    found = Secrets()
    mqtt_password = f"mqtt-{secrets.token_hex(6)}"
    enlighten_password = f"enl-{secrets.token_hex(6)}"
    found.add(mqtt_password, enlighten_password)
    sim = Simulator(SimulatorConfig(profile=flow.profile, legacy_password=flow.legacy_password))
    sim.enlighten_password = enlighten_password  # the fake cloud accepts only this one
    sim.cloud.mfa = flow.mfa
    sim.cloud.garbage_token = flow.garbage

    async with sim, Watcher(mosquitto.port) as watcher:
        found.add(sim.installer_password)
        envoy: list[str] = []
        if flow.legacy_password:
            envoy.append(f'password = "{flow.legacy_password}"')
            found.add(flow.legacy_password)
        if flow.user == "installer":
            envoy += ['username = "installer"', f'password = "{sim.installer_password}"']
        if flow.pasted:
            pasted = sim.issue_token("owner")
            envoy.append(f'token = "{pasted}"')
            found.add(pasted)
        if flow.cloud:
            configured = "not-" + enlighten_password if flow.wrong_enlighten else enlighten_password
            envoy += [
                f'enlighten_username = "{sim.enlighten_username}"',
                f'enlighten_password = "{configured}"',
            ]
            found.add(configured)
        config = _config(tmp_path, sim, flow, mosquitto.port, mqtt_password, envoy)
        env = cli_env()

        daemon = Daemon(config, tmp_path / "daemon.log", env=env)
        await daemon.start()
        prefix = f"{BASE}/{sim.serial}"
        try:
            if flow.works:
                await watcher.wait_for(
                    lambda: (
                        f"{prefix}/system" in watcher.latest
                        and any(t.startswith(f"{prefix}/inverter/") for t in watcher.latest)
                    ),
                    40,
                    "system and inverter readings",
                )
            if flow.storm:
                polls = sim.requests["/ivp/meters/readings"]  # read every system cycle
                sim.faults.unauthorized(3)  # the poll, check_jwt, the new token's check_jwt
                await watcher.wait_for(
                    lambda: sim.faults.snapshot()["unauthorized"] == 0, 40, "the 401 storm to be consumed"
                )
                assert sim.requests["/ivp/meters/readings"] > polls
                await watcher.wait_for(
                    lambda: "token_rejected_by_envoy" in daemon.log_text(),
                    10,
                    "the daemon to notice the storm",
                )
            if flow.wait_log:
                await watcher.wait_for(lambda: flow.wait_log in daemon.log_text(), 40, flow.wait_log)
            debug = [line for line in daemon.log_lines() if line.get("level") == "debug"]
            assert debug, "the daemon did not log at debug level"
        finally:
            code, _ = await daemon.terminate()
        assert code == 0
        found.add(*_session_cookies(sim), *_stored_tokens(tmp_path / "state"))

        # the one-shot commands, also at debug level, against the same simulator and state
        if flow.storm:
            sim.faults.unauthorized(2)
        outputs = {
            "check": await run_cli("check", "--config", str(config), env=env),
            "check --json": await run_cli("check", "--json", "--config", str(config), env=env),
            "token": await run_cli("token", "--config", str(config), env=env),
            "capture": await run_cli(
                "capture", "--config", str(config), "-o", str(tmp_path / "cap"), env=env
            ),
        }
        for name, result in outputs.items():
            assert result.code == (0 if flow.works else 3), (name, result.code, result.err[-2000:])
        found.add(*_session_cookies(sim), *_stored_tokens(tmp_path / "state"))

    if flow.pasted or (flow.cloud and flow.works):
        assert any(v.startswith("eyJ") for v in found.values), (
            "the flow used no token: the test proves nothing"
        )
    if sim.token_auth and flow.works:
        assert _session_cookies(sim) or flow.pasted, "no sessionId cookie was handed out"

    leaks = found.find_in(daemon.log_text(), "daemon output")
    for event in watcher.events:
        leaks += found.find_in(
            event.topic + " " + event.payload.decode(errors="replace"), f"MQTT {event.topic}"
        )
    for name, result in outputs.items():
        leaks += found.find_in(result.out + result.err, f"`{name}` output")
    capture = tmp_path / "cap"
    if capture.is_dir():
        for path in sorted(capture.iterdir()):
            leaks += found.find_in(path.read_text(errors="replace"), f"capture file {path.name}")
    assert not leaks, "\n".join(leaks)
    assert watcher.events, "nothing reached the broker"
    if flow.works:
        assert (capture / "info").is_file()

    # token and state files 0600 in 0700 directories
    state = tmp_path / "state"
    assert _mode(state) == 0o700
    for path in state.rglob("*"):
        assert _mode(path) == (0o700 if path.is_dir() else 0o600), path
    if flow.works:
        assert list(state.glob("counters-*.json")), "the daemon kept no counter state"
    if flow.works and sim.token_auth and not flow.pasted:
        assert list((state / "tokens").glob("*.json"))


def test_the_leak_search_finds_what_it_looks_for() -> None:
    """The detector itself: a search that cannot fail would prove nothing."""
    found = Secrets()
    found.add("hunter2-secret")
    token = "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiIxMjM0NTYifQ.sig"
    assert found.find_in('{"password": "hunter2-secret"}', "x")
    assert found.find_in(f"Authorization: Bearer {token}", "x")
    assert found.find_in("Cookie: sessionId=0123456789abcdef0123456789abcdef", "x")
    assert not found.find_in("serial 122301234561, fingerprint " + "ab" * 32 + ", power 1200 W", "x")
