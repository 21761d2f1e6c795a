"""Hostile bodies: the normalizers never raise, never emit NaN/inf/strings for numbers, record problems."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envoy2mqtt.envoy import endpoints as ep
from envoy2mqtt.model import EnvoyInfo, Features, RawDeviceData, RawSystemData
from envoy2mqtt.normalize import normalize_devices, normalize_meters, normalize_system
from tests.test_normalize_captures import check_types

INFO = EnvoyInfo("123456789012", "800-00654-r08", "D8.3.5433", (8, 3, 5433), True, True)

# Every feature on at once: the widest `present` and every code path.
EVERYTHING = Features(
    endpoints=frozenset(
        {ep.PRODUCTION_JSON, ep.METERS_READINGS, ep.ENSEMBLE_POWER, ep.ENSEMBLE_SECCTRL, ep.API_V1_INVERTERS}
    ),
    metered=True,
    ct_meters=("production", "net-consumption", "storage"),
    meter_eids={1: "production", 2: "net-consumption", 3: "storage"},
    phase_count=3,
    production_ct=True,
    total_consumption=True,
    net_consumption=True,
    acb=True,
    acb_count=2,
    iq_batteries=True,
    enpower=True,
    detailed_inverters=True,
    inventory=True,
)
UNMETERED = Features(endpoints=frozenset({ep.API_V1_PRODUCTION, ep.API_V1_INVERTERS}), metered=False)
FALLBACK = Features(endpoints=frozenset({ep.PRODUCTION_JSON}), metered=True)
HTML_ONLY = Features(endpoints=frozenset({ep.PRODUCTION_HTML}), metered=False)  # firmware < 3.9
FEATURES = [EVERYTHING, UNMETERED, FALLBACK, HTML_ONLY]

GARBAGE: list[Any] = [
    None,
    "<html><head><title>Page Not Found</title></head></html>",
    "",
    [],
    {},
    [None, "x", 3, [1], {"x": None}],
    {"error": "404 - Not Found"},
    math.nan,
    -math.inf,
    True,
    10**400,
]


def run_all(
    system: RawSystemData, devices: RawDeviceData, features: Features
) -> list[tuple[str, dict[str, Any]]]:
    reading = normalize_system(system, INFO, features)
    out: list[tuple[str, dict[str, Any]]] = [("system", reading.payload())]
    out += [("meter", m.payload()) for m in normalize_meters(system, features)]
    result = normalize_devices(devices, features)
    out += [("inverter", i.payload()) for i in result.inverters]
    out += [("battery", b.payload()) for b in result.batteries]
    for component, payload in out:
        json.dumps(payload, allow_nan=False)
        check_types(component, payload)
    return out


@pytest.mark.parametrize("features", FEATURES, ids=["everything", "unmetered", "fallback", "html"])
@pytest.mark.parametrize("garbage", GARBAGE, ids=repr)
def test_garbage_in_every_field(features: Features, garbage: Any) -> None:
    system = RawSystemData(*([garbage] * 8))
    devices = RawDeviceData(*([garbage] * 6))
    out = run_all(system, devices, features)
    payload = out[0][1]
    reading = normalize_system(system, INFO, features)
    # present keys stay present, with null values, and the reasons are recorded
    assert set(payload) == set(reading.present)
    if features is EVERYTHING:
        assert payload["production_power"] is None
        assert payload["consumption_energy_lifetime"] is None
        assert reading.problems


def test_present_does_not_depend_on_the_bodies() -> None:
    empty = normalize_system(RawSystemData(), INFO, EVERYTHING)
    html = normalize_system(RawSystemData(production_json="<html>"), INFO, EVERYTHING)
    assert empty.present == html.present
    assert "consumption_power" in empty.present
    assert empty.consumption_power is None


def production_json(**eim: Any) -> dict[str, Any]:
    section = {"type": "eim", "activeCount": 1, "measurementType": "production"}
    section.update(eim)
    return {"production": [section], "consumption": []}


@pytest.mark.parametrize("value", [math.nan, math.inf, "5305", True, None, [1], {"a": 1}, 1e300])
def test_wrong_number_types_become_null(value: Any) -> None:
    raw = RawSystemData(production_json=production_json(wNow=value, whLifetime=value))
    reading = normalize_system(raw, INFO, EVERYTHING)
    assert reading.production_power is None
    assert reading.production_energy_lifetime is None


def test_negative_lifetime_is_null_with_problem() -> None:
    raw = RawSystemData(
        production_json=production_json(wNow=5, whLifetime=-18.153, whToday=-1, whLastSevenDays=3)
    )
    reading = normalize_system(raw, INFO, EVERYTHING)
    assert reading.production_energy_lifetime is None
    assert reading.production_energy_today is None
    assert any("negative lifetime" in p for p in reading.problems)
    assert any("negative energy" in p for p in reading.problems)


def test_missing_consumption_sections_are_reported() -> None:
    reading = normalize_system(RawSystemData(production_json=production_json(wNow=1)), INFO, EVERYTHING)
    assert "production.json: consumption[1] (net-consumption) missing" in reading.problems
    assert reading.net_power is None


def test_boot_zero_block_rejected_on_fw3() -> None:
    fw3 = EnvoyInfo("1", None, "R3.9.36", (3, 9, 36), None, None)
    zeros = {"wattHoursToday": 0, "wattHoursSevenDays": 0, "wattHoursLifetime": 0, "wattsNow": 0}
    reading = normalize_system(RawSystemData(api_v1_production=zeros), fw3, UNMETERED)
    assert reading.production_power is None
    assert reading.production_energy_lifetime is None
    assert "production_power" in reading.present
    assert any("after boot" in p for p in reading.problems)


def test_meter_readings_with_unknown_eids_and_bad_channels() -> None:
    readings = [
        {"eid": 9, "activePower": 5},
        {
            "eid": 1,
            "activePower": "x",
            "actEnergyDlvd": -5,
            "voltage": 230,
            "channels": [None, {"voltage": "1"}],
        },
    ]
    meters = {m.ct_type: m for m in normalize_meters(RawSystemData(meters_readings=readings), EVERYTHING)}
    production = meters["production"]
    assert production.power is None
    assert production.energy_delivered_lifetime is None
    assert any("negative lifetime" in p for p in production.problems)
    assert production.phases is not None
    assert production.phases["l1"]["voltage"] is None
    assert "/ivp/meters/readings: no reading for the storage CT" in meters["storage"].problems


def test_device_data_garbage_falls_back_to_v1_rows() -> None:
    rows = [{"serialNumber": "121547058993", "lastReportDate": "x", "lastReportWatts": 4294967292}]
    devices = RawDeviceData(inverters=rows, device_data={"1": "pcu", "deviceCount": "x"})
    result = normalize_devices(devices, EVERYTHING)
    (inverter,) = result.inverters
    assert inverter.power == -4
    assert inverter.last_report is None
    assert inverter.energy_today is None
    assert "energy_today" in inverter.present
    assert any("device_data" in p for p in result.problems)


def test_device_serials_that_are_not_names_are_dropped() -> None:
    rows = [{"serialNumber": s, "lastReportWatts": 1} for s in ("", "a/b", "x" * 100, 5, None, "ok1")]
    result = normalize_devices(RawDeviceData(inverters=rows), UNMETERED)
    assert [i.serial for i in result.inverters] == ["ok1"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=10,
)
keys = st.sampled_from(
    [
        "production", "consumption", "storage", "type", "activeCount", "measurementType", "wNow", "whLifetime",
        "whToday", "whLastSevenDays", "lines", "eid", "channels", "activePower", "voltage", "devices:",
        "real_power_mw", "soc", "serial_num", "serialNumber", "devType", "devName", "active", "watts", "now",
        "lastReading", "percentFull", "ENC_agg_soc", "agg_soc", "led_status", "last_rpt_date", "state",
    ]
)  # fmt: skip
shaped = st.recursive(
    json_values,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=20,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies=st.lists(shaped, min_size=14, max_size=14), which=st.sampled_from(FEATURES))
def test_random_json_never_raises(bodies: list[Any], which: Features) -> None:
    system = RawSystemData(*bodies[:8])
    devices = RawDeviceData(*bodies[8:14])
    run_all(system, devices, which)
    run_all(system, devices, replace(which, phase_count=2, detailed_inverters=False))
