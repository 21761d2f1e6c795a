"""Home Assistant discovery: generated from the entity table, checked by the strict validator.

- every payload built from real captures (through the normalizers) and from generated readings passes;
- the validator rejects one crafted bad example per rule;
- the exact payloads for representative sites are snapshots, so a change users would see shows in review.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

import envoy2mqtt
from envoy2mqtt.entities import (
    BATTERY,
    GATEWAY,
    HEALTH,
    INVERTER,
    LIVE,
    METER,
    METER_LABELS,
    SYSTEM,
    TABLES,
    Entity,
)
from envoy2mqtt.model import CT_TYPES, PHASE_NAMES, Payload
from envoy2mqtt.mqtt.discovery import (
    GatewayDescription,
    battery_config,
    device_id,
    gateway_config,
    inverter_config,
)
from envoy2mqtt.mqtt.publisher import Publisher
from envoy2mqtt.mqtt.topics import Topics
from envoy2mqtt.mqtt.validator import validate_device_discovery
from tests.conftest import Mosquitto, capture_params

TOPICS = Topics("envoy2mqtt", "homeassistant")
GW = GatewayDescription(
    serial="122302045041",
    name="Envoy 122302045041",
    firmware="D8.2.4345",
    part_number="800-00654-r08",
    configuration_url="https://192.168.1.50",
)
SYSTEM_INTERVAL = 60.0
DEVICE_INTERVAL = 300.0


@pytest.fixture
def json_snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


def sample(row: Entity) -> Any:
    """A plausible value of the row's JSON type."""
    return {
        "number": 1234.5,
        "integer": 3,
        "bool": True,
        "text": "D8.2.4345",
        "time": "2026-11-26T14:05:00Z",
        "list": ["production", "net-consumption"],
        "enum": row.options[0] if row.options else "x",
    }[row.kind]


def full(rows: tuple[Entity, ...], phases: int = 0) -> Payload:
    payload: Payload = {row.key: sample(row) for row in rows}
    if phases:
        payload["phases"] = {
            line: {row.key: 100.0 for row in rows if row.phased} for line in PHASE_NAMES[:phases]
        }
    return payload


def gateway_doc(
    system: Payload | None = None,
    gateway: Payload | None = None,
    meters: dict[str, Payload] | None = None,
    health: Payload | None = None,
) -> Payload:
    return gateway_config(
        TOPICS, GW, system, gateway, meters or {}, SYSTEM_INTERVAL, DEVICE_INTERVAL, health=health
    )


def check(doc: Payload, serial: str = GW.serial) -> None:
    topic = TOPICS.device_config(device_id(serial))
    assert validate_device_discovery(topic, doc) == []
    # what the broker carries is JSON: the same verdict after a round trip
    assert validate_device_discovery(topic, json.loads(json.dumps(doc, allow_nan=False))) == []


def keys_of(doc: Payload) -> set[str]:
    return set(doc["components"])


# --------------------------------------------------------------------------- what is announced


def test_only_present_keys_are_announced() -> None:
    """An unmetered Envoy: no consumption, no grid, no battery, no meter entities."""
    system = {
        "timestamp": "2026-11-26T14:05:00Z",
        "production_power": 5305,
        "production_energy_today": 17645,
        "production_energy_last_7_days": 217726,
        "production_energy_lifetime": 19229325,
        "inverters_count": 24,
    }
    doc = gateway_doc(system, {"serial": GW.serial, "firmware": "D8.2.4345", "metered": False})
    check(doc)
    assert keys_of(doc) == {*system, "serial", "firmware", "metered"}
    assert not any("consumption" in k or "net_" in k or "battery" in k for k in keys_of(doc))


def test_null_values_are_announced_absent_keys_are_not() -> None:
    doc = gateway_doc({"production_power": None})
    assert keys_of(doc) == {"production_power"}
    assert gateway_doc(None, None)["components"] == {}


def test_phase_entities_follow_the_payload() -> None:
    system = {"production_power": 1, "net_power": 2, "phases": {"l1": {"production_power": 1}, "l2": {}}}
    doc = gateway_doc(system)
    check(doc)
    assert keys_of(doc) == {"production_power", "net_power", "production_power_l1"}
    phase = doc["components"]["production_power_l1"]
    assert phase["value_template"] == "{{ value_json.phases.l1.production_power }}"
    assert phase["unique_id"] == f"envoy2mqtt_{GW.serial}_production_power_l1"
    assert phase["name"] == "Production power L1"


def test_unphased_rows_get_no_phase_entities() -> None:
    system = {"production_energy_lifetime": 1, "phases": {"l1": {"production_energy_lifetime": 1}}}
    assert keys_of(gateway_doc(system)) == {"production_energy_lifetime"}


