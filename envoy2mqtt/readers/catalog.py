"""The readers: one declaration per Envoy endpoint, grouped by family.

A `Reader` says three things about its endpoint:

- `needs(features)`: which consumers use its body on this Envoy and how fresh it must be for each
  (`{consumer: Need}`; an empty mapping: this Envoy does not need the endpoint at all);
- `system_field` / `device_field`: which `RawSystemData` / `RawDeviceData` field its body feeds;
- `probed`: whether the feature probe reads it (`readers.probe`).

Consumers are the cadences: `SYSTEM` (every `polling.system_interval`), `DEVICE` (every
`polling.device_interval`); a new cadence is one more name in the planner's intervals plus an entry in
the `needs` of the readers it uses, e.g. `REALTIME: Need(REALTIME)` on the CT readings. A `Need` names the
cadence whose interval bounds the body's age (`Need(SYSTEM)` in the system consumer: read every cycle;
`Need(DEVICE)` in the system consumer: one read per device interval is enough, the minutes between reuse
it) or `HELD` (use whatever body is held, e.g. the probe's; never read for this consumer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envoy2mqtt.envoy import endpoints
from envoy2mqtt.model import Features, RawDeviceData, RawSystemData

SYSTEM = "system"
DEVICE = "device"
HELD = "held"  # a `Need.within` that never causes a read: any body already held will do


@dataclass(frozen=True, slots=True)
class Need:
    """How fresh a body must be for one consumer."""

    within: str  # a cadence name (its interval bounds the body's age) or HELD
    fallback_for: str | None = None  # read only when this other endpoint gave nothing in the same cycle


Needs = Mapping[str, Need]


@dataclass(frozen=True, slots=True)
class Reader:
    path: str
    family: str
    needs: Callable[[Features], Needs]
    system_field: str | None = None  # the RawSystemData field its body feeds
    device_field: str | None = None  # the RawDeviceData field its body feeds
    probed: bool = False  # read by the feature probe
    production: bool = False  # a production source: a system cycle without any of them failed
    text: bool = field(default=False)  # an HTML page, not JSON


def production_json_on_device_cadence(features: Features) -> bool:
    """Without any CT (and without an AC Battery, whose state is in `production.json`), every value the
    production bodies carry comes from the inverters, which report every 5 minutes: one read per device
    interval is enough, the minutes between republish it. A CT-less Envoy (the Envoys that suffer most
    from polling) then sees about one request a minute in all."""
    return not features.production_ct and not features.consumption and not features.acb


def carries_production(features: Features) -> bool:
    """CTs measure the production.json values this Envoy publishes: between two reads, `carry.SystemCarry`
    carries them from the CT readings of every minute. An AC Battery's values in it (its telemetry lags
    10-15 minutes on the Envoy itself, envoy-local-api.md) are those of the last read."""
    if not features.production_ct or "production" not in features.ct_meters:
        return False
    return not features.consumption or "net-consumption" in features.ct_meters


def carries_battery(features: Features) -> bool:
    """IQ Batteries (no AC Battery in the aggregate) with ensemble/power and secctrl: between two secctrl
    reads, `carry.SystemCarry` moves the charge with ensemble/power's per-battery charge."""
    present = features.endpoints
    return (
        features.iq_batteries
        and not features.acb
        and endpoints.ENSEMBLE_POWER in present
        and endpoints.ENSEMBLE_SECCTRL in present
    )


# ------------------------------------------------------------------------------------------ production


def _production_json(features: Features) -> Needs:
    if endpoints.PRODUCTION_JSON not in features.endpoints:
        return {}
    if production_json_on_device_cadence(features):
        return {SYSTEM: Need(DEVICE), DEVICE: Need(DEVICE)}
    if carries_production(features):
        # read once per device interval; the minutes between carry its values from the CT readings
        return {SYSTEM: Need(DEVICE), DEVICE: Need(HELD)}
    # the device cycle takes the ACB aggregate and the inverter count from the system cycle's body
    return {SYSTEM: Need(SYSTEM), DEVICE: Need(HELD)}


def _api_v1_production(features: Features) -> Needs:
    if endpoints.API_V1_PRODUCTION not in features.endpoints or features.production_ct:
        return {}
    if production_json_on_device_cadence(features):
        # Without any CT, every value of this body comes from the inverters, which report every 5
        # minutes (envoy-local-api.md §cadence): one read per device interval, the minutes between
        # republish it. A CT-less Envoy then sees about one request a minute in all.
        return {SYSTEM: Need(DEVICE)}
    return {SYSTEM: Need(SYSTEM)}


def _production_html(features: Features) -> Needs:
    return {SYSTEM: Need(SYSTEM)} if endpoints.PRODUCTION_HTML in features.endpoints else {}


# ------------------------------------------------------------------------------------------ CT meters


