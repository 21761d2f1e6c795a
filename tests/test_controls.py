"""The control units: validation, offers, whole-document writes, the command queue, the revert watcher,
and one write with its read-back against the simulator over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from envoy2mqtt.clock import SYSTEM_CLOCK, ManualClock
from envoy2mqtt.config import CloudSettings, EnvoySettings, TokenSettings
from envoy2mqtt.controls.catalog import (
    EXPORT_LIMIT,
    GRID_RELAY,
    PRODUCTION,
    RESERVE_SOC,
    STORAGE_MODE,
    Command,
    CommandError,
    decide_offer,
    dry_contact,
    parse_command,
)
from envoy2mqtt.controls.commands import CommandQueue
from envoy2mqtt.controls.documents import TARIFF, contact_ids, document_for
from envoy2mqtt.controls.watch import RevertWatcher
from envoy2mqtt.controls.writer import ControlWriter, Timing
from envoy2mqtt.envoy.client import EnvoyClient
from envoy2mqtt.errors import EnvoyWriteRefused
from envoy2mqtt.model import Features
from envoy2mqtt.simulator import Simulator, SimulatorConfig
from tests.conftest import require_capture

FAST = Timing(readback_timeout=1.5, readback_interval=0.05)


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("spec", "payload", "value"),
    [
        (STORAGE_MODE, b"economy", "economy"),
        (STORAGE_MODE, b" Backup ", "backup"),
        (STORAGE_MODE, b"savings-mode", "economy"),
        (RESERVE_SOC, b"20", 20),
        (RESERVE_SOC, b"100.0", 100),
        (RESERVE_SOC, b"0", 0),
        (PRODUCTION, b"off", "OFF"),
        (PRODUCTION, b"ON", "ON"),
        (EXPORT_LIMIT, b"2000", 2000),
        (EXPORT_LIMIT, b"OFF", "OFF"),
    ],
)
def test_valid_commands(spec: Any, payload: bytes, value: Any) -> None:
    assert parse_command(spec, payload).value == value


@pytest.mark.parametrize(
    ("spec", "payload", "message"),
    [
        (STORAGE_MODE, b"turbo", "takes one of backup, self-consumption, economy"),
        (STORAGE_MODE, b"", "empty"),
        (STORAGE_MODE, b'{"value": 3}', "takes one of"),
        (STORAGE_MODE, b'{"value": "backup", "extra": 1}', "only"),
        (RESERVE_SOC, b"101", "between 0 and 100"),
        (RESERVE_SOC, b"-1", "between 0 and 100"),
        (RESERVE_SOC, b"nan", "finite"),
        (RESERVE_SOC, b"20.5", "whole numbers"),
        (RESERVE_SOC, b"twenty", "takes a number"),
        (PRODUCTION, b"1", "ON or OFF"),
        (EXPORT_LIMIT, b"1000001", "between 0 and 100000 W"),
        (EXPORT_LIMIT, b"\xff", "UTF-8"),
    ],
)
def test_invalid_commands(spec: Any, payload: bytes, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse_command(spec, payload)


def test_storage_mode_json_form_carries_the_opt_schedules_option() -> None:
    command = parse_command(STORAGE_MODE, b'{"value": "backup", "opt_schedules_off": true}')
    assert command == Command("storage_mode", "backup", True)


# ------------------------------------------------------------------------------ offers


def _features(**values: Any) -> Features:
    return Features(endpoints=frozenset(), metered=True, **values)


def test_nothing_is_offered_while_controls_are_off() -> None:
    offer = decide_offer(
        EnvoySettings(host="x"),
        _features(iq_batteries=True, enpower=True),
        auth_mode="token",
        token_type="installer",
    )
    assert not offer.controls


def test_offer_follows_hardware_and_token() -> None:
    envoy = EnvoySettings(host="x", controls=True)
    offer = decide_offer(envoy, _features(iq_batteries=True), auth_mode="token", token_type="owner")
    assert set(offer.controls) == {"storage_mode", "reserve_soc", "charge_from_grid"}
    assert "installer token" in offer.refused["production"]
    assert "IQ System Controller" in offer.refused["grid_relay"]
    assert "installer token" in offer.refused["export_limit"]
    assert offer.refusal("dry_contact_nc1").startswith("this Envoy has no dry contact")

    offer = decide_offer(
        envoy, _features(enpower=True), auth_mode="token", token_type="installer", contact_ids=["NC1", "NO1"]
    )
    assert set(offer.controls) == {"production", "export_limit", "dry_contact_nc1", "dry_contact_no1"}
    assert "allow_grid_relay" in offer.refused["grid_relay"]
    assert "IQ Batteries" in offer.refused["storage_mode"]

    with_relay = EnvoySettings(host="x", controls=True, allow_grid_relay=True)
    offer = decide_offer(with_relay, _features(enpower=True), auth_mode="token", token_type="owner")
    assert "grid_relay" in offer.controls


def test_grid_relay_without_controls_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="allow_grid_relay = true needs controls = true"):
        EnvoySettings(host="x", allow_grid_relay=True)


# ------------------------------------------------------------------------------ documents


def _capture_json(folder: str, name: str) -> Any:
    return json.loads((require_capture(folder) / name).read_text())


def test_tariff_write_is_the_whole_tariff_with_one_field_changed() -> None:
    body = _capture_json("8.2.127_with_3cts_and_battery_split", "admin_lib_tariff")
    document = document_for(RESERVE_SOC)
    assert document.read(body) == 20
    written = document.build(body, Command("reserve_soc", 35))
    assert set(written) == {"tariff"}  # the schedule is the Envoy's own, never written back
    expected = json.loads(json.dumps(body["tariff"]))
    expected["storage_settings"]["reserved_soc"] = 35
    assert written["tariff"] == expected
    assert body["tariff"]["storage_settings"]["reserved_soc"] == 20  # the read body is not modified


def test_storage_mode_keeps_the_firmwares_spelling_of_economy() -> None:
    body = _capture_json("7.3.517_legacy_savings_mode", "admin_lib_tariff")
    document = document_for(STORAGE_MODE)
    assert body["tariff"]["storage_settings"]["mode"] == "savings-mode"
    assert document.read(body) == "economy"
    written = document.build(body, Command("storage_mode", "economy"))
    assert written["tariff"]["storage_settings"]["mode"] == "savings-mode"
    written = document.build(body, Command("storage_mode", "backup", opt_schedules_off=True))
    assert written["tariff"]["storage_settings"]["mode"] == "backup"
    assert "opt_schedules" not in written["tariff"]["storage_settings"]  # not added where absent


def test_dry_contacts_from_a_capture() -> None:
    body = _capture_json("8.2.127_with_3cts_and_battery_split", "ivp_ensemble_dry_contacts")
    assert contact_ids(body) == ["NC1", "NC2", "NO1", "NO2"]
    document = document_for(dry_contact("NO1"))
    assert document.read(body) == "ON"
    assert document.build(body, Command("dry_contact_no1", "OFF")) == {
        "dry_contacts": {"id": "NO1", "status": "open"}
    }
    assert not document.unsettled(body)
    assert document.unsettled(
        {"dry_contacts": [{"id": "NC1", "status": "open"}, {"id": "NO1", "status": "open"}]}
    )


# ------------------------------------------------------------------------------ queue and watcher


async def test_queue_coalesces_and_keeps_the_minimum_gap() -> None:
    clock = ManualClock()
    queue = CommandQueue(clock, min_gap=5.0)
    assert queue.submit(Command("reserve_soc", 10)) is None
    assert queue.submit(Command("storage_mode", "backup")) is None
    replaced = queue.submit(Command("reserve_soc", 30))
    assert replaced == Command("reserve_soc", 10)
    first = await queue.next()
    assert first == Command("storage_mode", "backup")  # reserve_soc went to the back when replaced
    queue.wrote()
    waiting = asyncio.create_task(queue.next())
    await asyncio.sleep(0)
    assert not waiting.done()  # the gap holds it
    queue.submit(Command("reserve_soc", 40))  # latest wins, even while waiting for the gap
    clock.advance(5.0)
    assert await asyncio.wait_for(waiting, 1) == Command("reserve_soc", 40)
    assert queue.waiting == {}


def test_revert_watcher() -> None:
    watcher = RevertWatcher(duration=100, interval=10)
    assert watcher.seconds_to_next(0) is None
    watcher.watch("storage_mode", "backup", now=0)
    assert watcher.seconds_to_next(0) == 10
    assert watcher.due(5) == []
    assert watcher.due(10) == ["storage_mode"]
    assert watcher.observe("storage_mode", "backup", 10) is None
    assert watcher.observe("storage_mode", None, 20) is None  # unreadable proves nothing
    assert watcher.observe("storage_mode", "self-consumption", 30) == "backup"
    assert watcher.watching == {}
    watcher.watch("reserve_soc", 30, now=0)
    assert watcher.observe("reserve_soc", 30, 100) is None
    assert watcher.watching == {}  # watched long enough
    watcher.watch("reserve_soc", 30, now=0)
    watcher.forget("reserve_soc")
    assert watcher.due(1000) == []


# ------------------------------------------------------------------------------ against the simulator


@pytest.fixture
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[Simulator]:
    options = getattr(request, "param", {})
    async with Simulator(SimulatorConfig(enpower=True, **options)) as simulator:
        yield simulator


async def _client(sim: Simulator, tmp_path: Path, token_type: str = "owner") -> EnvoyClient:
    client = EnvoyClient(
        EnvoySettings(host=sim.url, token=SecretStr(sim.issue_token(token_type))),
        CloudSettings(),
        TokenSettings(),
        tmp_path,
        SYSTEM_CLOCK,
    )
    await client.connect()
    return client


def _writes(sim: Simulator) -> list[tuple[str, str]]:
    assert sim.controls is not None
    return [(w.method, w.path) for w in sim.controls.writes]


async def test_applied_with_read_back(sim: Simulator, tmp_path: Path) -> None:
    async with await _client(sim, tmp_path) as client:
        writer = ControlWriter(client, SYSTEM_CLOCK)
        outcome = await writer.execute(Command("storage_mode", "backup"), document_for(STORAGE_MODE), FAST)
        assert (outcome.result, outcome.value, outcome.written) == ("applied", "backup", True)
        assert _writes(sim) == [("PUT", TARIFF)]
        assert sim.controls is not None
        assert sim.controls.snapshot()["storage_mode"] == "backup"
        # the same again: already set, nothing written
        outcome = await writer.execute(Command("storage_mode", "backup"), document_for(STORAGE_MODE), FAST)
        assert (outcome.result, outcome.written) == ("applied", False)
        assert len(_writes(sim)) == 1


@pytest.mark.parametrize("sim", [{"opt_schedules": True}], indirect=True)
async def test_opt_schedules_accepts_and_ignores_unless_switched_off(sim: Simulator, tmp_path: Path) -> None:
    async with await _client(sim, tmp_path) as client:
        writer = ControlWriter(client, SYSTEM_CLOCK)
        outcome = await writer.execute(Command("storage_mode", "backup"), document_for(STORAGE_MODE), FAST)
        assert outcome.result == "not_applied"
        assert "opt_schedules is true" in outcome.reason
        assert outcome.value == "self-consumption"
        outcome = await writer.execute(
            Command("storage_mode", "backup", opt_schedules_off=True), document_for(STORAGE_MODE), FAST
        )
        assert outcome.result == "applied"
        assert sim.controls is not None
        assert sim.controls.snapshot()["opt_schedules"] is False


async def test_owner_token_is_refused_on_installer_endpoints(sim: Simulator, tmp_path: Path) -> None:
    async with await _client(sim, tmp_path, "owner") as client:
        with pytest.raises(EnvoyWriteRefused) as info:
            await client.write_json("PUT", "/ivp/mod/603980032/mode/power", {"length": 1, "arr": [0]})
        assert info.value.status == 401
    async with await _client(sim, tmp_path / "installer", "installer") as client:
        writer = ControlWriter(client, SYSTEM_CLOCK)
        outcome = await writer.execute(Command("production", "OFF"), document_for(PRODUCTION), FAST)
        assert outcome.result == "applied"
        outcome = await writer.execute(Command("export_limit", 2000), document_for(EXPORT_LIMIT), FAST)
        assert outcome.result == "applied"
        assert sim.controls is not None
        written = sim.controls.writes[-1].body
        assert written["dynamic_pel_settings"]["limit_value_W"] == 2000
        assert set(written) == {"dynamic_pel_settings", "filename", "version"}  # the whole document


async def test_rejected_write(sim: Simulator, tmp_path: Path) -> None:
    assert sim.controls is not None
    sim.controls.configure({"behaviour": "reject", "reject_status": 400})
    async with await _client(sim, tmp_path) as client:
        outcome = await ControlWriter(client, SYSTEM_CLOCK).execute(
            Command("reserve_soc", 50), document_for(RESERVE_SOC), FAST
        )
        assert outcome.result == "rejected"
        assert "HTTP 400" in outcome.reason


async def test_ignored_write_is_not_applied(sim: Simulator, tmp_path: Path) -> None:
    assert sim.controls is not None
    sim.controls.configure({"behaviour": "ignored"})
    async with await _client(sim, tmp_path) as client:
        outcome = await ControlWriter(client, SYSTEM_CLOCK).execute(
            Command("dry_contact_nc1", "OFF"), document_for(dry_contact("NC1")), FAST
        )
        assert outcome.result == "not_applied"
        assert "still reports 'ON'" in outcome.reason


@pytest.mark.parametrize("sim", [{"relay_seconds": 0.6}], indirect=True)
async def test_slow_relay_is_waited_for(sim: Simulator, tmp_path: Path) -> None:
    async with await _client(sim, tmp_path) as client:
        writer = ControlWriter(client, SYSTEM_CLOCK)
        document = document_for(GRID_RELAY)
        short = Timing(readback_timeout=0.3, readback_interval=0.05)
        outcome = await writer.execute(Command("grid_relay", "OFF"), document, short)
        assert outcome.result == "not_applied"  # too short a wait for this relay
        await asyncio.sleep(0.5)
        outcome = await writer.execute(Command("grid_relay", "ON"), document, FAST)
        assert outcome.result == "applied"


@pytest.mark.parametrize("sim", [{"dry_contact_settle_seconds": 0.4}], indirect=True)
async def test_dry_contacts_reading_open_after_a_write_are_not_taken_for_the_result(
    sim: Simulator, tmp_path: Path
) -> None:
    async with await _client(sim, tmp_path) as client:
        writer = ControlWriter(client, SYSTEM_CLOCK)
        spec = dry_contact("NO1")
        outcome = await writer.execute(Command(spec.name, "ON"), document_for(spec), FAST)
        assert (outcome.result, outcome.written) == ("applied", False)  # closed already
        started = asyncio.get_running_loop().time()
        outcome = await writer.execute(Command(spec.name, "OFF"), document_for(spec), FAST)
        # every contact read "open" (= OFF) right after the write: the result waited for real readings
        assert outcome.result == "applied"
        assert asyncio.get_running_loop().time() - started >= 0.4
        body = await client.get_json("/ivp/ensemble/dry_contacts")
        assert {c["id"]: c["status"] for c in body["dry_contacts"]} == {
            "NC1": "closed", "NC2": "closed", "NO1": "open", "NO2": "closed",
        }  # fmt: skip


async def test_simulator_refuses_partial_documents(sim: Simulator, tmp_path: Path) -> None:
    async with await _client(sim, tmp_path) as client:
        with pytest.raises(EnvoyWriteRefused):
            await client.write_json("PUT", TARIFF, {"tariff": {"storage_settings": {"mode": "backup"}}})
        with pytest.raises(EnvoyWriteRefused):
            await client.write_json("POST", "/ivp/ss/dry_contact_settings", {"dry_contacts": {"id": "NC1"}})
        assert sim.controls is not None
        assert sim.controls.snapshot()["storage_mode"] == "self-consumption"


async def test_simulator_revert_behaviour(sim: Simulator, tmp_path: Path) -> None:
    assert sim.controls is not None
    sim.controls.configure({"behaviour": "revert", "revert_seconds": 0.3, "controls": ["tariff"]})
    async with await _client(sim, tmp_path) as client:
        writer = ControlWriter(client, SYSTEM_CLOCK)
        outcome = await writer.execute(Command("reserve_soc", 60), document_for(RESERVE_SOC), FAST)
        assert outcome.result == "applied"
        await asyncio.sleep(0.4)
        value, _ = await writer.read(document_for(RESERVE_SOC))
        assert value == 20  # the "cloud" put it back
        # the relay is not covered by the tariff-only behaviour
        outcome = await writer.execute(
            Command("dry_contact_nc1", "OFF"), document_for(dry_contact("NC1")), FAST
        )
        assert outcome.result == "applied"
        await asyncio.sleep(0.4)
        assert sim.controls.snapshot()["dry_contacts"]["NC1"] == "open"
