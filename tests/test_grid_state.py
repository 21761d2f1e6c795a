"""Grid state: which hardware says on-grid / off-grid, read from real captures and documented shapes."""

from __future__ import annotations

import json

import pytest

from envoy2mqtt.normalize.grid import grid_state, has_grid_relay
from tests.support import CAPTURES


def _load(folder: str, name: str) -> object:
    return json.loads(((CAPTURES / folder) / name).read_text())


@pytest.mark.parametrize(
    "folder", ["7.3.517", "8.1.41", "8.2.127_with_3cts_and_battery_split", "8.2.4345_with_device_data"]
)
def test_iq_system_controller_captures_say_on_grid(folder: str) -> None:
    inventory = _load(folder, "ivp_ensemble_inventory")
    assert has_grid_relay(inventory)
    assert grid_state(inventory) is True


@pytest.mark.parametrize("folder", ["8.2.4382_ACB", "7.6.175_with_cts", "5.0.62"])
def test_sites_without_a_relay_have_no_grid_state(folder: str) -> None:
    path = (CAPTURES / folder) / "ivp_ensemble_inventory"
    inventory = json.loads(path.read_text()) if path.exists() else None
    assert not has_grid_relay(inventory)
    assert grid_state(inventory) is None


def test_the_relay_capture_and_an_open_relay() -> None:
    relay = _load("8.3.5433_tot_is_net_cons", "ivp_ensemble_relay")
    assert grid_state(relay=relay) is True
    inventory = _load("8.1.41", "ivp_ensemble_inventory")
    assert isinstance(inventory, list)
    for group in inventory:
        for device in group.get("devices", []):
            if group["type"] == "ENPOWER":
                device["mains_oper_state"] = "open"
    assert grid_state(inventory) is False


def test_meter_collar_uses_the_mid_state_and_falls_back_to_grid_state() -> None:
    collar = {"admin_state_str": "ENCMN_MDE_ON_GRID", "mid_state": "close", "grid_state": "on_grid"}
    assert grid_state([{"type": "COLLAR", "devices": [collar]}]) is True
    assert grid_state([{"type": "COLLAR", "devices": [collar | {"mid_state": "open"}]}]) is False
    without_mid = {"grid_state": "off_grid"}
    assert grid_state([{"type": "COLLAR", "devices": [without_mid]}]) is False
    assert has_grid_relay([{"type": "COLLAR", "devices": [collar]}])


def test_livedata_main_relay_state_and_garbage() -> None:
    assert grid_state(livedata={"meters": {"main_relay_state": 1}}) is True
    assert grid_state(livedata={"meters": {"main_relay_state": 0}}) is False
    for junk in (
        None,
        [],
        "closed",
        {"meters": {"main_relay_state": 7}},
        [{"type": "ENPOWER", "devices": [{}]}],
    ):
        assert grid_state(junk, junk, junk) is None
