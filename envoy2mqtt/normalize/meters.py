"""The `meter/<type>` topics: one reading per enabled CT, from /ivp/meters/readings joined by eid.

/ivp/meters (the probe's body) gives `meteringStatus` and `statusFlags`; the readings may list eids
that are not enabled, in another order (docs/envoy-local-api.md §4.6): only `features.meter_eids` count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy2mqtt.model import METERING_STATUSES, PHASE_NAMES, CtType, Features, MeterReading, RawSystemData

from . import quirks
from ._values import Problems, lifetime, mappings, number, round_value, text


def _power_factor(value: float | None, what: str, problems: Problems) -> float | None:
    """Power factor must be within -1..1; fw 8.3.5433 reports 1.553 on its aggregates."""
    if value is not None and not -1 <= value <= 1:
        problems.add(f"{what}: power factor {round_value(value)} out of range")
        return None
    return round_value(value)


def _configuration(meters: object, eid: int) -> Mapping[str, Any] | None:
    for entry in mappings(meters):
        if number(entry, "eid") == eid:
            return entry
    return None


def _status_flags(entry: Mapping[str, Any] | None) -> tuple[str, ...] | None:
    flags = entry.get("statusFlags") if entry is not None else None
    if not isinstance(flags, list):
        return None
    return tuple(flag for flag in flags if isinstance(flag, str))


def _meter(raw: RawSystemData, features: Features, eid: int, kind: CtType) -> MeterReading:
    problems = Problems()
    configuration = _configuration(raw.meters, eid)
    reading = next((r for r in mappings(raw.meters_readings) if number(r, "eid") == eid), None)
    if reading is None:
        problems.add(f"/ivp/meters/readings: no reading for the {kind} CT")
    present = {
        "power",
        "energy_delivered_lifetime",
        "energy_received_lifetime",
        "voltage",
        "current",
        "frequency",
        "power_factor",
        "metering_status",
    }
    if configuration is None or "statusFlags" in configuration:
        present.add("status_flags")
    channels = mappings(reading.get("channels")) if reading is not None else []
    channel_voltages = [number(c, "voltage") for c in channels[: features.phase_count]]
    if features.phase_count > 1:
        voltage = quirks.mean_phase_voltage(
            number(reading, "voltage"), channel_voltages, features.phase_count
        )
    else:
        voltage = number(reading, "voltage")
    status = text(configuration, "meteringStatus")
    values: dict[str, Any] = {
        "power": round_value(number(reading, "activePower")),
        "energy_delivered_lifetime": lifetime(
            number(reading, "actEnergyDlvd"), f"{kind} CT delivered", problems
        ),
        "energy_received_lifetime": lifetime(
            number(reading, "actEnergyRcvd"), f"{kind} CT received", problems
        ),
        "voltage": round_value(voltage),
        "current": round_value(number(reading, "current")),
        "frequency": round_value(number(reading, "freq")),
        "power_factor": _power_factor(number(reading, "pwrFactor"), f"{kind} CT", problems),
        "metering_status": status if status in METERING_STATUSES else None,
        "status_flags": _status_flags(configuration),
    }
    if features.phase_count > 1:
        present.add("phases")
        phases: dict[str, dict[str, float | None]] = {}
        for index, name in enumerate(PHASE_NAMES[: features.phase_count]):
            channel = channels[index] if index < len(channels) else None
            phases[name] = {
                "power": round_value(number(channel, "activePower")),
                "voltage": round_value(number(channel, "voltage")),
                "current": round_value(number(channel, "current")),
                "frequency": round_value(number(channel, "freq")),
                "power_factor": _power_factor(number(channel, "pwrFactor"), f"{kind} CT {name}", problems),
            }
            if channel is None and reading is not None:
                problems.add(f"/ivp/meters/readings: {kind} CT has no channel for {name}")
        values["phases"] = phases
    return MeterReading(ct_type=kind, present=frozenset(present), problems=problems.tuple(), **values)


def normalize_meters(raw: RawSystemData, features: Features) -> tuple[MeterReading, ...]:
    """One reading per enabled CT, in `features.ct_meters` order. Never raises."""
    by_kind = {kind: eid for eid, kind in features.meter_eids.items()}
    return tuple(_meter(raw, features, by_kind[kind], kind) for kind in features.ct_meters if kind in by_kind)
