"""The feature probe's decisions: which hardware this Envoy has and which endpoints are worth polling.

`detect_features` is pure: the Envoy client fetches the probe endpoints once and hands over the parsed
bodies; this module decides. It never raises, whatever the bodies look like.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy2mqtt.envoy import endpoints
from envoy2mqtt.model import CT_TYPES, CtType, EnvoyInfo, Features

from . import quirks
from ._values import as_list, as_mapping, is_error_body, mappings, number, text
from .grid import has_grid_relay

# /ivp/pdm/device_data reports at most this many devices; beyond, /api/v1/production/inverters is used.
DEVICE_DATA_MAX_INVERTERS = 50

# The JSON shape each endpoint must have to count as "answered with data".
_SHAPES: dict[str, type] = {
    endpoints.METERS: list,
    endpoints.METERS_READINGS: list,
    endpoints.PRODUCTION_JSON: dict,
    endpoints.API_V1_PRODUCTION: dict,
    endpoints.API_V1_INVERTERS: list,
    endpoints.DEVICE_DATA: dict,
    endpoints.INVENTORY: list,
    endpoints.ENSEMBLE_INVENTORY: list,
    endpoints.ENSEMBLE_POWER: dict,
    endpoints.ENSEMBLE_SECCTRL: dict,
}


def usable_body(path: str, body: object) -> bool:
    """A body that is data: the expected JSON container, not an `{"error": ...}` / 401 document."""
    if path == endpoints.PRODUCTION_HTML:
        return quirks.production_from_html(body) is not None
    if body is None or isinstance(body, str | bytes) or is_error_body(body):
        return False
    shape = _SHAPES.get(path)
    if shape is list:
        return as_list(body) is not None
    if shape is dict:
        return as_mapping(body) is not None
    return True


def enabled_meters(meters: object) -> list[tuple[int, CtType, Mapping[str, Any]]]:
    """(eid, type, entry) of the /ivp/meters entries with `state == "enabled"` and a CT type we publish.

    `imeter=true` says nothing about CTs: capture `8.2.4264_metered_noct` lists two CTs, both disabled.
    Types the contract has no topic for (backfeed, load, evse, pv3p in `8.3.5433_tot_is_net_cons`)
    are skipped.
    """
    found: list[tuple[int, CtType, Mapping[str, Any]]] = []
    seen: set[str] = set()
    for entry in mappings(meters):
        if text(entry, "state") != "enabled":
            continue
        kind = text(entry, "measurementType")
        eid = number(entry, "eid")
        if kind not in CT_TYPES or kind in seen or eid is None or eid != int(eid):
            continue
        seen.add(kind)
        found.append((int(eid), _ct_type(kind), entry))
    return found


def _ct_type(kind: str) -> CtType:
    for known in CT_TYPES:
        if known == kind:
            return known
    raise AssertionError(kind)  # pragma: no cover - callers check membership first


def _phase_count(meters: list[tuple[int, CtType, Mapping[str, Any]]], production_json: object) -> int:
    """max(phaseCount) of the enabled CTs; else the phase lines in use of the active eim sections."""
    counts = [number(entry, "phaseCount") for _, _, entry in meters]
    valid = [int(c) for c in counts if c is not None and c == int(c)]
    if valid:
        return min(3, max(1, *valid))
    sections: list[object] = [quirks.find_production_section(production_json, "eim")]
    sections.extend(quirks.find_consumption_sections(production_json))
    lines = [quirks.phase_lines_in_use(s) for s in sections if quirks.is_active(s)]
    return min(3, max(1, *lines)) if lines else 1


def _device_data_usable(device_data: object) -> bool:
    """At least one published inverter, at most 50, and `deviceCount <= deviceDataLimit`."""
    data = as_mapping(device_data)
    if data is None:
        return False
    inverters = [
        entry
        for key, entry in data.items()
        if key not in ("deviceCount", "deviceDataLimit")
        and text(entry, "devName") == "pcu"
        and quirks.device_data_is_published(entry)
    ]
    if not 0 < len(inverters) <= DEVICE_DATA_MAX_INVERTERS:
        return False
    device_count = number(data, "deviceCount")
    limit = number(data, "deviceDataLimit")
    if device_count is None or limit is None:
        return False
    return device_count <= limit


def _group_has_devices(ensemble_inventory: object, kind: str) -> bool:
    for group in mappings(ensemble_inventory):
        if text(group, "type") == kind and mappings(group.get("devices")):
            return True
    return False


def detect_features(info: EnvoyInfo, bodies: Mapping[str, Any]) -> Features:
    """Decide what this Envoy can measure from the probe bodies (endpoint path -> parsed JSON).

    Missing paths are absent endpoints. `Features.endpoints` is the set of paths worth polling:
    /api/v1/production is dropped when stalled or broken, /ivp/meters/readings is added when CTs are
    enabled (it answers whenever /ivp/meters does).
    """
    raw: Mapping[Any, Any] = bodies if isinstance(bodies, Mapping) else {}
    usable = {path: body for path, body in raw.items() if isinstance(path, str) and usable_body(path, body)}

    production_json = usable.get(endpoints.PRODUCTION_JSON)
    meters = enabled_meters(usable.get(endpoints.METERS))
    ct_meters = tuple(kind for _, kind, _ in meters)

    production_ct = quirks.is_active(quirks.find_production_section(production_json, "eim"))
    total, net = quirks.find_consumption_sections(production_json)
    total_consumption = quirks.is_active(total)
    net_consumption = quirks.is_active(net)

    storage = quirks.find_acb_storage(production_json)
    acb = quirks.is_active(storage) and storage is not None and "percentFull" in storage
    acb_count = int(number(storage, "activeCount") or 0) if acb else 0

    ensemble_inventory = usable.get(endpoints.ENSEMBLE_INVENTORY)
    iq_batteries = _group_has_devices(ensemble_inventory, "ENCHARGE")
    enpower = _group_has_devices(ensemble_inventory, "ENPOWER")
    grid_relay = has_grid_relay(ensemble_inventory)

    paths = set(usable)
    if endpoints.API_V1_PRODUCTION in paths and (
        quirks.api_v1_production_is_stalled(info, production_ct)
        or (
            info.imeter is True
            and not production_ct
            and quirks.api_v1_production_is_broken(usable[endpoints.API_V1_PRODUCTION])
        )
    ):
        paths.discard(endpoints.API_V1_PRODUCTION)
    detailed_inverters = _device_data_usable(usable.get(endpoints.DEVICE_DATA))
    if not detailed_inverters:
        paths.discard(endpoints.DEVICE_DATA)
    if ct_meters:
        paths.add(endpoints.METERS_READINGS)
    else:
        paths.discard(endpoints.METERS_READINGS)

    metered = info.imeter is True or (info.imeter is None and (production_ct or bool(ct_meters)))
    return Features(
        endpoints=frozenset(paths),
        metered=metered,
        ct_meters=ct_meters,
        meter_eids={eid: kind for eid, kind, _ in meters},
        phase_count=_phase_count(meters, production_json),
        production_ct=production_ct,
        total_consumption=total_consumption,
        net_consumption=net_consumption,
        acb=acb,
        acb_count=acb_count,
        iq_batteries=iq_batteries,
        enpower=enpower,
        grid_relay=grid_relay,
        detailed_inverters=detailed_inverters,
        inventory=endpoints.INVENTORY in usable,
    )
