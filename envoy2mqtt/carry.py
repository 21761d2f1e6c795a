"""Values carried between two reads of a slow body, from the fast bodies read every minute.

On an Envoy with CTs, `production.json` is read once per device interval (5 minutes) instead of every
minute; `/ivp/meters/readings` still is. `SystemCarry.system()` turns the system payload normalized
from a reused `production.json` into the one a fresh read would give:

- power now: production = production CT, net = net-consumption CT, consumption = production + net
  (+ storage CT: what the house draws is what the panels, the grid and the battery deliver);
- lifetime and today: the Envoy's own value at the last `production.json` read plus the delta of the
  matching CT lifetime counters since (`actEnergyDlvd` − `actEnergyRcvd`), re-anchored at every read;
  a new local day asks for a fresh read (`needs_read`), so today's value restarts from the Envoy's own
  counter; net today is consumption − production again (as the normalizer derives it);
- last 7 days: held at the last read (the Envoy's own window moves by whole days; a carried delta would
  count today twice on firmware whose window excludes today);
- per-phase power from the CT channels, the reading time from the CT readings.

On an Envoy with IQ Batteries, `/ivp/ensemble/secctrl` is read once per device interval as well;
`/ivp/ensemble/power` is read every minute. Between two secctrl reads the battery charge moves with the
per-battery `soc` of ensemble/power weighted by each battery's capacity (from the ensemble inventory),
and the available energy with the battery power of ensemble/power integrated since the read
(trapezoids between the minute readings).

`carries_production(features)` / `carries_battery(features)` say where this applies; the readers use
them to move the slow bodies to the device cadence. The unit is pure: bodies and payloads in, payload
out; its anchors are the only state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .clock import iso_utc
from .envoy import endpoints
from .model import PHASE_NAMES, Features, Payload, RawSystemData
from .normalize._values import mappings, number, round_value, text
from .normalize.quirks import derive_net_energy, ensemble_power_devices
from .readers.catalog import carries_battery, carries_production

_SIDES = ("production", "consumption", "net")
_PERIODS = ("energy_today", "energy_lifetime")  # last 7 days: held at the last read (see below)


@dataclass(frozen=True, slots=True)
class _Counters:
    """CT lifetime counters (Wh) and powers (W) of one meters readings body, per side."""

    lifetime: Mapping[str, float | None]
    power: Mapping[str, float | None]
    phases: Mapping[str, list[float | None]]
    timestamp: float | None


def _ct_counters(readings: object, features: Features) -> _Counters:
    by_type: dict[str, Mapping[str, Any]] = {}
    for reading in mappings(readings):
        eid = number(reading, "eid")
        kind = features.meter_eids.get(int(eid)) if eid is not None and eid == int(eid) else None
        if kind is not None:
            by_type[kind] = reading

    def net_energy(kind: str) -> float | None:
        reading = by_type.get(kind)
        delivered, received = number(reading, "actEnergyDlvd"), number(reading, "actEnergyRcvd")
        return None if delivered is None or received is None else delivered - received

    def power(reading: Mapping[str, Any] | None) -> float | None:
        return number(reading, "activePower")

    prod = by_type.get("production")
    net = by_type.get("net-consumption")
    storage = by_type.get("storage")
    lifetime: dict[str, float | None] = {
        "production": number(prod, "actEnergyDlvd"),
        "net": net_energy("net-consumption"),
    }
    powers: dict[str, float | None] = {"production": power(prod), "net": power(net)}
    phases: dict[str, list[float | None]] = {
        "production": [number(c, "activePower") for c in mappings(prod.get("channels"))] if prod else [],
        "net": [number(c, "activePower") for c in mappings(net.get("channels"))] if net else [],
        "storage": [number(c, "activePower") for c in mappings(storage.get("channels"))] if storage else [],
    }
    parts = [lifetime["production"], lifetime["net"]]
    power_parts = [powers["production"], powers["net"]]
    if storage is not None:
        parts.append(net_energy("storage"))
        power_parts.append(power(storage))
    lifetime["consumption"] = None if None in parts else sum(p for p in parts if p is not None)
    powers["consumption"] = None if None in power_parts else sum(p for p in power_parts if p is not None)
    stamps = [number(r, "timestamp") for r in by_type.values()]
    stamp = next((s for s in stamps if s is not None), None)
    return _Counters(lifetime, powers, phases, stamp)


@dataclass(frozen=True, slots=True)
class _ProductionAnchor:
    payload: Payload  # the system payload of the cycle that read production.json
    counters: _Counters
    day: date


@dataclass(slots=True)
class _BatteryAnchor:
    soc: float | None
    energy: float | None  # moves with the battery power integrated since the read
    weighted_soc: float | None
    power: float | None  # W, + discharging: the last ensemble/power reading
    at: float  # when that power was read


class SystemCarry:
    """Carries one Envoy's production.json and secctrl values between their reads (see the module doc)."""

    def __init__(self, features: Features, timezone: str | None = None) -> None:
        self.features = features
        self.production = carries_production(features)
        self.battery = carries_battery(features)
        self.timezone: tzinfo = UTC
        self.set_timezone(timezone)
        self._production_anchor: _ProductionAnchor | None = None
        self._battery_anchor: _BatteryAnchor | None = None

    def set_timezone(self, timezone: str | None) -> None:
        """The Envoy's local timezone (config or /home.json), as the counter guard's; UTC when unknown."""
        try:
            self.timezone = ZoneInfo(timezone) if timezone else UTC
        except (ZoneInfoNotFoundError, ValueError):
            self.timezone = UTC

    def _day(self, now: float) -> date:
        return datetime.fromtimestamp(now, self.timezone).date()

    def needs_read(self, now: float) -> tuple[str, ...]:
        """The slow bodies the next system cycle must read whatever their age: without an anchor yet
        (nothing to carry from), and production.json on a new local day (today restarts from the Envoy)."""
        due: list[str] = []
        anchor = self._production_anchor
        if self.production and (anchor is None or self._day(now) != anchor.day):
            due.append(endpoints.PRODUCTION_JSON)
        if self.battery and self._battery_anchor is None:
            due.append(endpoints.ENSEMBLE_SECCTRL)
        return tuple(due)

    def system(
        self, payload: Payload, raw: RawSystemData, read: frozenset[str], fresh: frozenset[str], now: float
    ) -> Payload:
        """The payload as a fresh read would give it. `read`: the paths read this cycle (a read of a slow
        body re-anchors); `fresh`: the paths with a body fresh enough for this cycle, read now or moments
        ago by another cadence (the real-time one reads the CTs every few seconds)."""
        out = payload
        if self.production:
            out = self._carry_production(out, raw, read, fresh, now)
        if self.battery:
            out = self._carry_battery(out, raw, read, fresh, now)
        return out

    # ------------------------------------------------------------------ production.json

    def _carry_production(
        self, payload: Payload, raw: RawSystemData, read: frozenset[str], fresh: frozenset[str], now: float
    ) -> Payload:
        if endpoints.METERS_READINGS not in fresh or raw.meters_readings is None:
            return payload  # no fresh CT readings: nothing to carry with
        counters = _ct_counters(raw.meters_readings, self.features)
        if endpoints.PRODUCTION_JSON in read and raw.production_json is not None:
            self._production_anchor = _ProductionAnchor(dict(payload), counters, self._day(now))
            return payload
        anchor = self._production_anchor
        if anchor is None:
            return payload
        out = dict(payload)
        for side in _SIDES:
            power_key = f"{side}_power"
            if power_key in out:
                out[power_key] = round_value(counters.power.get(side))
            now_life, then_life = counters.lifetime.get(side), anchor.counters.lifetime.get(side)
            delta = None if now_life is None or then_life is None else now_life - then_life
            for period in _PERIODS:
                key = f"{side}_{period}"
                if key not in out:
                    continue
                base = anchor.payload.get(key)
                out[key] = None if base is None or delta is None else round_value(base + delta)
        if "net_energy_today" in out:
            out["net_energy_today"] = round_value(
                derive_net_energy(out.get("consumption_energy_today"), out.get("production_energy_today"))
            )
        if "phases" in out and isinstance(out["phases"], Mapping):
            out["phases"] = self._phases(out["phases"], counters)
        if "timestamp" in out and counters.timestamp is not None:
            out["timestamp"] = iso_utc(counters.timestamp)
        return out

    def _phases(self, phases: Mapping[str, Any], counters: _Counters) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for index, name in enumerate(PHASE_NAMES):
            values = phases.get(name)
            if not isinstance(values, Mapping):
                continue
            row = dict(values)
            prod = _at(counters.phases.get("production", []), index)
            net = _at(counters.phases.get("net", []), index)
            storage_rows = counters.phases.get("storage", [])
            storage = _at(storage_rows, index) if storage_rows else 0.0
            if "production_power" in row:
                row["production_power"] = round_value(prod)
            if "net_power" in row:
                row["net_power"] = round_value(net)
            if "consumption_power" in row:
                parts = (prod, net, storage)
                row["consumption_power"] = (
                    None if None in parts else round_value(sum(p for p in parts if p is not None))
                )
            out[name] = row
        return out

    # ------------------------------------------------------------------ secctrl

    def _carry_battery(
        self, payload: Payload, raw: RawSystemData, read: frozenset[str], fresh: frozenset[str], now: float
    ) -> Payload:
        if endpoints.ENSEMBLE_POWER not in fresh or raw.ensemble_power is None:
            return payload
        weighted = _weighted_soc(raw.ensemble_power, raw.ensemble_inventory)
        power = _battery_power(raw.ensemble_power)
        soc, energy = payload.get("battery_soc"), payload.get("battery_energy_available")
        if endpoints.ENSEMBLE_SECCTRL in read and raw.ensemble_secctrl is not None:
            self._battery_anchor = _BatteryAnchor(soc, energy, weighted, power, now)
            return payload
        anchor = self._battery_anchor
        if anchor is None or anchor.soc is None or anchor.weighted_soc is None or weighted is None:
            return payload
        out = dict(payload)
        carried = min(100.0, max(0.0, anchor.soc + weighted - anchor.weighted_soc))
        if "battery_soc" in out:
            out["battery_soc"] = round_value(carried)
        if anchor.energy is not None and anchor.power is not None and power is not None:
            hours = max(0.0, now - anchor.at) / 3600
            anchor.energy = max(0.0, anchor.energy - (anchor.power + power) / 2 * hours)
        anchor.power, anchor.at = power, now
        if "battery_energy_available" in out:
            out["battery_energy_available"] = round_value(anchor.energy)
        return out


