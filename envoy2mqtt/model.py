"""Immutable values that cross layer boundaries: what the Envoy is, what it can do, what it measured.

Readings carry typed fields plus ``present``: the set of contract keys the hardware can measure.
A key outside ``present`` is *absent* from the published JSON; a key inside it whose value is ``None``
is published as ``null`` (temporarily unknown). Normalizers decide ``present`` from the hardware
(features), never from a transient glitch, so the announced Home Assistant entities stay stable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

Payload = dict[str, Any]

AuthMode = Literal["legacy", "token"]
TokenType = Literal["owner", "installer"]
BatteryState = Literal["charging", "discharging", "idle", "full"]
BATTERY_STATES: tuple[BatteryState, ...] = get_args(BatteryState)  # the one definition of a battery's state
MeteringStatus = Literal["normal", "not-metering", "check-wiring"]
METERING_STATUSES: tuple[MeteringStatus, ...] = get_args(MeteringStatus)
CtType = Literal["production", "net-consumption", "total-consumption", "storage"]
PhaseName = Literal["l1", "l2", "l3"]
PHASE_NAMES: tuple[PhaseName, ...] = ("l1", "l2", "l3")
CT_TYPES: tuple[CtType, ...] = ("production", "net-consumption", "total-consumption", "storage")


@dataclass(frozen=True, slots=True)
class EnvoyInfo:
    """What `/info` says."""

    serial: str
    part_number: str | None
    firmware: str  # as reported, e.g. "D8.2.4345" (prefix letter varies: R, D, M)
    version: tuple[int, ...]  # (8, 2, 4345)
    imeter: bool | None  # None when the firmware does not say
    web_tokens: bool | None

    @property
    def auth_mode(self) -> AuthMode:
        return "token" if self.version >= (7,) else "legacy"


@dataclass(frozen=True, slots=True)
class Features:
    """What the probe found. Later polls read only what exists here."""

    endpoints: frozenset[str]  # endpoint paths that answered with data during the probe
    metered: bool  # hardware has an integrated meter (imeter), CTs installed or not
    ct_meters: tuple[CtType, ...] = ()  # enabled CTs, from /ivp/meters
    meter_eids: Mapping[int, CtType] = field(default_factory=dict)  # eid -> measurement type
    phase_count: int = 1
    production_ct: bool = False  # production.json eim production activeCount > 0
    total_consumption: bool = False
    net_consumption: bool = False
    acb: bool = False  # AC Battery (percentFull in production.json storage)
    acb_count: int = 0
    iq_batteries: bool = False  # Encharge / IQ Battery in /ivp/ensemble/inventory
    enpower: bool = False
    grid_relay: bool = False  # an Enpower or IQ Meter Collar reports the grid relay (on/off grid)
    detailed_inverters: bool = False  # /ivp/pdm/device_data usable (<= 50 devices)
    inventory: bool = False  # /inventory.json answered

    @property
    def consumption(self) -> bool:
        return self.total_consumption or self.net_consumption


class _Reading:
    """Shared behaviour: turn the typed fields into the contract's JSON object."""

    __slots__ = ()
    present: frozenset[str]
    problems: tuple[str, ...]

    def payload(self) -> Payload:
        out: Payload = {}
        present = self.present
        for name in _contract_keys(type(self)):
            if name in present:
                value = getattr(self, name)
                if isinstance(value, Mapping):
                    value = {k: dict(v) if isinstance(v, Mapping) else v for k, v in value.items()}
                elif isinstance(value, tuple):
                    value = list(value)
                out[name] = value
        return out


_CONTRACT_KEYS: dict[type, tuple[str, ...]] = {}


def _contract_keys(cls: type) -> tuple[str, ...]:
    """A reading class's payload keys in declaration order (computed once: 300 inverters a cycle)."""
    keys = _CONTRACT_KEYS.get(cls)
    if keys is None:
        keys = tuple(
            f.name for f in fields(cls) if f.name not in ("present", "problems", "serial", "ct_type")
        )
        _CONTRACT_KEYS[cls] = keys
    return keys


PhaseValues = Mapping[str, Mapping[str, float | None]]


