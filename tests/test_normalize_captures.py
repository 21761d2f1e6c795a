"""Every shared capture through detect_features and the normalizers: snapshots plus hand-checked facts."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion

from envoy2mqtt.entities import TABLES
from envoy2mqtt.normalize import normalize_devices, normalize_meters, normalize_system
from tests.conftest import capture_params, require_capture
from tests.test_normalize_support import Capture, load_capture

KINDS = {"number": (int, float), "integer": (int,), "bool": (bool,), "text": (str,), "time": (str,)}


def outputs(capture: Capture) -> dict[str, Any]:
    system = normalize_system(capture.system, capture.info, capture.features)
    meters = normalize_meters(capture.system, capture.features)
    devices = normalize_devices(capture.devices, capture.features)
    return {
        "features": {
            "endpoints": sorted(capture.features.endpoints),
            "metered": capture.features.metered,
            "ct_meters": list(capture.features.ct_meters),
            "phase_count": capture.features.phase_count,
            "production_ct": capture.features.production_ct,
            "consumption": capture.features.consumption,
            "acb_count": capture.features.acb_count,
            "iq_batteries": capture.features.iq_batteries,
            "detailed_inverters": capture.features.detailed_inverters,
            "inventory": capture.features.inventory,
        },
        "system": system.payload(),
        "system_problems": list(system.problems),
        "meters": {m.ct_type: {"payload": m.payload(), "problems": list(m.problems)} for m in meters},
        "inverters": {i.serial: i.payload() for i in devices.inverters},
        "inverter_problems": sorted({p for i in devices.inverters for p in i.problems}),
        "batteries": {b.serial: b.payload() for b in devices.batteries},
        "device_problems": list(devices.problems),
    }


def check_types(component: str, payload: dict[str, Any]) -> None:
    """Every key is a contract key with the contract's JSON type; no NaN, no inf."""
    table = {e.key: e for e in TABLES[component]}
    for key, value in payload.items():
        if key == "phases":
            assert isinstance(value, dict)
            for phase in value.values():
                for sub, number in phase.items():
                    assert table[sub].phased, sub
                    assert number is None or (isinstance(number, int | float) and math.isfinite(number))
            continue
        entity = table[key]
        if value is None:
            continue
        if entity.kind in KINDS:
            assert isinstance(value, KINDS[entity.kind]), (key, value)
            if entity.kind in ("number", "integer"):
                assert not isinstance(value, bool), key
                assert math.isfinite(value), key
        elif entity.kind == "enum":
            assert value in entity.options, (key, value)
        elif entity.kind == "list":
            assert isinstance(value, list)
            assert all(isinstance(x, str) for x in value)
        if entity.lifetime:
            assert value >= 0, key


@pytest.mark.parametrize("folder", capture_params())
def test_capture_snapshot(folder: Path, snapshot: SnapshotAssertion) -> None:
    result = outputs(load_capture(folder))
    json.dumps(result, allow_nan=False)  # what the publisher will do
    check_types("system", result["system"])
    for meter in result["meters"].values():
        check_types("meter", meter["payload"])
    for inverter in result["inverters"].values():
        check_types("inverter", inverter)
    for battery in result["batteries"].values():
        check_types("battery", battery)
    assert result == snapshot


def run(name: str) -> dict[str, Any]:
    return outputs(load_capture(require_capture(name)))


def test_tot_is_net_consumption_is_repaired() -> None:
    """8.3.5433: consumption = net + production for lifetime, power and per phase."""
    out = run("8.3.5433_tot_is_net_cons")
    system = out["system"]
    assert system["net_energy_lifetime"] == pytest.approx(5649402.426)
    assert system["consumption_energy_lifetime"] == pytest.approx(5649402.426 + 14405465.109, abs=0.001)
    assert system["consumption_power"] == pytest.approx(428.414 + 357.492, abs=0.001)
    assert system["phases"]["l1"]["consumption_power"] == pytest.approx(249.477 + 174.574, abs=0.001)
    assert set(system["phases"]) == {"l1", "l2"}
    # whToday == whLastSevenDays == whLifetime on this firmware: unknown, not a 14 MWh day
    assert system["production_energy_today"] is None
    assert system["net_energy_today"] is None
    assert any("8.3.5433" in p for p in out["system_problems"])
    # a total-consumption CT, no net-consumption CT: no grid import/export split
    assert "grid_import_energy_lifetime" not in system
    assert set(out["meters"]) == {"production", "total-consumption"}
    # 8 inverters are active:false in device_data
    assert len(out["inverters"]) == 12
    assert all(i["operating"] in (True, False) for i in out["inverters"].values())


def test_metered_without_ct_falls_back_to_inverters_section() -> None:
    """8.2.4264: v1 is stalled at 1583 Wh; the inverters section has 32465106 Wh."""
    system = run("8.2.4264_metered_noct")["system"]
    assert system["production_energy_lifetime"] == 32465106
    assert system["production_power"] == 5521
    assert not any(k.startswith(("consumption_", "net_", "grid_")) for k in system)
    assert "production_energy_today" not in system


def test_metered_with_disabled_cts() -> None:
    out = run("7.3.466_metered_disabled_cts")
    assert out["system"]["production_energy_lifetime"] == 702919
    assert out["meters"] == {}
    assert not any(k.startswith(("consumption_", "net_")) for k in out["system"])