def test_meter_entities_identity() -> None:
    meters = {"net-consumption": full(METER, phases=3), "production": {"power": 1}}
    doc = gateway_doc(meters=meters)
    check(doc)
    power = doc["components"]["net_consumption_ct_power"]
    assert power["unique_id"] == f"envoy2mqtt_{GW.serial}_net_consumption_ct_power"
    assert power["state_topic"] == f"envoy2mqtt/{GW.serial}/meter/net-consumption"
    assert power["name"] == "Net consumption CT power"
    l3 = doc["components"]["net_consumption_ct_voltage_l3"]
    assert l3["unique_id"] == f"envoy2mqtt_{GW.serial}_net_consumption_ct_voltage_l3"
    assert l3["value_template"] == "{{ value_json.phases.l3.voltage }}"
    assert doc["components"]["production_ct_power"]["name"] == "Production CT power"


def test_device_block_and_shared_options() -> None:
    doc = gateway_doc({"production_power": 1})
    assert doc["device"] == {
        "identifiers": [f"envoy2mqtt_{GW.serial}"],
        "name": GW.name,
        "manufacturer": "Enphase",
        "model": "IQ Gateway",
        "model_id": "800-00654-r08",
        "serial_number": GW.serial,
        "sw_version": "D8.2.4345",
        "configuration_url": "https://192.168.1.50",
    }
    assert doc["origin"] == {
        "name": "envoy2mqtt",
        "sw_version": envoy2mqtt.__version__,
        "support_url": envoy2mqtt.PROJECT_URL,
    }
    assert doc["availability"] == [
        {"topic": "envoy2mqtt/bridge/availability"},
        {"topic": f"envoy2mqtt/{GW.serial}/availability"},
    ]
    assert doc["availability_mode"] == "all"
    assert doc["qos"] == 1


def test_unknown_device_fields_are_left_out() -> None:
    bare = GatewayDescription(
        serial="1", name="Envoy 1", firmware=None, part_number=None, configuration_url=None
    )
    doc = gateway_config(TOPICS, bare, {"production_power": 1}, None, {}, 60, 300)
    assert set(doc["device"]) == {"identifiers", "name", "manufacturer", "model", "serial_number"}
    assert validate_device_discovery(TOPICS.device_config(device_id("1")), doc) == []


def test_children_are_linked_to_the_gateway() -> None:
    inverter = inverter_config(TOPICS, GW, "482211050001", full(INVERTER), DEVICE_INTERVAL)
    battery = battery_config(TOPICS, GW, "122227000001", full(BATTERY) | {"kind": "iq"}, DEVICE_INTERVAL)
    check(inverter, "482211050001")
    check(battery, "122227000001")
    for doc, serial in ((inverter, "482211050001"), (battery, "122227000001")):
        assert doc["device"]["identifiers"] == [f"envoy2mqtt_{serial}"]
        assert doc["device"]["via_device"] == f"envoy2mqtt_{GW.serial}"
        assert doc["device"]["serial_number"] == serial
        assert "configuration_url" not in doc["device"]
        assert doc["availability"][1] == {"topic": f"envoy2mqtt/{GW.serial}/availability"}
        for key, component in doc["components"].items():
            assert component["unique_id"] == f"envoy2mqtt_{serial}_{key}"
            assert component["expire_after"] == 900
    assert inverter["components"]["power"]["state_topic"] == f"envoy2mqtt/{GW.serial}/inverter/482211050001"
    assert battery["components"]["soc"]["state_topic"] == f"envoy2mqtt/{GW.serial}/battery/122227000001"
    assert battery["device"]["model"] == "IQ Battery"
    acb = battery_config(TOPICS, GW, "1", {"kind": "acb", "soc": 50}, DEVICE_INTERVAL)
    assert acb["device"]["name"] == "AC Battery 1"


def test_expire_after_follows_each_cadence() -> None:
    doc = gateway_config(
        TOPICS, GW, {"production_power": 1}, {"firmware": "x"}, {"production": {"power": 1}}, 30, 600
    )
    parts = doc["components"]
    assert parts["production_power"]["expire_after"] == 90  # system: 3 x system interval
    assert parts["production_ct_power"]["expire_after"] == 90  # meters share the system cadence
    assert parts["firmware"]["expire_after"] == 1800  # gateway: 3 x max(device, system)
    inverter = inverter_config(TOPICS, GW, "9", {"power": 1}, 301.5)
    assert inverter["components"]["power"]["expire_after"] == 905  # a whole number of seconds, rounded up