@dataclass(frozen=True, slots=True)
class SystemReading(_Reading):
    present: frozenset[str]
    timestamp: str | None = None
    production_power: float | None = None
    production_energy_today: float | None = None
    production_energy_last_7_days: float | None = None
    production_energy_lifetime: float | None = None
    consumption_power: float | None = None
    consumption_energy_today: float | None = None
    consumption_energy_last_7_days: float | None = None
    consumption_energy_lifetime: float | None = None
    net_power: float | None = None
    net_energy_today: float | None = None
    net_energy_last_7_days: float | None = None
    net_energy_lifetime: float | None = None
    grid_import_energy_lifetime: float | None = None
    grid_export_energy_lifetime: float | None = None
    inverters_count: int | None = None
    batteries_count: int | None = None
    battery_state: str | None = None
    battery_soc: float | None = None
    battery_power: float | None = None
    battery_energy_available: float | None = None
    phases: PhaseValues | None = None
    on_grid: bool | None = None  # the grid relay (Enpower / Meter Collar), absent without one
    problems: tuple[str, ...] = ()  # why a value is null; the poller logs each once


@dataclass(frozen=True, slots=True)
class InverterReading(_Reading):
    serial: str
    present: frozenset[str]
    power: float | None = None
    max_power: float | None = None
    last_report: str | None = None
    provisioned: bool | None = None
    communicating: bool | None = None
    producing: bool | None = None
    operating: bool | None = None
    energy_today: float | None = None
    energy_lifetime: float | None = None
    dc_voltage: float | None = None
    dc_current: float | None = None
    ac_voltage: float | None = None
    ac_current: float | None = None
    ac_frequency: float | None = None
    temperature: float | None = None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BatteryReading(_Reading):
    serial: str
    present: frozenset[str]
    kind: str | None = None
    power: float | None = None
    max_power: float | None = None
    soc: float | None = None
    max_cell_temperature: float | None = None
    temperature: float | None = None
    state: str | None = None
    provisioned: bool | None = None
    communicating: bool | None = None
    producing: bool | None = None
    capacity: float | None = None
    last_report: str | None = None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MeterReading(_Reading):
    ct_type: str  # "production", "net-consumption", ...: the topic suffix
    present: frozenset[str]
    power: float | None = None
    energy_delivered_lifetime: float | None = None
    energy_received_lifetime: float | None = None
    voltage: float | None = None
    current: float | None = None
    frequency: float | None = None
    power_factor: float | None = None
    metering_status: str | None = None
    status_flags: tuple[str, ...] | None = None
    phases: PhaseValues | None = None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceReadings:
    """Everything the device cadence produces."""

    inverters: tuple[InverterReading, ...] = ()
    batteries: tuple[BatteryReading, ...] = ()
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RawSystemData:
    """Raw bodies read in one system cycle; None when not read or not available."""

    production_json: Any = None  # /production.json?details=1
    api_v1_production: Any = None  # /api/v1/production
    meters: Any = None  # /ivp/meters (from the probe)
    meters_readings: Any = None  # /ivp/meters/readings
    ensemble_power: Any = None  # /ivp/ensemble/power
    ensemble_secctrl: Any = None  # /ivp/ensemble/secctrl
    ensemble_inventory: Any = None  # /ivp/ensemble/inventory (last one the device cadence read)
    production_html: Any = None  # /production, the HTML page of firmware < 3.9 (text)


@dataclass(frozen=True, slots=True)
class RawDeviceData:
    """Raw bodies read in one device cycle."""

    inverters: Any = None  # /api/v1/production/inverters
    device_data: Any = None  # /ivp/pdm/device_data
    inventory: Any = None  # /inventory.json
    ensemble_inventory: Any = None  # /ivp/ensemble/inventory
    ensemble_power: Any = None  # /ivp/ensemble/power
    production_json: Any = None  # last production.json, for the ACB aggregate


@dataclass(frozen=True, slots=True)
class LiveReading(_Reading):
    """One real-time sample (`<base>/<envoy>/live`): whole-site flows; a key the source lacks is absent."""

    present: frozenset[str]
    timestamp: str | None = None
    grid_power: float | None = None  # + import, - export
    production_power: float | None = None
    consumption_power: float | None = None
    battery_power: float | None = None  # + discharging, - charging
    battery_soc: float | None = None
    phases: PhaseValues | None = None
    problems: tuple[str, ...] = ()
