"""The `system` topic: production, consumption, grid, battery aggregate, per-phase values.

Where each value comes from (docs/envoy-local-api.md §5):

* production: the production CT (`production.json` eim section) when `features.production_ct`; else
  `/api/v1/production` when the probe kept it; else the production.json `inverters` section
  (metered Envoy without CTs, whose v1 endpoint is stalled or broken: no today / seven-day values);
  else, on firmware before 3.9, the HTML `/production` page (three significant figures).
* consumption and net: the production.json `consumption[]` sections (found by measurementType).
* grid import / export: the net-consumption CT of `/ivp/meters/readings`.
* battery: production.json `storage` (ACB) and `/ivp/ensemble/secctrl` + `/ivp/ensemble/power` (IQ).

`present` follows from `features` only; a missing or garbled body gives nulls and problems.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from envoy2mqtt.envoy import endpoints
from envoy2mqtt.model import BATTERY_STATES, PHASE_NAMES, EnvoyInfo, Features, RawSystemData, SystemReading

from . import quirks
from ._values import (
    Problems,
    as_mapping,
    count,
    iso_time,
    lifetime,
    mappings,
    number,
    round_value,
    text,
)
from .grid import grid_state

ProductionSource = Literal["eim", "v1", "inverters", "html", "none"]

# Below this many watts either way a battery is idle (IQ batteries idle at a few dozen W).
BATTERY_IDLE_WATTS = 50.0


def production_source(features: Features) -> ProductionSource:
    """Which body carries solar production for this Envoy (decided by the probe's features)."""
    if features.production_ct and endpoints.PRODUCTION_JSON in features.endpoints:
        return "eim"
    if endpoints.API_V1_PRODUCTION in features.endpoints and not features.production_ct:
        return "v1"
    if endpoints.PRODUCTION_JSON in features.endpoints:
        return "inverters"
    if endpoints.PRODUCTION_HTML in features.endpoints:
        return "html"
    return "none"


class _Values:
    """Collects values, the present set and problems for one reading."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.present: set[str] = set()
        self.problems = Problems()

    def put(self, key: str, value: Any, why_missing: str | None = None) -> None:
        self.present.add(key)
        self.values[key] = value
        if value is None and why_missing:
            self.problems.add(why_missing)


def _non_negative(value: float | None, what: str, problems: Problems) -> float | None:
    """Energy today / last seven days cannot be negative."""
    if value is not None and value < 0:
        problems.add(f"{what}: negative energy {round_value(value)}")
        return None
    return round_value(value)


def _section_values(
    section: Mapping[str, Any] | None, what: str, problems: Problems
) -> tuple[float | None, float | None, float | None, float | None]:
    """(power, today, last 7 days, lifetime) of a production.json section, daily garbage removed."""
    if section is None:
        return None, None, None, None
    now = number(section, "wNow")
    today = number(section, "whToday")
    week = number(section, "whLastSevenDays")
    life = number(section, "whLifetime")
    if quirks.daily_counters_are_lifetime_copies(today, week, life):
        problems.add(f"production.json {what}: whToday and whLastSevenDays are copies of whLifetime")
        today = week = None
    return now, today, week, life


def _production(raw: RawSystemData, info: EnvoyInfo, features: Features, out: _Values) -> tuple[Any, ...]:
    """Fill the production keys; return (power, today, week, lifetime) for the net derivations."""
    source = production_source(features)
    problems = out.problems
    now = today = week = life = None
    has_daily = source in ("eim", "v1", "html")
    if source == "eim":
        section = quirks.find_production_section(raw.production_json, "eim")
        if section is None:
            problems.add("production.json: eim production section missing")
        now, today, week, life = _section_values(section, "production", problems)
    elif source == "v1":
        body = as_mapping(raw.api_v1_production)
        if body is None:
            problems.add("/api/v1/production: no data this cycle")
        now = number(body, "wattsNow")
        today = number(body, "wattHoursToday")
        week = number(body, "wattHoursSevenDays")
        life = number(body, "wattHoursLifetime")
        if quirks.is_boot_zero_production(info, now, today, life):
            problems.add("/api/v1/production: all zero right after boot, reading rejected")
            now = today = week = life = None
    elif source == "html":
        values = quirks.production_from_html(raw.production_html)
        if values is None:
            problems.add("/production: no production values on the page this cycle")
            values = {}
        now = values.get("wattsNow")
        today = values.get("wattHoursToday")
        week = values.get("wattHoursSevenDays")
        life = values.get("wattHoursLifetime")
    elif source == "inverters":
        section = quirks.production_from_inverters_section(raw.production_json)
        if section is None:
            problems.add("production.json: inverters section missing")
        now, life = number(section, "wNow"), number(section, "whLifetime")
    else:
        return None, None, None, None
    today = _non_negative(today, "production today", problems)
    week = _non_negative(week, "production last 7 days", problems)
    life = lifetime(life, "production lifetime", problems)
    out.put("production_power", round_value(now))
    if has_daily:
        out.put("production_energy_today", today)
        out.put("production_energy_last_7_days", week)
    out.put("production_energy_lifetime", life)
    return now, today if has_daily else None, week if has_daily else None, life


def _consumption(
    raw: RawSystemData, info: EnvoyInfo, features: Features, production: tuple[Any, ...], out: _Values
) -> None:
    """Consumption, net power and net energy from production.json `consumption[]`."""
    problems = out.problems
    prod_now, prod_today, prod_week, prod_life = production
    total, net = quirks.find_consumption_sections(raw.production_json)
    if raw.production_json is not None and total is None:
        problems.add("production.json: consumption[0] (total-consumption) missing")
    if raw.production_json is not None and net is None:
        problems.add("production.json: consumption[1] (net-consumption) missing")
    net_now, _, _, net_life = _section_values(net, "net-consumption", problems)
    cons_now, cons_today, cons_week, cons_life = _section_values(total, "total-consumption", problems)
    if quirks.total_consumption_is_net(info, total, net):
        problems.add("production.json: total-consumption equals net-consumption (fw >= 8.3.5433), repaired")
        cons_now = quirks.repair_total_consumption(net_now, prod_now)
        cons_life = quirks.repair_total_consumption(net_life, prod_life)
    elif total is None and net is not None:
        cons_now = quirks.repair_total_consumption(net_now, prod_now)
        cons_life = quirks.repair_total_consumption(net_life, prod_life)
    out.put("consumption_power", round_value(cons_now))
    out.put("consumption_energy_today", _non_negative(cons_today, "consumption today", problems))
    out.put("consumption_energy_last_7_days", _non_negative(cons_week, "consumption last 7 days", problems))
    out.put("consumption_energy_lifetime", lifetime(cons_life, "consumption lifetime", problems))
    out.put("net_power", round_value(net_now))
    if "production_energy_today" in out.present:
        out.put(
            "net_energy_today",
            round_value(quirks.derive_net_energy(out.values["consumption_energy_today"], prod_today)),
        )
        out.put(
            "net_energy_last_7_days",
            round_value(quirks.derive_net_energy(out.values["consumption_energy_last_7_days"], prod_week)),
        )
    out.put("net_energy_lifetime", round_value(net_life))


def _meter_reading(raw: RawSystemData, features: Features, kind: str) -> Mapping[str, Any] | None:
    for eid, ct in features.meter_eids.items():
        if ct != kind:
            continue
        for reading in mappings(raw.meters_readings):
            if number(reading, "eid") == eid:
                return reading
    return None


def _grid(raw: RawSystemData, features: Features, out: _Values) -> None:
    """Grid import / export lifetime from the net-consumption CT (delivered = import, received = export)."""
    reading = _meter_reading(raw, features, "net-consumption")
    if reading is None and raw.meters_readings is not None:
        out.problems.add("/ivp/meters/readings: net-consumption CT missing")
    problems = out.problems
    out.put(
        "grid_import_energy_lifetime", lifetime(number(reading, "actEnergyDlvd"), "grid import", problems)
    )
    out.put(
        "grid_export_energy_lifetime", lifetime(number(reading, "actEnergyRcvd"), "grid export", problems)
    )


def battery_state_from_power(power: float | None, soc: float | None) -> str | None:
    """charging / discharging beyond the idle band (positive = discharging), else idle or full."""
    if power is None:
        return None
    if power > BATTERY_IDLE_WATTS:
        return "discharging"
    if power < -BATTERY_IDLE_WATTS:
        return "charging"
    return "full" if soc is not None and soc >= 100 else "idle"


def _soc(value: float | None) -> float | None:
    return round_value(value) if value is not None and 0 <= value <= 100 else None


def _encharge_count(ensemble_inventory: object) -> int | None:
    groups = mappings(ensemble_inventory)
    if not groups:
        return None
    return sum(len(mappings(g.get("devices"))) for g in groups if text(g, "type") == "ENCHARGE")


def _battery(raw: RawSystemData, features: Features, out: _Values) -> None:
    """Battery aggregate: ACB from production.json storage, IQ from secctrl + ensemble power, combined."""
    problems = out.problems
    has_power = (
        features.acb or endpoints.ENSEMBLE_POWER in features.endpoints or "storage" in features.ct_meters
    )
    has_secctrl = endpoints.ENSEMBLE_SECCTRL in features.endpoints
    secctrl = as_mapping(raw.ensemble_secctrl)

    acb_power = acb_soc = acb_energy = None
    acb_state: str | None = None
    if features.acb:
        storage = quirks.find_acb_storage(raw.production_json)
        if storage is None:
            problems.add("production.json: storage (ACB) section missing")
        acb_power = number(storage, "wNow")
        acb_soc = number(storage, "percentFull")
        acb_energy = number(storage, "whNow")
        state = text(storage, "state")
        acb_state = state if state in BATTERY_STATES else None

    iq_power = iq_soc = iq_energy = None
    iq_count: int | None = 0
    if features.iq_batteries:
        devices = quirks.ensemble_power_devices(raw.ensemble_power)
        watts = [quirks.from_milli(number(d, "real_power_mw")) for d in devices]
        if devices and None not in watts:
            iq_power = sum(w for w in watts if w is not None)
        elif endpoints.ENSEMBLE_POWER in features.endpoints:
            problems.add("/ivp/ensemble/power: battery power missing")
        if secctrl is not None:
            iq_soc = number(secctrl, "ENC_agg_soc")
            iq_energy = number(secctrl, "ENC_agg_avail_energy")
        else:
            socs = [number(d, "soc") for d in devices]
            if socs and None not in socs:
                iq_soc = sum(s for s in socs if s is not None) / len(socs)
            if has_secctrl:
                problems.add("/ivp/ensemble/secctrl: no data this cycle")
        iq_count = _encharge_count(raw.ensemble_inventory)
        if iq_count is None:
            problems.add("/ivp/ensemble/inventory: not read yet, IQ battery count unknown")

    storage_ct = _meter_reading(raw, features, "storage") if "storage" in features.ct_meters else None
    if features.acb and features.iq_batteries:
        power = None if acb_power is None or iq_power is None else acb_power + iq_power
        soc = number(secctrl, "agg_soc")
        acb_agg = number(secctrl, "ACB_agg_energy")
        energy = (
            None if iq_energy is None else iq_energy + (acb_agg if acb_agg is not None else acb_energy or 0)
        )
        state = battery_state_from_power(power, soc)
    elif features.acb:
        power, soc, energy, state = acb_power, acb_soc, acb_energy, acb_state
    else:
        power, soc, energy = iq_power, iq_soc, iq_energy
        state = None
    if storage_ct is not None:
        power = number(storage_ct, "activePower")  # the storage CT measures; + = discharging
    if state is None:
        state = battery_state_from_power(power, soc)

    out.put("batteries_count", None if iq_count is None else features.acb_count + iq_count)
    out.put("battery_soc", _soc(soc))
    if has_power:
        out.put("battery_power", round_value(power))
        out.put("battery_state", state)
    if features.acb or has_secctrl:
        out.put("battery_energy_available", round_value(energy) if energy is None or energy >= 0 else None)


def _ct_channels(raw: RawSystemData, features: Features, kind: str) -> list[Mapping[str, Any]]:
    reading = _meter_reading(raw, features, kind)
    return mappings(reading.get("channels")) if reading is not None else []


def _phases(raw: RawSystemData, info: EnvoyInfo, features: Features, out: _Values) -> None:
    """Per-phase power from production.json `lines[]` on multi-phase sites.

    Firmware that sends no `lines[]` (production.json without `?details=1` support, e.g. `4.2.33`)
    falls back to the `channels[]` of the matching CT in /ivp/meters/readings.
    """
    production = quirks.find_production_section(raw.production_json, "eim")
    total, net = quirks.find_consumption_sections(raw.production_json)
    repair = quirks.total_consumption_is_net(info, total, net)

    def lines(section: Mapping[str, Any] | None, ct: str) -> tuple[list[Mapping[str, Any]], str]:
        found = mappings(section.get("lines")) if section is not None else []
        if found:
            return found, "wNow"
        return _ct_channels(raw, features, ct), "activePower"

    def pick(rows: tuple[list[Mapping[str, Any]], str], index: int) -> float | None:
        items, key = rows
        return number(items[index], key) if index < len(items) else None

    prod_rows = lines(production, "production")
    net_rows = lines(net, "net-consumption")
    total_rows = lines(total, "total-consumption")
    phases: dict[str, dict[str, float | None]] = {}
    missing = False
    for index, name in enumerate(PHASE_NAMES[: features.phase_count]):
        values: dict[str, float | None] = {}
        prod = pick(prod_rows, index)
        if features.production_ct:
            values["production_power"] = round_value(prod)
            missing |= prod is None
        if features.consumption:
            net_now = pick(net_rows, index)
            cons = None if repair else pick(total_rows, index)
            if cons is None:
                cons = quirks.repair_total_consumption(net_now, prod)
            if net_now is None and cons is not None and prod is not None:
                net_now = cons - prod
            values["consumption_power"] = round_value(cons)
            values["net_power"] = round_value(net_now)
            missing |= cons is None or net_now is None
        phases[name] = values
    if missing:
        out.problems.add("per-phase values missing (no production.json lines[], no CT channels)")
    out.put("phases", phases)


def _timestamp(raw: RawSystemData, features: Features) -> str | None:
    """When the Envoy took the reading: readingTime of the production source, else of any section."""
    candidates: list[object] = []
    body = as_mapping(raw.production_json)
    if features.production_ct:
        candidates.append(number(quirks.find_production_section(body, "eim"), "readingTime"))
    if body is not None:
        for key in ("production", "consumption"):
            candidates.extend(number(section, "readingTime") for section in mappings(body.get(key)))
    for reading in mappings(raw.meters_readings):
        candidates.append(number(reading, "timestamp"))
    for candidate in candidates:
        stamp = iso_time(candidate)
        if stamp is not None:
            return stamp
    return None


def normalize_system(raw: RawSystemData, info: EnvoyInfo, features: Features) -> SystemReading:
    """One `system` reading from the bodies of one system cycle. Never raises."""
    out = _Values()
    if endpoints.PRODUCTION_JSON in features.endpoints or endpoints.METERS_READINGS in features.endpoints:
        out.put("timestamp", _timestamp(raw, features))
    production = _production(raw, info, features, out)
    consumption = features.consumption and endpoints.PRODUCTION_JSON in features.endpoints
    if consumption:
        _consumption(raw, info, features, production, out)
    if "net-consumption" in features.ct_meters:
        _grid(raw, features, out)
    if endpoints.PRODUCTION_JSON in features.endpoints:
        inverters = quirks.find_production_section(raw.production_json, "inverters")
        out.put("inverters_count", count(number(inverters, "activeCount")))
    if features.acb or features.iq_batteries:
        _battery(raw, features, out)
    if features.phase_count > 1 and (features.production_ct or consumption):
        _phases(raw, info, features, out)
    if features.grid_relay:
        out.put("on_grid", grid_state(raw.ensemble_inventory))
    if raw.production_json is not None and as_mapping(raw.production_json) is None:
        out.problems.add("production.json: not a JSON object")
    return SystemReading(present=frozenset(out.present), problems=out.problems.tuple(), **out.values)