def _meters(features: Features) -> Needs:
    # the CT list never changes between probes: the probe's body serves every cycle
    return {SYSTEM: Need(HELD)}


def _meters_readings(features: Features) -> Needs:
    # answers whenever /ivp/meters does (`detect_features` adds it with the CTs)
    return {SYSTEM: Need(SYSTEM)} if features.ct_meters else {}


# ------------------------------------------------------------------------------------------ inverters


def _device_data(features: Features) -> Needs:
    return {DEVICE: Need(DEVICE)} if features.detailed_inverters else {}


def _api_v1_inverters(features: Features) -> Needs:
    if endpoints.API_V1_INVERTERS not in features.endpoints:
        return {}
    if features.detailed_inverters and not features.acb:
        # device_data carries every inverter value; this list only when it fails
        return {DEVICE: Need(DEVICE, fallback_for=endpoints.DEVICE_DATA)}
    return {DEVICE: Need(DEVICE)}  # the only per-inverter source, or the ACB's production next to it


# ------------------------------------------------------------------------------------------ inventory


def _inventory(features: Features) -> Needs:
    return {DEVICE: Need(DEVICE)} if features.inventory else {}


# ------------------------------------------------------------------------------------------ ensemble


def _ensemble_inventory(features: Features) -> Needs:
    if not (features.iq_batteries or features.grid_relay):
        return {SYSTEM: Need(HELD)}  # the probe's body: the system reading's battery count
    # IQ batteries, and the grid relay of an Enpower / Meter Collar (`on_grid`): every device cycle
    return {SYSTEM: Need(HELD), DEVICE: Need(DEVICE)}


def _ensemble_power(features: Features) -> Needs:
    if not features.iq_batteries or endpoints.ENSEMBLE_POWER not in features.endpoints:
        return {}
    # a device cycle every 5 minutes needs no fresher battery power than the last system cycle's
    return {SYSTEM: Need(SYSTEM), DEVICE: Need(SYSTEM)}


def _ensemble_secctrl(features: Features) -> Needs:
    if not features.iq_batteries or endpoints.ENSEMBLE_SECCTRL not in features.endpoints:
        return {}
    if carries_battery(features):
        return {SYSTEM: Need(DEVICE)}  # the minutes between carry the charge from ensemble/power
    return {SYSTEM: Need(SYSTEM)}


# The order is the order of the reads in a cycle.
READERS: tuple[Reader, ...] = (
    Reader(
        endpoints.PRODUCTION_JSON,
        "production",
        _production_json,
        system_field="production_json",
        device_field="production_json",
        probed=True,
        production=True,
    ),
    Reader(
        endpoints.API_V1_PRODUCTION,
        "production",
        _api_v1_production,
        system_field="api_v1_production",
        probed=True,
        production=True,
    ),
    Reader(
        endpoints.PRODUCTION_HTML,
        "production",
        _production_html,
        system_field="production_html",
        production=True,
        text=True,
    ),
    Reader(endpoints.METERS, "meters", _meters, system_field="meters", probed=True),
    Reader(
        endpoints.METERS_READINGS,
        "meters",
        _meters_readings,
        system_field="meters_readings",
        production=True,
    ),
    Reader(endpoints.DEVICE_DATA, "inverters", _device_data, device_field="device_data", probed=True),
    Reader(endpoints.API_V1_INVERTERS, "inverters", _api_v1_inverters, device_field="inverters", probed=True),
    Reader(endpoints.INVENTORY, "inventory", _inventory, device_field="inventory", probed=True),
    Reader(
        endpoints.ENSEMBLE_INVENTORY,
        "ensemble",
        _ensemble_inventory,
        system_field="ensemble_inventory",
        device_field="ensemble_inventory",
        probed=True,
    ),
    Reader(
        endpoints.ENSEMBLE_POWER,
        "ensemble",
        _ensemble_power,
        system_field="ensemble_power",
        device_field="ensemble_power",
        probed=True,
    ),
    Reader(
        endpoints.ENSEMBLE_SECCTRL,
        "ensemble",
        _ensemble_secctrl,
        system_field="ensemble_secctrl",
        probed=True,
    ),
)

READERS_BY_PATH: dict[str, Reader] = {reader.path: reader for reader in READERS}


def raw_system_data(bodies: Mapping[str, Any], readers: Iterable[Reader] = READERS) -> RawSystemData:
    """The system normalizer's input from a cycle's bodies (path -> body; absent or None: not available)."""
    return RawSystemData(
        **{r.system_field: bodies.get(r.path) for r in readers if r.system_field is not None}
    )


def raw_device_data(bodies: Mapping[str, Any], readers: Iterable[Reader] = READERS) -> RawDeviceData:
    """The device normalizer's input from a cycle's bodies."""
    return RawDeviceData(
        **{r.device_field: bodies.get(r.path) for r in readers if r.device_field is not None}
    )