def _at(values: list[float | None], index: int) -> float | None:
    return values[index] if index < len(values) else None


def _capacities(inventory: object) -> dict[str, float]:
    found: dict[str, float] = {}
    for group in mappings(inventory):
        if text(group, "type") != "ENCHARGE":
            continue
        for device in mappings(group.get("devices")):
            serial, capacity = text(device, "serial_num"), number(device, "encharge_capacity")
            if serial is not None and capacity is not None and capacity > 0:
                found[serial] = capacity
    return found


def _weighted_soc(power: object, inventory: object) -> float | None:
    """The batteries' charge from ensemble/power, each weighted by its capacity (equal weights if unknown)."""
    capacities = _capacities(inventory)
    total = weight = 0.0
    for device in ensemble_power_devices(power):
        soc = number(device, "soc")
        if soc is None:
            return None
        serial = text(device, "serial_num")
        w = capacities.get(serial, 1.0) if serial is not None else 1.0
        total += soc * w
        weight += w
    return total / weight if weight else None


def _battery_power(power: object) -> float | None:
    """W, + discharging: the sum of ensemble/power's `real_power_mw`."""
    watts = [number(d, "real_power_mw") for d in ensemble_power_devices(power)]
    if not watts or None in watts:
        return None
    return sum(w for w in watts if w is not None) / 1000