def test_unmetered_has_no_consumption_keys() -> None:
    """7.6.175_standard: v1 lifetime (6139406) instead of the wrapped inverters section (174174)."""
    out = run("7.6.175_standard")
    system = out["system"]
    assert system["production_energy_lifetime"] == 6139406
    assert not any(k.startswith(("consumption_", "net_", "grid_", "battery")) for k in system)
    assert "phases" not in system
    assert out["meters"] == {}
    assert len(out["inverters"]) == 24


def test_mod_gone_inverters_are_not_published() -> None:
    out = run("8.3.5289_modGone")
    assert len(out["inverters"]) == 12
    assert not {"900000000004", "900000000006", "900000000012", "900000000014"} & set(out["inverters"])
    inverter = out["inverters"]["900000000002"]
    assert inverter["ac_voltage"] == pytest.approx(237.344)
    assert inverter["energy_lifetime"] == pytest.approx(1164878.212, abs=0.001)
    # a production CT only: no consumption
    assert "consumption_power" not in out["system"]


def test_acb_system_and_devices() -> None:
    """8.2.4382: 3 ACBs + 1 IQ battery: combined aggregate from secctrl and storage."""
    out = run("8.2.4382_ACB")
    system = out["system"]
    assert system["batteries_count"] == 4
    assert system["battery_soc"] == 39  # secctrl agg_soc (ACB + IQ)
    assert system["battery_energy_available"] == 1890 + 930
    assert system["battery_power"] == 260 + 105  # ACB wNow + IQ real_power_mw / 1000
    assert system["battery_state"] == "discharging"
    kinds = sorted(b["kind"] for b in out["batteries"].values())
    assert kinds == ["acb", "acb", "acb", "iq"]
    assert out["batteries"]["122311091641"]["soc"] == 54


def test_acb_inventory_devices() -> None:
    out = run("8.3.5169_ACB_inventory")
    battery = out["batteries"]["121917000000"]
    assert battery["kind"] == "acb"
    assert battery["soc"] == 2
    assert battery["max_cell_temperature"] == 32
    assert battery["state"] == "idle"
    assert battery["last_report"] == "2026-06-20T21:30:06Z"
    assert out["system"]["battery_soc"] == 1  # storage percentFull
    assert out["system"]["battery_energy_available"] == 25
    # inventory string dates and flags reach the inverters
    assert out["inverters"]["122013000000"]["communicating"] is False


def test_battery_split_storage_ct_and_iq_batteries() -> None:
    """8.2.127: storage CT power (+ = discharging) wins over the ensemble sum."""
    out = run("8.2.127_with_3cts_and_battery_split")
    system = out["system"]
    assert system["battery_power"] == pytest.approx(-2579.823)
    assert system["battery_state"] == "charging"
    assert system["battery_soc"] == 21
    assert system["battery_energy_available"] == 5250
    assert system["grid_import_energy_lifetime"] == pytest.approx(4998251.825)
    assert system["grid_export_energy_lifetime"] == pytest.approx(253960.783)
    storage = out["meters"]["storage"]["payload"]
    assert storage["energy_delivered_lifetime"] == pytest.approx(2274358.602)
    assert storage["voltage"] == pytest.approx((121.334 + 121.248) / 2, abs=0.001)
    battery = out["batteries"]["12345678901006"]
    assert battery["power"] == -136
    assert battery["state"] == "charging"
    assert battery["capacity"] == 5000
    assert "max_power" not in battery


def test_split_phase_meter_voltage_is_the_mean() -> None:
    production = run("8.3.5433_tot_is_net_cons")["meters"]["production"]["payload"]
    assert production["voltage"] == pytest.approx((121.342 + 121.424) / 2, abs=0.001)
    assert production["phases"]["l2"]["voltage"] == pytest.approx(121.424)
    assert production["power_factor"] is None  # 1.553 is out of range


def test_legacy_firmware() -> None:
    # Firmware 3.7: no JSON production, only the HTML page ("6.63 kW", "53.6 kWh", "405 kWh", "133 MWh")
    old = run("3.7.0")
    assert old["system"] == {
        "production_power": 6630,
        "production_energy_today": 53600,
        "production_energy_last_7_days": 405000,
        "production_energy_lifetime": 133000000,
    }
    assert old["inverters"] == {}
    out = run("3.9.36")
    assert out["system"]["production_energy_lifetime"] == 6012540
    assert "timestamp" not in out["system"]
    assert len(out["inverters"]) == 12


def test_legacy_metered_4_2_33() -> None:
    """No measurementType on consumption[0], no lines: phases from the CT channels."""
    out = run("4.2.33")
    system = out["system"]
    assert system["production_power"] == pytest.approx(-8.796)
    assert system["phases"] == {"l1": {"production_power": -4.35}, "l2": {"production_power": -4.45}}
    assert "consumption_power" not in system
    assert "status_flags" not in out["meters"]["production"]["payload"]


def test_detailed_inverters() -> None:
    out = run("8.2.4345_with_device_data")
    assert len(out["inverters"]) == 15
    for inverter in out["inverters"].values():
        assert {"dc_voltage", "ac_frequency", "energy_lifetime", "temperature"} <= set(inverter)
        assert 45 < inverter["ac_frequency"] < 65
    assert out["system"]["net_energy_lifetime"] == pytest.approx(-235661.732)  # signed balance