def test_component_fields_come_from_the_table() -> None:
    doc = gateway_doc(full(SYSTEM), full(GATEWAY), {ct: full(METER) for ct in CT_TYPES})
    check(doc)
    for table, prefix in [
        (SYSTEM, ""),
        (GATEWAY, ""),
        *[(METER, f"{ct.replace('-', '_')}_ct_") for ct in CT_TYPES],
    ]:
        for row in table:
            component = doc["components"][prefix + row.key]
            assert component["platform"] == row.platform
            assert component.get("device_class") == row.device_class
            assert component.get("unit_of_measurement") == row.unit
            assert component.get("state_class") == row.state_class
            assert component.get("suggested_display_precision") == row.precision
            assert component.get("entity_category") == ("diagnostic" if row.diagnostic else None)
            assert component.get("enabled_by_default", True) is row.enabled
            assert component.get("options") == (list(row.options) if row.options else None)
            assert component["default_entity_id"].startswith(f"{row.platform}.")
            if row.template:
                assert component["value_template"] == row.template
            elif row.platform == "sensor":
                assert component["value_template"] == f"{{{{ value_json.{row.key} }}}}"
    names = {c["name"] for c in doc["components"].values()}
    for ct in CT_TYPES:
        assert f"{METER_LABELS[ct]} power" in names


def test_binary_sensor_template_covers_null() -> None:
    doc = inverter_config(TOPICS, GW, "9", {"communicating": True, "producing": None}, 300)
    communicating = doc["components"]["communicating"]
    assert communicating["platform"] == "binary_sensor"
    assert communicating["device_class"] == "connectivity"
    assert communicating["value_template"] == (
        "{% if value_json.communicating is none %}None"
        "{% elif value_json.communicating %}ON{% else %}OFF{% endif %}"
    )
    assert doc["components"]["producing"]["device_class"] == "running"


def test_templates_render_like_home_assistant() -> None:
    """Rendered with Jinja2 (what HA uses): numbers pass through, booleans become ON/OFF, null unknown."""
    jinja2 = pytest.importorskip("jinja2")
    environment = jinja2.Environment(autoescape=False)
    state = {"power": 250, "communicating": True, "producing": False, "provisioned": None}
    doc = inverter_config(TOPICS, GW, "9", state, 300)

    def render(key: str, value_json: Payload) -> str:
        return str(
            environment.from_string(doc["components"][key]["value_template"]).render(value_json=value_json)
        )

    assert render("power", state) == "250"
    assert render("communicating", state) == "ON"
    assert render("producing", state) == "OFF"
    assert render("provisioned", state) == "None"
    system = {"production_power": 1, "phases": {"l2": {"production_power": -3.5}}}
    gateway = gateway_doc(system, {"ct_meters": ["production", "storage"]})
    template = gateway["components"]["production_power_l2"]["value_template"]
    assert environment.from_string(template).render(value_json=system) == "-3.5"
    joined = gateway["components"]["ct_meters"]["value_template"]
    assert environment.from_string(joined).render(value_json={"ct_meters": ["production", "storage"]}) == (
        "production, storage"
    )


def test_health_last_error_and_grid_templates_render_like_home_assistant() -> None:
    """Stale devices: a count as the state, the serials and last reports as attributes; the Last error
    entity reads OK while the payload's last_error is null; the grid relay as a connectivity sensor."""
    jinja2 = pytest.importorskip("jinja2")
    environment = jinja2.Environment(autoescape=False)
    stale = [{"serial": "122310000009", "last_report": "2026-06-21T10:00:00Z"}]
    health = {"inverters_reporting": 23, "inverters_stale": stale, "inverters_underperforming": 1}
    doc = gateway_doc({"on_grid": False}, {"last_error": None}, None, health)
    parts = doc["components"]

    def render(template: str, value_json: Payload) -> str:
        return str(environment.from_string(template).render(value_json=value_json))

    assert render(parts["inverters_stale"]["value_template"], health) == "1"
    assert parts["inverters_stale"]["json_attributes_topic"] == TOPICS.health(GW.serial)
    attributes = json.loads(render(parts["inverters_stale"]["json_attributes_template"], health))
    assert attributes == {"devices": stale}
    assert render(parts["last_error"]["value_template"], {"last_error": None}) == "OK"
    assert render(parts["last_error"]["value_template"], {"last_error": "timeout"}) == "timeout"
    assert render(parts["on_grid"]["value_template"], {"on_grid": False}) == "OFF"
    assert render(parts["on_grid"]["value_template"], {"on_grid": True}) == "ON"
    assert parts["on_grid"]["device_class"] == "connectivity"
    check(doc)


