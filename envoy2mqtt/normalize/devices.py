"""The `inverter/<serial>` and `battery/<serial>` topics.

Inverters: power / max / last report from /ivp/pdm/device_data when `features.detailed_inverters`
(which adds energy and electrical details), else from /api/v1/production/inverters; health flags from
the /inventory.json PCU group. Batteries: AC Batteries from the `devType` 11 rows of
/api/v1/production/inverters plus the /inventory.json ACB group; IQ Batteries from the ENCHARGE devices
of /ivp/ensemble/inventory plus /ivp/ensemble/power.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy2mqtt.envoy import endpoints
from envoy2mqtt.model import (
    BATTERY_STATES,
    BatteryReading,
    DeviceReadings,
    Features,
    InverterReading,
    RawDeviceData,
)

from . import quirks
from ._values import (
    Problems,
    as_mapping,
    flag,
    iso_time,
    lifetime,
    mappings,
    number,
    path_number,
    round_value,
    text,
)
from .system import battery_state_from_power

_INVENTORY_FLAGS = ("provisioned", "communicating", "producing", "operating")
_DETAILED_KEYS = (
    "energy_today",
    "energy_lifetime",
    "dc_voltage",
    "dc_current",
    "ac_voltage",
    "ac_current",
    "ac_frequency",
    "temperature",
)
_DEV_TYPE_ACB = 11
# /ivp/ensemble/inventory `led_status` codes that state what the battery does (homebridge LedStatus).
_LED_STATES = {12: "charging", 13: "discharging", 14: "idle"}
_INVENTORY_DELETED = 3  # admin_state of a device removed from the Envoy (/inventory.json?deleted=1)
_JOULES_PER_WH = 3600


def _serial(obj: object, key: str) -> str | None:
    value = text(obj, key)
    if value is None:
        return None
    value = value.strip()
    return value if value and len(value) <= 64 and value.isprintable() and "/" not in value else None


def _inventory_group(inventory: object, kind: str) -> dict[str, Mapping[str, Any]]:
    """Serial -> device of one /inventory.json group (PCU, ACB), deleted devices left out."""
    devices: dict[str, Mapping[str, Any]] = {}
    for group in mappings(inventory):
        if text(group, "type") != kind:
            continue
        for device in mappings(group.get("devices")):
            serial = _serial(device, "serial_num")
            if serial is not None and number(device, "admin_state") != _INVENTORY_DELETED:
                devices[serial] = device
    return devices


def _v1_rows(inverters: object, acb: bool) -> dict[str, Mapping[str, Any]]:
    """Serial -> /api/v1/production/inverters row; `devType` 11 rows are AC Batteries (missing on fw 3.x)."""
    rows: dict[str, Mapping[str, Any]] = {}
    for row in mappings(inverters):
        serial = _serial(row, "serialNumber")
        if serial is None:
            continue
        is_acb = number(row, "devType") == _DEV_TYPE_ACB
        if is_acb == acb:
            rows[serial] = row
    return rows


def _inventory_time(device: Mapping[str, Any] | None) -> str | None:
    """`last_rpt_date` of an inventory device (a digit string in /inventory.json, an int in ensemble)."""
    return iso_time(quirks.inventory_date(device.get("last_rpt_date") if device is not None else None))


def _watts(value: float | None) -> float | None:
    return round_value(quirks.unwrap_uint32_watts(value))


def _detailed_inverters(device_data: object) -> dict[str, Mapping[str, Any]]:
    """Serial -> first channel of each published (active) pcu in /ivp/pdm/device_data."""
    data = as_mapping(device_data)
    found: dict[str, Mapping[str, Any]] = {}
    if data is None:
        return found
    for key, entry in data.items():
        if key in ("deviceCount", "deviceDataLimit") or text(entry, "devName") != "pcu":
            continue
        if not quirks.device_data_is_published(entry):
            continue
        serial = _serial(entry, "sn")
        body = as_mapping(entry)
        channels = mappings(body.get("channels")) if body is not None else []
        if serial is not None:
            found[serial] = channels[0] if channels else {}
    return found


def _detailed_values(channel: Mapping[str, Any], serial: str, problems: Problems) -> dict[str, Any]:
    reading = channel.get("lastReading")
    joules = path_number(channel, "lifetime", "joulesProduced")
    return {
        "power": _watts(path_number(channel, "watts", "now")),
        "max_power": _watts(path_number(channel, "watts", "max")),
        "last_report": iso_time(number(reading, "endDate")),
        "energy_today": lifetime(
            path_number(channel, "wattHours", "today"), f"inverter {serial} today", problems
        ),
        "energy_lifetime": lifetime(
            None if joules is None else joules / _JOULES_PER_WH, f"inverter {serial} lifetime", problems
        ),
        "dc_voltage": round_value(quirks.from_milli(number(reading, "dcVoltageINmV"))),
        "dc_current": round_value(quirks.from_milli(number(reading, "dcCurrentINmA"))),
        "ac_voltage": round_value(quirks.from_milli(number(reading, "acVoltageINmV"))),
        "ac_current": round_value(quirks.from_milli(number(reading, "acCurrentInmA"))),
        "ac_frequency": round_value(quirks.from_milli(number(reading, "acFrequencyINmHz"))),
        "temperature": round_value(number(reading, "channelTemp")),
    }


def _inverters(raw: RawDeviceData, features: Features, problems: Problems) -> tuple[InverterReading, ...]:
    present = {"power", "max_power", "last_report"}
    if features.inventory:
        present.update(_INVENTORY_FLAGS)
    if features.detailed_inverters:
        present.update(_DETAILED_KEYS)
    inventory = _inventory_group(raw.inventory, "PCU")
    if features.inventory and raw.inventory is not None and not mappings(raw.inventory):
        problems.add("/inventory.json: not a list of device groups")

    detailed = _detailed_inverters(raw.device_data) if features.detailed_inverters else {}
    rows = _v1_rows(raw.inverters, acb=False)
    if features.detailed_inverters and not detailed:
        problems.add("/ivp/pdm/device_data: no inverter data this cycle, using /api/v1/production/inverters")
    serials = sorted(detailed) if detailed else sorted(rows)

    readings: list[InverterReading] = []
    for serial in serials:
        own = Problems()
        values: dict[str, Any]
        if detailed:
            values = _detailed_values(detailed[serial], serial, own)
        else:
            row = rows[serial]
            values = {
                "power": _watts(number(row, "lastReportWatts")),
                "max_power": _watts(number(row, "maxReportWatts")),
                "last_report": iso_time(number(row, "lastReportDate")),
            }
            values.update(dict.fromkeys(_DETAILED_KEYS))
        device = inventory.get(serial)
        for key in _INVENTORY_FLAGS:
            values[key] = flag(device, key)
        if features.inventory and raw.inventory is not None and device is None:
            own.add(f"/inventory.json: inverter {serial} not listed")
        readings.append(
            InverterReading(serial=serial, present=frozenset(present), problems=own.tuple(), **values)
        )
    return tuple(readings)


def _acb_batteries(raw: RawDeviceData, features: Features) -> list[BatteryReading]:
    """AC Batteries: v1 `devType` 11 rows (power, max, last report) + /inventory.json ACB group."""
    has_rows = endpoints.API_V1_INVERTERS in features.endpoints
    present = {"kind"}
    if has_rows:
        present.update(("power", "max_power", "last_report"))
    if features.inventory:
        present.update(("soc", "max_cell_temperature", "state", "provisioned", "communicating", "producing"))
        present.add("last_report")
    rows = _v1_rows(raw.inverters, acb=True)
    inventory = _inventory_group(raw.inventory, "ACB")
    readings: list[BatteryReading] = []
    for serial in sorted(set(rows) | set(inventory)):
        problems = Problems()
        row, device = rows.get(serial), inventory.get(serial)
        status = text(device, "charge_status")
        state = status if status in BATTERY_STATES else None
        power = _watts(number(row, "lastReportWatts"))
        if power is not None and state == "charging" and power > 0:
            power = -power  # the row carries a magnitude; the contract's sign is + = discharging
        last = iso_time(number(row, "lastReportDate")) or _inventory_time(device)
        soc = number(device, "percentFull")
        values: dict[str, Any] = {
            "kind": "acb",
            "power": power,
            "max_power": _watts(number(row, "maxReportWatts")),
            "soc": round_value(soc) if soc is not None and 0 <= soc <= 100 else None,
            "max_cell_temperature": round_value(number(device, "maxCellTemp")),
            "state": state,
            "provisioned": flag(device, "provisioned"),
            "communicating": flag(device, "communicating"),
            "producing": flag(device, "producing"),
            "last_report": last,
        }
        readings.append(
            BatteryReading(serial=serial, present=frozenset(present), problems=problems.tuple(), **values)
        )
    return readings


def _iq_batteries(raw: RawDeviceData, features: Features, problems: Problems) -> list[BatteryReading]:
    """IQ Batteries: ENCHARGE devices of /ivp/ensemble/inventory + /ivp/ensemble/power."""
    has_power = endpoints.ENSEMBLE_POWER in features.endpoints
    present = {"kind", "soc", "max_cell_temperature", "temperature", "state", "communicating", "capacity"}
    present.add("last_report")
    if has_power:
        present.add("power")
    power_rows: dict[str, Mapping[str, Any]] = {}
    for device in quirks.ensemble_power_devices(raw.ensemble_power):
        serial = _serial(device, "serial_num")
        if serial is not None:
            power_rows[serial] = device
    if has_power and raw.ensemble_power is not None and not power_rows:
        problems.add("/ivp/ensemble/power: no battery rows")
    devices: dict[str, Mapping[str, Any]] = {}
    for group in mappings(raw.ensemble_inventory):
        if text(group, "type") == "ENCHARGE":
            for device in mappings(group.get("devices")):
                serial = _serial(device, "serial_num")
                if serial is not None:
                    devices[serial] = device
    readings: list[BatteryReading] = []
    for serial in sorted(devices):
        own = Problems()
        device, row = devices[serial], power_rows.get(serial)
        if has_power and raw.ensemble_power is not None and row is None:
            own.add(f"/ivp/ensemble/power: battery {serial} not listed")
        power = round_value(quirks.from_milli(number(row, "real_power_mw")))
        # /ivp/ensemble/power's soc is live and matches secctrl ENC_agg_soc; inventory percentFull can lag
        # (8.2.4382_ACB: 10 % in the inventory, 54 % in power and secctrl).
        soc = number(row, "soc")
        if soc is None or not 0 <= soc <= 100:
            soc = number(device, "percentFull")
        soc = soc if soc is not None and 0 <= soc <= 100 else None
        led = number(device, "led_status")
        state = _LED_STATES.get(int(led)) if led is not None and led == int(led) else None
        if state == "idle" and soc is not None and soc >= 100:
            state = "full"
        if state is None:
            state = battery_state_from_power(power, soc)
        values: dict[str, Any] = {
            "kind": "iq",
            "power": power,
            "soc": round_value(soc),
            "max_cell_temperature": round_value(number(device, "maxCellTemp")),
            "temperature": round_value(number(device, "temperature")),
            "state": state,
            "communicating": flag(device, "communicating"),
            "capacity": round_value(number(device, "encharge_capacity")),
            "last_report": _inventory_time(device),
        }
        readings.append(
            BatteryReading(serial=serial, present=frozenset(present), problems=own.tuple(), **values)
        )
    return readings


def normalize_devices(raw: RawDeviceData, features: Features) -> DeviceReadings:
    """Inverters and batteries from one device cycle. Never raises."""
    problems = Problems()
    inverters = _inverters(raw, features, problems)
    batteries: list[BatteryReading] = []
    if features.acb:
        batteries.extend(_acb_batteries(raw, features))
    if features.iq_batteries:
        if raw.ensemble_inventory is None:
            problems.add("/ivp/ensemble/inventory: no data this cycle, IQ batteries unknown")
        batteries.extend(_iq_batteries(raw, features, problems))
    return DeviceReadings(inverters=inverters, batteries=tuple(batteries), problems=problems.tuple())
