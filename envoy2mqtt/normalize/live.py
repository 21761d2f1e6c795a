"""The real-time `live` reading: whole-site flows from one fast endpoint, in the contract's signs.

Two sources (docs/envoy-writes-and-realtime.md §3):

- `/ivp/meters/readings`: every CT with per-phase power (W). The net-consumption CT is the grid
  (+ import), the storage CT the battery (+ discharging); without a total-consumption CT the house is
  production + net, the Envoy's own definition of total consumption (capture
  `8.2.127_with_3cts_and_battery_split`: production.json's total 1843.831 W = 1714.424 + 129.407, its
  storage CT left out), so `live` and `system` agree.
- `/ivp/livedata/status`: site flows in **milliwatts** (`meters.{pv,grid,load,storage}.agg_p_mw`, per
  phase `agg_p_ph_a_mw`...), battery charge, `last_update`; the values only move while
  `connection.sc_stream` is `"enabled"`.

A key the source cannot give (no storage CT, no battery) is absent, never null.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy2mqtt.model import PHASE_NAMES, CtType, Features, LiveReading

from . import quirks
from ._values import Problems, as_mapping, iso_time, mappings, number, round_value, text

_LIVEDATA_PHASE_KEYS = ("agg_p_ph_a_mw", "agg_p_ph_b_mw", "agg_p_ph_c_mw")
STREAM_ENABLED = "enabled"


def _sum(*values: float | None) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _flows(
    production: float | None,
    net: float | None,
    total: float | None,
    storage: float | None,
    kinds: frozenset[str],
) -> dict[str, float | None]:
    """grid / production / consumption / battery power from the CTs this Envoy has (W, contract signs)."""
    out: dict[str, float | None] = {}
    if "production" in kinds:
        out["production_power"] = production
    if "net-consumption" in kinds:
        out["grid_power"] = net
        if "total-consumption" in kinds:
            out["consumption_power"] = total
        elif "production" in kinds:
            out["consumption_power"] = quirks.repair_total_consumption(net, production)
    elif "total-consumption" in kinds:
        out["consumption_power"] = total
        if "production" in kinds:
            out["grid_power"] = _sum(total, None if production is None else -production)
    if "storage" in kinds:
        out["battery_power"] = storage
    return {key: round_value(value) for key, value in out.items()}


def live_from_meters(readings: object, features: Features) -> LiveReading:
    """The live reading from one `/ivp/meters/readings` body; CTs joined by eid as the probe found them."""
    problems = Problems()
    by_kind: dict[CtType, Mapping[str, Any] | None] = {}
    for eid, kind in features.meter_eids.items():
        if kind not in features.ct_meters:
            continue
        by_kind[kind] = next((r for r in mappings(readings) if number(r, "eid") == eid), None)
        if by_kind[kind] is None:
            problems.add(f"/ivp/meters/readings: no reading for the {kind} CT")
    kinds = frozenset(by_kind)

    def power(kind: str, channel: int | None = None) -> float | None:
        reading = by_kind.get(kind)  # type: ignore[call-overload]  # str vs the CtType literal
        if reading is None:
            return None
        if channel is None:
            return number(reading, "activePower")
        channels = mappings(reading.get("channels"))
        return number(channels[channel], "activePower") if channel < len(channels) else None

    values: dict[str, Any] = _flows(
        power("production"), power("net-consumption"), power("total-consumption"), power("storage"), kinds
    )
    present = set(values)
    if features.phase_count > 1 and values:
        phases: dict[str, dict[str, float | None]] = {}
        for index, line in enumerate(PHASE_NAMES[: features.phase_count]):
            phases[line] = _flows(
                power("production", index),
                power("net-consumption", index),
                power("total-consumption", index),
                power("storage", index),
                kinds,
            )
        values["phases"] = phases
        present.add("phases")
    stamps = [iso_time(number(r, "timestamp")) for r in by_kind.values() if r is not None]
    values["timestamp"] = next((s for s in stamps if s is not None), None)
    present.add("timestamp")
    for key in ("production_power", "grid_power", "consumption_power", "battery_power"):
        if key in values and values[key] is None:
            problems.add(f"/ivp/meters/readings: {key} unknown this read")
    return LiveReading(present=frozenset(present), problems=problems.tuple(), **values)


def livedata_stream_state(status: object) -> str | None:
    """`connection.sc_stream` of a `/ivp/livedata/status` body: "enabled", "disabled" or None."""
    body = as_mapping(status)
    return text(as_mapping(body.get("connection")) if body is not None else None, "sc_stream")


def livedata_has_battery(features: Features) -> bool:
    return features.iq_batteries or features.acb or "storage" in features.ct_meters


def live_from_livedata(status: object, features: Features) -> LiveReading:
    """The live reading from one `/ivp/livedata/status` body (milliwatts to watts)."""
    problems = Problems()
    body = as_mapping(status)
    meters = as_mapping(body.get("meters")) if body is not None else None
    if meters is None:
        problems.add("/ivp/livedata/status: no meters object")
    battery = livedata_has_battery(features)

    def section(name: str) -> Mapping[str, Any] | None:
        return as_mapping(meters.get(name)) if meters is not None else None

    def watts(name: str, key: str = "agg_p_mw") -> float | None:
        return round_value(quirks.from_milli(number(section(name), key)))

    values: dict[str, Any] = {
        "timestamp": iso_time(number(meters, "last_update")),
        "grid_power": watts("grid"),
        "production_power": watts("pv"),
        "consumption_power": watts("load"),
    }
    if battery:
        values["battery_power"] = watts("storage")
        soc = number(meters, "enc_agg_soc") if features.iq_batteries else None
        if soc is None:
            soc = number(meters, "soc")
        values["battery_soc"] = round_value(soc) if soc is not None and 0 <= soc <= 100 else None
    phase_count = int(number(meters, "phase_count") or features.phase_count)
    if phase_count > 1:
        phases: dict[str, dict[str, float | None]] = {}
        for index, line in enumerate(PHASE_NAMES[: min(phase_count, len(PHASE_NAMES))]):
            key = _LIVEDATA_PHASE_KEYS[index]
            values_of_line = {
                "grid_power": watts("grid", key),
                "production_power": watts("pv", key),
                "consumption_power": watts("load", key),
            }
            if battery:
                values_of_line["battery_power"] = watts("storage", key)
            phases[line] = values_of_line
        values["phases"] = phases
    for key in ("grid_power", "production_power", "consumption_power", "battery_power"):
        if key in values and values[key] is None and meters is not None:
            problems.add(f"/ivp/livedata/status: {key} unknown this read")
    return LiveReading(present=frozenset(values), problems=problems.tuple(), **values)