def test_energy_dashboard_inputs_need_no_templates() -> None:
    """Solar, grid import/export, battery in/out: energy, Wh, total_increasing; power: W, measurement."""
    doc = gateway_doc(full(SYSTEM), None, {"storage": full(METER), "net-consumption": full(METER)})
    parts = doc["components"]
    for key in (
        "production_energy_lifetime",
        "grid_import_energy_lifetime",
        "grid_export_energy_lifetime",
        "consumption_energy_lifetime",
        "storage_ct_energy_delivered_lifetime",
        "storage_ct_energy_received_lifetime",
        "net_consumption_ct_energy_delivered_lifetime",
    ):
        assert (parts[key]["device_class"], parts[key]["unit_of_measurement"], parts[key]["state_class"]) == (
            "energy",
            "Wh",
            "total_increasing",
        ), key
    for key in ("production_power", "consumption_power", "net_power", "battery_power", "storage_ct_power"):
        assert (parts[key]["device_class"], parts[key]["unit_of_measurement"], parts[key]["state_class"]) == (
            "power",
            "W",
            "measurement",
        ), key
    assert parts["battery_soc"]["device_class"] == "battery"
    assert "state_class" not in parts["production_energy_last_7_days"]


def test_no_object_id_and_unique_ids_are_stable_strings() -> None:
    doc = gateway_doc(full(SYSTEM, 3), full(GATEWAY), {ct: full(METER, 3) for ct in CT_TYPES})
    text = json.dumps(doc)
    assert "object_id" not in text
    assert '"obj_id"' not in text
    ids = [c["unique_id"] for c in doc["components"].values()]
    assert len(ids) == len(set(ids))
    assert all(i.startswith(f"envoy2mqtt_{GW.serial}_") for i in ids)


def test_serials_are_sanitized_in_ids_and_topics() -> None:
    doc = inverter_config(TOPICS, GW, "48/22+1", {"power": 1}, 300)
    assert device_id("48/22+1") == "envoy2mqtt_48_22_1"
    assert doc["device"]["identifiers"] == ["envoy2mqtt_48_22_1"]
    assert doc["components"]["power"]["unique_id"] == "envoy2mqtt_48_22_1_power"
    assert doc["components"]["power"]["state_topic"] == f"envoy2mqtt/{GW.serial}/inverter/48_22_1"
    assert validate_device_discovery(TOPICS.device_config(device_id("48/22+1")), doc) == []


# --------------------------------------------------------------------------- every real capture


@pytest.mark.parametrize("folder", capture_params())
def test_every_capture_yields_valid_discovery(folder: Path) -> None:
    from envoy2mqtt.normalize import normalize_devices, normalize_meters, normalize_system
    from tests.test_normalize_support import load_capture

    capture = load_capture(folder)
    system = normalize_system(capture.system, capture.info, capture.features).payload()
    meters = {m.ct_type: m.payload() for m in normalize_meters(capture.system, capture.features)}
    devices = normalize_devices(capture.devices, capture.features)
    gateway = {
        "serial": capture.info.serial,
        "part_number": capture.info.part_number,
        "firmware": capture.info.firmware,
        "metered": capture.features.metered,
        "ct_meters": list(capture.features.ct_meters),
        "phase_count": capture.features.phase_count,
        "auth_mode": capture.info.auth_mode,
        "last_poll_ok": "2026-11-26T14:05:00Z",
        "last_error": None,
        "poll_duration": 1.25,
    }
    gw = GatewayDescription(
        capture.info.serial,
        f"Envoy {capture.info.serial}",
        capture.info.firmware,
        capture.info.part_number,
        None,
    )
    doc = gateway_config(TOPICS, gw, system, gateway, meters, SYSTEM_INTERVAL, DEVICE_INTERVAL)
    assert validate_device_discovery(TOPICS.device_config(device_id(gw.serial)), doc) == []
    announced = keys_of(doc)
    for key in system:
        if key != "phases":
            assert key in announced
    if not capture.features.consumption:
        assert not any(k.startswith("consumption_") for k in announced)
    for inverter in devices.inverters:
        child = inverter_config(TOPICS, gw, inverter.serial, inverter.payload(), DEVICE_INTERVAL)
        assert validate_device_discovery(TOPICS.device_config(device_id(inverter.serial)), child) == []
        assert keys_of(child) == set(inverter.payload())
    for battery in devices.batteries:
        child = battery_config(TOPICS, gw, battery.serial, battery.payload(), DEVICE_INTERVAL)
        assert validate_device_discovery(TOPICS.device_config(device_id(battery.serial)), child) == []


# --------------------------------------------------------------------------- generated readings


def _value(row: Entity) -> st.SearchStrategy[Any]:
    finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9)
    strategies: dict[str, st.SearchStrategy[Any]] = {
        "number": finite,
        "integer": st.integers(0, 10_000),
        "bool": st.booleans(),
        "text": st.text(max_size=20),
        "time": st.just("2026-11-26T14:05:00Z"),
        "list": st.lists(st.sampled_from(CT_TYPES), unique=True),
        "enum": st.sampled_from(row.options or ("x",)),
    }
    return st.one_of(st.none(), strategies[row.kind])


