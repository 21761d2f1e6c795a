"""Controls end to end: the daemon as a real subprocess, a real mosquitto, the simulator over real HTTP.

Every control and every simulator behaviour (applied, not_applied, reverted, rejected, slow relay,
dry contacts that read open after a write), retained commands ignored, invalid values rejected with
nothing sent (the simulator's write log), one audit line per command and never a secret in it, and
with controls off nothing subscribed and nothing announced.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from envoy2mqtt.mqtt.validator import validate_device_discovery
from envoy2mqtt.simulator import Simulator, SimulatorConfig
from tests.conftest import Mosquitto
from tests.e2e import Daemon, Watcher, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

BASE = "envoy2mqtt"
FAST_CONTROLS = """[controls]
min_gap = 0.5
readback_timeout = 4
relay_readback_timeout = 12
dry_contact_readback_timeout = 12
readback_interval = 0.3
watch_duration = 8
watch_interval = 0.4
refresh_interval = 600
"""


def _envoy(sim: Simulator, **flags: bool) -> str:
    lines = [
        "[[envoy]]",
        f'host = "{sim.url}"',
        f'enlighten_username = "{sim.enlighten_username}"',
        f'enlighten_password = "{sim.enlighten_password}"',
    ]
    lines += [f"{key} = {'true' if value else 'false'}" for key, value in flags.items()]
    return "\n".join(lines) + "\n"


@asynccontextmanager
async def _site(
    tmp_path: Path,
    mosquitto: Mosquitto,
    sim: Simulator,
    *,
    before_start: list[tuple[str, str]] = (),
    **flags: bool,
) -> AsyncIterator[tuple[Daemon, Watcher]]:
    config = write_config(tmp_path, mosquitto.port, _envoy(sim, **flags), sim=sim, extra=FAST_CONTROLS)
    async with Watcher(mosquitto.port) as watcher:
        for topic, payload in before_start:
            await _publish(mosquitto, topic, payload, retain=True)
        daemon = Daemon(config, tmp_path / "daemon.log")
        await daemon.start()
        try:
            await watcher.wait_for(
                lambda: f"{BASE}/{sim.serial}/system" in watcher.latest, 60, "the system state"
            )
            yield daemon, watcher
        finally:
            code, _ = await daemon.terminate()
            assert code == 0


async def _publish(mosquitto: Mosquitto, topic: str, payload: str, *, retain: bool = False) -> None:
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.publish(topic, payload, qos=1, retain=retain)


def _state(watcher: Watcher, serial: str) -> dict[str, Any]:
    raw = watcher.latest.get(f"{BASE}/{serial}/control")
    return json.loads(raw) if raw else {}


async def _command(
    mosquitto: Mosquitto,
    watcher: Watcher,
    serial: str,
    control: str,
    payload: str,
    result: str,
    timeout: float = 30,
) -> dict[str, Any]:
    """Send one command and wait for its last_result (the result of *this* command: a new time or reason)."""
    before = _state(watcher, serial).get("last_result")
    await _publish(mosquitto, f"{BASE}/{serial}/control/{control}/set", payload)

    def done() -> bool:
        last = _state(watcher, serial).get("last_result")
        return bool(last) and last != before and last["control"] == control and last["result"] == result

    await watcher.wait_for(done, timeout, f"{control}={payload} -> {result}; state {_state(watcher, serial)}")
    state = _state(watcher, serial)
    assert state["pending"] == {} or control not in state["pending"]
    return state


def _writes(sim: Simulator) -> list[tuple[str, str, Any]]:
    assert sim.controls is not None
    return [(w.method, w.path, w.body) for w in sim.controls.writes]


def _audit(daemon: Daemon) -> list[dict[str, Any]]:
    return [line for line in daemon.log_lines() if line.get("event") == "control_command"]


def _controls_config(watcher: Watcher, serial: str) -> dict[str, Any] | None:
    raw = watcher.latest.get(f"homeassistant/device/envoy2mqtt_{serial}_controls/config")
    return json.loads(raw) if raw else None


async def test_every_control_and_behaviour(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sim_config = SimulatorConfig(
        enpower=True, token_type="installer", relay_seconds=2.0, dry_contact_settle_seconds=1.0
    )
    async with Simulator(sim_config) as sim:
        assert sim.controls is not None
        serial = sim.serial
        retained = (f"{BASE}/{serial}/control/production/set", "OFF")
        async with _site(
            tmp_path, mosquitto, sim, before_start=[retained], controls=True, allow_grid_relay=True
        ) as (daemon, watcher):
            every = {"storage_mode", "reserve_soc", "charge_from_grid", "grid_relay", "production",
                     "export_limit", "dry_contact_nc1", "dry_contact_nc2", "dry_contact_no1", "dry_contact_no2"}  # fmt: skip
            await watcher.wait_for(
                lambda: (
                    every <= set(_state(watcher, serial)) and _controls_config(watcher, serial) is not None
                ),
                30,
                "the control state and its discovery",
            )
            state = _state(watcher, serial)
            assert {k: state[k] for k in sorted(every)} == {
                "charge_from_grid": "OFF", "dry_contact_nc1": "ON", "dry_contact_nc2": "ON",
                "dry_contact_no1": "ON", "dry_contact_no2": "ON", "export_limit": "OFF", "grid_relay": "ON",
                "production": "ON", "reserve_soc": 20, "storage_mode": "self-consumption",
            }  # fmt: skip
            doc = _controls_config(watcher, serial)
            assert doc is not None
            topic = f"homeassistant/device/envoy2mqtt_{serial}_controls/config"
            assert validate_device_discovery(topic, doc) == []
            assert {c.removeprefix("control_") for c in doc["components"]} == every

            # the retained OFF on the production command topic was ignored: nothing written
            assert _writes(sim) == []
            assert state["production"] == "ON"

            # applied, each control
            await _command(mosquitto, watcher, serial, "storage_mode", "economy", "applied")
            method, path, body = _writes(sim)[-1]
            assert (method, path) == ("PUT", "/admin/lib/tariff")
            assert set(body["tariff"]) == {"currency", "logger", "date", "storage_settings", "single_rate",
                                           "seasons", "seasons_sell"}  # fmt: skip
            assert body["tariff"]["storage_settings"]["mode"] == "economy"
            state = await _command(mosquitto, watcher, serial, "reserve_soc", "35", "applied")
            assert state["reserve_soc"] == 35
            state = await _command(mosquitto, watcher, serial, "charge_from_grid", "ON", "applied")
            assert state["charge_from_grid"] == "ON"
            # dry contacts read "open" for a second after the write: the result waits for real readings
            state = await _command(mosquitto, watcher, serial, "dry_contact_no1", "OFF", "applied")
            assert state["dry_contact_no1"] == "OFF"
            assert _writes(sim)[-1][1:] == (
                "/ivp/ensemble/dry_contacts",
                {"dry_contacts": {"id": "NO1", "status": "open"}},
            )
            # the slow relay: open takes 2 s here
            started = asyncio.get_running_loop().time()
            state = await _command(mosquitto, watcher, serial, "grid_relay", "OFF", "applied")
            assert asyncio.get_running_loop().time() - started >= 2.0
            assert state["grid_relay"] == "OFF"
            await _command(mosquitto, watcher, serial, "grid_relay", "ON", "applied")
            state = await _command(mosquitto, watcher, serial, "production", "OFF", "applied")
            assert state["production"] == "OFF"
            assert sim.controls.snapshot()["power_forced_off"] is True
            await _command(mosquitto, watcher, serial, "production", "ON", "applied")
            state = await _command(mosquitto, watcher, serial, "export_limit", "2000", "applied")
            assert state["export_limit"] == 2000

            # out of range / wrong type: rejected, nothing sent
            writes = len(_writes(sim))
            state = await _command(mosquitto, watcher, serial, "reserve_soc", "150", "rejected")
            assert "between 0 and 100" in state["last_result"]["reason"]
            await _command(mosquitto, watcher, serial, "storage_mode", "turbo", "rejected")
            await _command(mosquitto, watcher, serial, "production", "maybe", "rejected")
            await _command(mosquitto, watcher, serial, "dry_contact_zz9", "ON", "rejected")
            assert len(_writes(sim)) == writes

            # rejected by the Envoy (HTTP 4xx)
            sim.controls.configure({"behaviour": "reject", "reject_status": 400})
            state = await _command(mosquitto, watcher, serial, "charge_from_grid", "OFF", "rejected")
            assert "HTTP 400" in state["last_result"]["reason"]
            assert state["charge_from_grid"] == "ON"

            # not_applied: opt_schedules true, 200 and ignored; then with opt_schedules off in the same write
            sim.controls.configure({"behaviour": "applied", "opt_schedules": True})
            state = await _command(mosquitto, watcher, serial, "storage_mode", "backup", "not_applied")
            assert "opt_schedules" in state["last_result"]["reason"]
            assert state["storage_mode"] == "economy"
            command = json.dumps({"value": "backup", "opt_schedules_off": True})
            state = await _command(mosquitto, watcher, serial, "storage_mode", command, "applied")
            assert state["storage_mode"] == "backup"
            assert _writes(sim)[-1][2]["tariff"]["storage_settings"]["opt_schedules"] is False

            # reverted: applied, then the "cloud" puts the tariff back after 1.5 s
            sim.controls.configure({"behaviour": "revert", "revert_seconds": 1.5, "controls": ["tariff"]})
            await _command(mosquitto, watcher, serial, "reserve_soc", "60", "applied")
            await watcher.wait_for(
                lambda: _state(watcher, serial)["last_result"]["result"] == "reverted", 15, "the revert"
            )
            state = _state(watcher, serial)
            assert state["last_result"]["control"] == "reserve_soc"
            assert state["last_result"]["requested"] == 60
            assert state["reserve_soc"] == 35
            assert "without a command" in state["last_result"]["reason"]
        audit = _audit(daemon)
        assert ("production", "OFF", "ignored") in [
            (a["control"], a["requested"], a["result"]) for a in audit
        ]
        assert len(audit) == 18  # one line per command, the retained one included


async def test_ignored_write_is_not_applied_and_commands_coalesce(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with Simulator(SimulatorConfig(enpower=True)) as sim:
        assert sim.controls is not None
        serial = sim.serial
        async with _site(tmp_path, mosquitto, sim, controls=True) as (daemon, watcher):
            await watcher.wait_for(lambda: "reserve_soc" in _state(watcher, serial), 30, "the control state")
            sim.controls.configure({"behaviour": "ignored", "controls": ["dry_contacts"]})
            state = await _command(mosquitto, watcher, serial, "dry_contact_nc2", "OFF", "not_applied")
            assert state["dry_contact_nc2"] == "ON"
            # three reserve commands in a row: the last one wins, at most one write for the ones between
            sim.controls.configure({"behaviour": "applied"})
            writes = len(_writes(sim))
            for value in ("30", "31", "32"):
                await _publish(mosquitto, f"{BASE}/{serial}/control/reserve_soc/set", value)
            await watcher.wait_for(
                lambda: (
                    (_state(watcher, serial).get("last_result") or {}).get("requested") == 32
                    and _state(watcher, serial)["last_result"]["result"] == "applied"
                ),
                30,
                "reserve 32 applied",
            )
            tariff_writes = [w for w in _writes(sim)[writes:] if w[1] == "/admin/lib/tariff"]
            assert 1 <= len(tariff_writes) <= 2
            assert tariff_writes[-1][2]["tariff"]["storage_settings"]["reserved_soc"] == 32
            assert _state(watcher, serial)["reserve_soc"] == 32
        audit = _audit(daemon)
        results = [(a["control"], a["requested"], a["result"]) for a in audit]
        assert ("dry_contact_nc2", "OFF", "not_applied") in results
        assert ("reserve_soc", 32, "applied") in results
        # every command has exactly one line: applied or superseded for 30 and 31
        assert len([r for r in results if r[0] == "reserve_soc"]) == 3


async def test_owner_token_refusals_and_the_audit_log(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with Simulator(SimulatorConfig(enpower=True, token_type="owner")) as sim:
        assert sim.controls is not None
        serial = sim.serial
        async with _site(tmp_path, mosquitto, sim, controls=True) as (daemon, watcher):
            await watcher.wait_for(lambda: "storage_mode" in _state(watcher, serial), 30, "the control state")
            await watcher.wait_for(lambda: _controls_config(watcher, serial) is not None, 10, "discovery")
            doc = _controls_config(watcher, serial)
            assert doc is not None
            components = set(doc["components"])
            assert "control_production" not in components
            assert "control_export_limit" not in components
            assert "control_grid_relay" not in components  # no allow_grid_relay
            assert "control_storage_mode" in components
            state = _state(watcher, serial)
            assert "production" not in state
            assert "grid_relay" not in state
            state = await _command(mosquitto, watcher, serial, "production", "OFF", "rejected")
            assert "installer token" in state["last_result"]["reason"]
            state = await _command(mosquitto, watcher, serial, "export_limit", "100", "rejected")
            state = await _command(mosquitto, watcher, serial, "grid_relay", "OFF", "rejected")
            assert "allow_grid_relay" in state["last_result"]["reason"]
            assert _writes(sim) == []
            await _command(mosquitto, watcher, serial, "reserve_soc", "25", "applied")
        audit = _audit(daemon)
        assert [(a["control"], a["result"]) for a in audit] == [
            ("production", "rejected"),
            ("export_limit", "rejected"),
            ("grid_relay", "rejected"),
            ("reserve_soc", "applied"),
        ]
        # no secret in any audit line (nor anywhere in the log)
        text = daemon.log_text()
        stored = [json.loads(p.read_text()) for p in (tmp_path / "state" / "tokens").glob("*.json")]
        tokens = [entry["token"] for entry in stored]
        assert tokens  # the daemon stored the token it used: it must appear nowhere
        secrets = [sim.enlighten_password, *tokens]
        for line in audit:
            rendered = json.dumps(line)
            for secret in secrets:
                assert secret not in rendered
        for secret in secrets:
            assert secret not in text


async def test_controls_off_subscribes_and_announces_nothing(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with Simulator(SimulatorConfig(enpower=True, token_type="installer")) as sim:
        assert sim.controls is not None
        serial = sim.serial
        async with _site(tmp_path, mosquitto, sim) as (daemon, watcher):
            await watcher.wait_for(
                lambda: any(t.startswith(f"{BASE}/{serial}/inverter/") for t in watcher.latest), 60, "devices"
            )
            for control, value in (("production", "OFF"), ("storage_mode", "backup"), ("reserve_soc", "10")):
                await _publish(mosquitto, f"{BASE}/{serial}/control/{control}/set", value)
            await asyncio.sleep(2)
            assert _writes(sim) == []
            assert f"{BASE}/{serial}/control" not in watcher.latest
            assert _controls_config(watcher, serial) is None
            assert not any("control" in t and t.endswith("/config") for t in watcher.latest)
        assert _audit(daemon) == []
        assert not any(line.get("event") == "controls_ready" for line in daemon.log_lines())