@st.composite
def readings(draw: st.DrawFn, rows: tuple[Entity, ...]) -> Payload:
    keys = draw(st.lists(st.sampled_from([r.key for r in rows]), unique=True))
    by_key = {r.key: r for r in rows}
    payload: Payload = {k: draw(_value(by_key[k])) for k in keys}
    phased = [r.key for r in rows if r.phased]
    if phased and draw(st.booleans()):
        lines = draw(st.integers(1, 3))
        payload["phases"] = {
            line: {
                k: draw(st.none() | st.floats(-1e6, 1e6))
                for k in draw(st.lists(st.sampled_from(phased), unique=True))
            }
            for line in PHASE_NAMES[:lines]
        }
    return payload


serials = st.text(alphabet="0123456789ABCDEFabcdef-_/+ #", min_size=1, max_size=16)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    serial=serials,
    system=st.none() | readings(SYSTEM),
    gateway=st.none() | readings(GATEWAY),
    meters=st.dictionaries(st.sampled_from(CT_TYPES), readings(METER), max_size=4),
    system_interval=st.floats(10, 3600),
    device_interval=st.floats(60, 3600),
)
def test_generated_gateway_readings_give_valid_discovery(
    serial: str,
    system: Payload | None,
    gateway: Payload | None,
    meters: dict[str, Payload],
    system_interval: float,
    device_interval: float,
) -> None:
    gw = GatewayDescription(serial, f"Envoy {serial}", "D8.2.4345", None, "http://envoy.local")
    doc = gateway_config(TOPICS, gw, system, gateway, meters, system_interval, device_interval)
    errors = validate_device_discovery(TOPICS.device_config(device_id(serial)), doc)
    if doc["components"]:
        assert errors == []
    else:
        assert errors == ["components must be a non-empty object"]  # nothing measurable yet: not announced
    expected = set()
    for payload, prefix in [(system, ""), (gateway, "")] + [
        (m, f"{ct.replace('-', '_')}_ct_") for ct, m in meters.items()
    ]:
        for key in payload or {}:
            if key != "phases":
                expected.add(prefix + key)
        for line, values in ((payload or {}).get("phases") or {}).items():
            expected.update(f"{prefix}{key}_{line}" for key in values)
    assert keys_of(doc) == expected


@settings(max_examples=100)
@given(serial=serials, inverter=readings(INVERTER), battery=readings(BATTERY))
def test_generated_device_readings_give_valid_discovery(
    serial: str, inverter: Payload, battery: Payload
) -> None:
    for builder, state in ((inverter_config, inverter), (battery_config, battery)):
        doc = builder(TOPICS, GW, serial, state, DEVICE_INTERVAL)
        errors = validate_device_discovery(TOPICS.device_config(device_id(serial)), doc)
        assert errors == ([] if state else ["components must be a non-empty object"])
        assert keys_of(doc) == set(state)


# --------------------------------------------------------------------------- the validator's rules

VALID_TOPIC = TOPICS.device_config(device_id(GW.serial))


def valid_doc() -> Payload:
    return gateway_doc(
        {"production_power": 1, "production_energy_lifetime": 2, "production_energy_last_7_days": 3},
        {"metered": True},
        {"net-consumption": {"power": 1}},
    )


Mutation = Callable[[Payload], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(doc: Payload) -> None:
        *parents, last = path.split(".")
        target = doc
        for part in parents:
            target = target[part]
        target[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(doc: Payload) -> None:
        *parents, last = path.split(".")
        target = doc
        for part in parents:
            target = target[part]
        del target[last]

    return mutate


POWER = "components.production_power"
ENERGY = "components.production_energy_lifetime"
METERED = "components.metered"

BAD_EXAMPLES: list[tuple[str, Mutation, str]] = [
    ("device required", _delete("device"), "device is required"),
    ("device identifiers", _delete("device.identifiers"), "identifiers (or connections) are required"),
    ("device identifiers empty", _set("device.identifiers", []), "non-empty"),
    ("device name", _delete("device.name"), "device: name is required"),
    ("configuration_url scheme", _set("device.configuration_url", "ftp://envoy"), "configuration_url"),
    ("configuration_url not a url", _set("device.configuration_url", "192.168.1.50"), "configuration_url"),
    ("origin required", _delete("origin"), "origin is required"),
    ("origin name", _delete("origin.name"), "origin: name is required"),
    ("origin support_url", _set("origin.support_url", "not a url"), "support_url"),
    ("components required", _delete("components"), "components is required"),
    ("components empty", _set("components", {}), "non-empty"),
    ("platform required", _delete(f"{POWER}.platform"), "platform is required"),
    ("platform supported", _set(f"{POWER}.platform", "gauge"), "not a supported component"),
    ("unique_id required", _delete(f"{POWER}.unique_id"), "unique_id is required"),
    (
        "unique_id unique",
        _set(f"{ENERGY}.unique_id", f"envoy2mqtt_{GW.serial}_production_power"),
        "also used",
    ),
    ("state_topic required", _delete(f"{POWER}.state_topic"), "state_topic is required"),
    ("state_topic wildcard", _set(f"{POWER}.state_topic", "envoy2mqtt/+/system"), "not a valid topic"),
    ("state_topic multi-level wildcard", _set(f"{POWER}.state_topic", "envoy2mqtt/#"), "not a valid topic"),
    ("availability topic wildcard", _set("availability", [{"topic": "a/#"}]), "availability[0].topic"),
    (
        "availability exclusive",
        _set("availability_topic", "envoy2mqtt/bridge/availability"),
        "mutually exclusive",
    ),
    ("availability mode", _set("availability_mode", "every"), "availability_mode"),
    ("object_id", _set(f"{POWER}.object_id", "envoy_power"), "object_id"),
    ("obj_id abbreviated", _set(f"{POWER}.obj_id", "envoy_power"), "object_id"),
    (
        "unit with device class",
        _set(f"{ENERGY}.unit_of_measurement", "W"),
        "not valid together with device class",
    ),
    ("unit spelling", _set(f"{POWER}.unit_of_measurement", "w"), "not valid together with device class"),
    ("unit missing", _delete(f"{POWER}.unit_of_measurement"), "not valid together with device class"),
    ("temperature unit", _set(f"{POWER}.device_class", "temperature"), "not valid together"),
    ("state class unknown", _set(f"{POWER}.state_class", "increasing"), "is not one of"),
    (
        "energy measurement",
        _set(f"{ENERGY}.state_class", "measurement"),
        "impossible with device class 'energy'",
    ),
    ("power total", _set(f"{POWER}.state_class", "total_increasing"), "impossible with device class 'power'"),
    (
        "seven-day window state class",
        _set("components.production_energy_last_7_days.state_class", "total_increasing"),
        "seven-day window",
    ),
    (
        "last_reset without total",
        _set(f"{ENERGY}.last_reset_value_template", "{{ 0 }}"),
        "last_reset_value_template",
    ),
    ("options without enum", _set(f"{POWER}.options", ["a"]), "only allowed with device_class 'enum'"),
    ("enum without options", _set(f"{POWER}.device_class", "enum"), "needs options"),
    ("timestamp with unit", _set(f"{POWER}.device_class", "timestamp"), "takes no unit_of_measurement"),
    ("device class unknown", _set(f"{POWER}.device_class", "solar"), "not a sensor device class"),
    (
        "binary device class unknown",
        _set(f"{METERED}.device_class", "metered"),
        "not a binary_sensor device class",
    ),
    ("binary sensor with a unit", _set(f"{METERED}.unit_of_measurement", "W"), "not a binary_sensor option"),
    ("entity_category config", _set(f"{POWER}.entity_category", "config"), "may only be 'diagnostic'"),
    (
        "entity_category binary config",
        _set(f"{METERED}.entity_category", "config"),
        "may only be 'diagnostic'",
    ),
    ("expire_after positive", _set(f"{POWER}.expire_after", 0), "expire_after"),
    ("expire_after integer", _set(f"{POWER}.expire_after", 180.5), "expire_after"),
    ("enabled_by_default bool", _set(f"{POWER}.enabled_by_default", "no"), "enabled_by_default"),
    ("qos range", _set("qos", 3), "qos"),
    ("precision", _set(f"{POWER}.suggested_display_precision", -1), "suggested_display_precision"),
    ("default_entity_id domain", _set(f"{POWER}.default_entity_id", "binary_sensor.x"), "has domain"),
    ("default_entity_id chars", _set(f"{POWER}.default_entity_id", "sensor.Envoy-1"), "[a-z0-9_]"),
    (
        "component id chars",
        _set("components.bad id", {"platform": "sensor", "unique_id": "u"}),
        "component id",
    ),
    ("abbreviation twice", _set(f"{POWER}.uniq_id", "other"), "given twice"),
]


@pytest.mark.parametrize(
    ("mutation", "expected"), [(m, e) for _, m, e in BAD_EXAMPLES], ids=[n for n, _, _ in BAD_EXAMPLES]
)
def test_validator_rejects(mutation: Mutation, expected: str) -> None:
    doc = valid_doc()
    assert validate_device_discovery(VALID_TOPIC, doc) == []
    mutation(doc)
    errors = validate_device_discovery(VALID_TOPIC, doc)
    assert errors, "the bad example was accepted"
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize(
    "topic",
    [
        "homeassistant/sensor/envoy2mqtt_1/config",
        "homeassistant/device/envoy 1/config",
        "homeassistant/device/envoy2mqtt_1/state",
        "home+assistant/device/envoy2mqtt_1/config",
        "homeassistant/device/a/b/c/config",
    ],
)
def test_validator_rejects_bad_topics(topic: str) -> None:
    assert validate_device_discovery(topic, valid_doc())


def test_validator_rejects_a_non_object() -> None:
    assert validate_device_discovery(VALID_TOPIC, [1, 2]) == ["the payload must be a JSON object"]  # type: ignore[arg-type]


def test_validator_accepts_abbreviations_base_topic_and_removal() -> None:
    doc = {
        "dev": {"ids": "envoy2mqtt_1", "name": "Envoy 1", "mf": "Enphase", "cu": "homeassistant://config"},
        "o": {"name": "envoy2mqtt", "sw": "0.1.0", "url": "https://example.org"},
        "~": "envoy2mqtt/1",
        "avty_t": "~/availability",
        "stat_t": "~/system",
        "cmps": {
            "p": {
                "p": "sensor",
                "uniq_id": "envoy2mqtt_1_p",
                "dev_cla": "power",
                "unit_of_meas": "kW",
                "stat_cla": "measurement",
                "val_tpl": "{{ value_json.p }}",
            },
            "net": {
                "p": "sensor",
                "uniq_id": "envoy2mqtt_1_net",
                "dev_cla": "energy",
                "unit_of_meas": "Wh",
                "stat_cla": "total",
                "lrst_val_tpl": "{{ value_json.reset }}",
            },
            "gone": {"p": "sensor"},
        },
    }
    assert validate_device_discovery("homeassistant/device/envoy2mqtt_1/config", doc) == []
    doc["cmps"]["p"]["stat_t"] = "~/+"  # type: ignore[index]
    assert any("not a valid topic" in e for e in validate_device_discovery("x/device/y/config", doc))


def test_validator_checks_inherited_state_topic() -> None:
    doc = copy.deepcopy(valid_doc())
    for component in doc["components"].values():
        del component["state_topic"]
    errors = validate_device_discovery(VALID_TOPIC, doc)
    assert len([e for e in errors if "state_topic is required" in e]) == len(doc["components"])
    doc["state_topic"] = "envoy2mqtt/x/system"
    assert validate_device_discovery(VALID_TOPIC, doc) == []


# --------------------------------------------------------------------------- snapshots


REALTIME_GATEWAY_KEYS = ("realtime_source", "realtime_interval", "realtime_state")


def three_phase_site() -> Payload:
    system = full(SYSTEM, phases=3)
    gateway = {k: v for k, v in full(GATEWAY).items() if k not in REALTIME_GATEWAY_KEYS}
    gateway |= {"auth_mode": "token", "token_type": "owner"}
    meters = {ct: full(METER, phases=3) for ct in ("production", "net-consumption", "storage")}
    return gateway_doc(system, gateway, meters, full(HEALTH))


def realtime_site() -> Payload:
    """A 3-phase site with [realtime] on (livedata: every live key, per phase)."""
    system = {"timestamp": "2026-11-26T14:05:00Z", "production_power": 5305, "net_power": -120}
    gateway = {"serial": GW.serial, "firmware": "D8.2.4345", "auth_mode": "token"}
    gateway |= {"realtime_source": "livedata", "realtime_interval": 1, "realtime_state": "running"}
    live = full(LIVE, phases=3)
    return gateway_config(
        TOPICS, GW, system, gateway, {}, SYSTEM_INTERVAL, DEVICE_INTERVAL, live=live, live_interval=1
    )


def unmetered_site() -> Payload:
    system = {
        "timestamp": "2026-11-26T14:05:00Z",
        "production_power": 5305,
        "production_energy_today": 17645,
        "production_energy_last_7_days": 217726,
        "production_energy_lifetime": 19229325,
        "inverters_count": 24,
    }
    gateway = {
        "serial": GW.serial,
        "firmware": "D7.6.175",
        "metered": False,
        "ct_meters": [],
        "auth_mode": "legacy",
    }
    return gateway_doc(system, gateway, {})


@pytest.mark.parametrize(
    "name",
    [
        "three_phase_site",
        "unmetered_site",
        "realtime_site",
        "inverter_detailed",
        "inverter_basic",
        "iq_battery",
        "ac_battery",
    ],
)
def test_discovery_snapshot(name: str, json_snapshot: SnapshotAssertion) -> None:
    docs: dict[str, Callable[[], Payload]] = {
        "three_phase_site": three_phase_site,
        "unmetered_site": unmetered_site,
        "realtime_site": realtime_site,
        "inverter_detailed": lambda: inverter_config(
            TOPICS, GW, "482211050001", full(INVERTER), DEVICE_INTERVAL
        ),
        "inverter_basic": lambda: inverter_config(
            TOPICS,
            GW,
            "121935000001",
            {"power": 250, "max_power": 295, "last_report": "2026-11-26T14:00:00Z", "producing": True},
            DEVICE_INTERVAL,
        ),
        "iq_battery": lambda: battery_config(
            TOPICS, GW, "122227000001", full(BATTERY) | {"kind": "iq"}, DEVICE_INTERVAL
        ),
        "ac_battery": lambda: battery_config(
            TOPICS,
            GW,
            "121800000001",
            {"kind": "acb", "power": 260, "soc": 25, "max_cell_temperature": 21, "state": "discharging"},
            DEVICE_INTERVAL,
        ),
    }
    doc = docs[name]()
    serial = doc["device"]["serial_number"]
    assert validate_device_discovery(TOPICS.device_config(device_id(serial)), doc) == []
    assert doc == json_snapshot


def test_tables_cover_every_component() -> None:
    assert set(TABLES) == {"system", "gateway", "health", "inverter", "battery", "meter", "live"}


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(serial=serials, live=readings(LIVE), interval=st.floats(1, 60))
def test_generated_live_readings_give_valid_discovery(serial: str, live: Payload, interval: float) -> None:
    gw = GatewayDescription(serial, f"Envoy {serial}", "D8.2.4345", None, "http://envoy.local")
    system = {"production_power": 1.0}
    doc = gateway_config(
        TOPICS, gw, system, None, {}, SYSTEM_INTERVAL, DEVICE_INTERVAL, live=live, live_interval=interval
    )
    assert validate_device_discovery(TOPICS.device_config(device_id(serial)), doc) == []
    expected = {"production_power"} | {f"live_{key}" for key in live if key != "phases"}
    for line, values in (live.get("phases") or {}).items():
        expected.update(f"live_{key}_{line}" for key in values)
    assert keys_of(doc) == expected
    for key, component in doc["components"].items():
        if key.startswith("live_"):
            assert component["state_topic"] == TOPICS.live(serial)
            assert component["name"].startswith("Live ")
            assert 15 <= component["expire_after"] <= 3 * interval + 15


def test_live_entities_only_while_realtime_is_on() -> None:
    system = {"production_power": 1.0}
    off = gateway_config(TOPICS, GW, system, None, {}, SYSTEM_INTERVAL, DEVICE_INTERVAL)
    assert not any(key.startswith("live_") for key in off["components"])
    on = gateway_config(
        TOPICS, GW, system, None, {}, SYSTEM_INTERVAL, DEVICE_INTERVAL,
        live={"grid_power": 1, "phases": {"l1": {"grid_power": 1}}}, live_interval=5,
    )  # fmt: skip
    assert on["components"]["live_grid_power"]["name"] == "Live grid power"
    assert on["components"]["live_grid_power_l1"]["name"] == "Live grid power L1"
    assert on["components"]["live_grid_power"]["expire_after"] == 15


async def test_discovery_through_a_real_broker(mosquitto: Mosquitto) -> None:
    """What Home Assistant reads back from the broker: retained, valid, identical to what was built."""
    from tests.test_mqtt_publisher import retained, running, settings_for, wait_connected

    settings, topics = settings_for(mosquitto.port)
    gw = GatewayDescription("122302045041", "Envoy", "D8.2.4345", "800-00654-r08", "https://envoy.local")
    doc = gateway_config(topics, gw, full(SYSTEM, 3), full(GATEWAY), {"production": full(METER)}, 60, 300)
    child = inverter_config(topics, gw, "482211050001", full(INVERTER), 300)
    publisher = Publisher(settings, topics)
    publisher.set_config(topics.device_config(device_id(gw.serial)), doc)
    publisher.set_config(topics.device_config(device_id("482211050001")), child)
    async with running(publisher):
        await wait_connected(publisher)
        await publisher.republish_all()
        kept = await retained(mosquitto.port, f"{settings.discovery_prefix}/#")
    assert set(kept) == {
        topics.device_config("envoy2mqtt_122302045041"),
        topics.device_config("envoy2mqtt_482211050001"),
    }
    for topic, body in kept.items():
        decoded = json.loads(body)
        assert validate_device_discovery(topic, decoded) == []
        assert decoded in (doc, child)
