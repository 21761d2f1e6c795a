"""The one declarative entity table.

Each row is one contract key of one state topic. The same rows drive what the normalizers must
produce (their JSON type), the Home Assistant discovery payloads, the discovery validator and the
README's topic table. Adding a sensor is one row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from envoy2mqtt.model import BATTERY_STATES, METERING_STATUSES

Component = Literal["system", "gateway", "health", "inverter", "battery", "meter", "live"]
Platform = Literal["sensor", "binary_sensor"]
ValueKind = Literal["number", "integer", "bool", "text", "time", "list", "enum"]


@dataclass(frozen=True, slots=True)
class Entity:
    key: str
    name: str
    kind: ValueKind = "number"
    platform: Platform = "sensor"
    device_class: str | None = None
    unit: str | None = None
    state_class: str | None = None
    precision: int | None = None
    diagnostic: bool = False
    enabled: bool = True
    icon: str | None = None
    options: tuple[str, ...] = ()  # enum values
    phased: bool = False  # also announced per phase (`_l1`...) when the payload has `phases`
    lifetime: bool = False  # a counter that must never go down in what is published
    daily: bool = False  # a counter that may drop only at the Envoy's local midnight
    template: str | None = None  # overrides the default `{{ value_json.<key> }}`
    attributes: str | None = None  # a json_attributes_template: extra attributes from the same topic


def _power(key: str, name: str, **kw: object) -> Entity:
    return Entity(key, name, device_class="power", unit="W", state_class="measurement", precision=0, **kw)  # type: ignore[arg-type]


def _energy(key: str, name: str, state_class: str | None = "total_increasing", **kw: object) -> Entity:
    return Entity(key, name, device_class="energy", unit="Wh", state_class=state_class, precision=0, **kw)  # type: ignore[arg-type]


SYSTEM: tuple[Entity, ...] = (
    Entity("timestamp", "Reading time", kind="time", device_class="timestamp", diagnostic=True),
    _power("production_power", "Production power", phased=True),
    _energy("production_energy_today", "Production today", daily=True),
    _energy("production_energy_last_7_days", "Production last 7 days", state_class=None),
    _energy("production_energy_lifetime", "Lifetime production", lifetime=True),
    _power("consumption_power", "Consumption power", phased=True),
    _energy("consumption_energy_today", "Consumption today", daily=True),
    _energy("consumption_energy_last_7_days", "Consumption last 7 days", state_class=None),
    _energy("consumption_energy_lifetime", "Lifetime consumption", lifetime=True),
    _power("net_power", "Grid power", phased=True),
    _energy("net_energy_today", "Net consumption today", state_class="total"),
    _energy("net_energy_last_7_days", "Net consumption last 7 days", state_class=None),
    _energy("net_energy_lifetime", "Lifetime net consumption balance", state_class="total"),
    _energy("grid_import_energy_lifetime", "Lifetime grid import", lifetime=True),
    _energy("grid_export_energy_lifetime", "Lifetime grid export", lifetime=True),
    Entity(
        "inverters_count", "Microinverters", kind="integer", state_class="measurement", icon="mdi:counter"
    ),
    Entity("batteries_count", "Batteries", kind="integer", state_class="measurement", icon="mdi:counter"),
    Entity("battery_state", "Battery state", kind="enum", device_class="enum", options=BATTERY_STATES),
    Entity(
        "battery_soc",
        "Battery charge",
        device_class="battery",
        unit="%",
        state_class="measurement",
        precision=0,
    ),
    _power("battery_power", "Battery power"),
    Entity(
        "battery_energy_available",
        "Battery energy available",
        device_class="energy_storage",
        unit="Wh",
        state_class="measurement",
        precision=0,
    ),
    Entity("on_grid", "Grid", kind="bool", platform="binary_sensor", device_class="connectivity"),
)

# The real-time cadence's state on the gateway topic (present only while [realtime] is on).
REALTIME_STATES = ("running", "paused-maintenance", "paused-failures", "starting")

GATEWAY: tuple[Entity, ...] = (
    Entity("serial", "Serial number", kind="text", diagnostic=True, enabled=False),
    Entity("part_number", "Part number", kind="text", diagnostic=True, enabled=False),
    Entity("firmware", "Firmware", kind="text", diagnostic=True, icon="mdi:chip"),
    Entity(
        "metered",
        "Metered",
        kind="bool",
        platform="binary_sensor",
        diagnostic=True,
        enabled=False,
    ),
    Entity(
        "ct_meters",
        "CT meters",
        kind="list",
        diagnostic=True,
        enabled=False,
        template="{{ value_json.ct_meters | join(', ') }}",
    ),
    Entity("phase_count", "Phase count", kind="integer", diagnostic=True, enabled=False),
    Entity(
        "auth_mode",
        "Authentication mode",
        kind="enum",
        device_class="enum",
        options=("legacy", "token"),
        diagnostic=True,
    ),
    Entity(
        "token_type",
        "Token type",
        kind="enum",
        device_class="enum",
        options=("owner", "installer"),
        diagnostic=True,
    ),
    Entity("token_expires_at", "Token expiry", kind="time", device_class="timestamp", diagnostic=True),
    Entity("last_poll_ok", "Last successful poll", kind="time", device_class="timestamp", diagnostic=True),
    Entity(
        "last_error",
        "Last error",
        kind="text",
        diagnostic=True,
        icon="mdi:alert-circle-outline",
        # the payload keeps JSON null while all is well; Home Assistant would show that as "unknown"
        template="{{ value_json.last_error if value_json.last_error is not none else 'OK' }}",
    ),
    Entity(
        "poll_duration",
        "Poll duration",
        device_class="duration",
        unit="s",
        state_class="measurement",
        precision=2,
        diagnostic=True,
    ),
    # present only while [realtime] is on for this Envoy
    Entity(
        "realtime_source",
        "Real-time source",
        kind="enum",
        device_class="enum",
        options=("meters", "livedata"),
        diagnostic=True,
    ),
    Entity(
        "realtime_interval",
        "Real-time interval",
        device_class="duration",
        unit="s",
        state_class="measurement",
        precision=1,
        diagnostic=True,
    ),
    Entity(
        "realtime_state",
        "Real-time state",
        kind="enum",
        device_class="enum",
        options=REALTIME_STATES,
        diagnostic=True,
    ),
    Entity(
        "derived_daily",
        "Derived daily values",
        kind="list",
        diagnostic=True,
        enabled=False,
        template="{{ value_json.derived_daily | join(', ') }}",
    ),
)


def _count(key: str, name: str, icon: str, **kw: object) -> Entity:
    return Entity(key, name, kind="integer", state_class="measurement", icon=icon, **kw)  # type: ignore[arg-type]


def _stale(key: str, name: str) -> Entity:
    return Entity(
        key,
        name,
        kind="list",
        state_class="measurement",
        icon="mdi:timer-sand-empty",
        template=f"{{{{ value_json.{key} | length }}}}",
        # the serials and their last report as the entity's attributes: Home Assistant shows who is stale
        attributes=f"{{{{ {{'devices': value_json.{key}}} | tojson }}}}",
    )


# Fleet health, on the gateway device: `<base>/<envoy>/health` (README "Fleet health").
HEALTH: tuple[Entity, ...] = (
    _count("inverters_provisioned", "Microinverters provisioned", "mdi:solar-panel", diagnostic=True),
    _count("inverters_communicating", "Microinverters communicating", "mdi:lan-connect"),
    _count("inverters_reporting", "Microinverters reporting", "mdi:solar-panel"),
    _stale("inverters_stale", "Stale microinverters"),
    _count("inverters_underperforming", "Underperforming microinverters", "mdi:solar-panel-large"),
    Entity(
        "underperforming_serials",
        "Underperforming serials",
        kind="list",
        diagnostic=True,
        enabled=False,
        template="{{ value_json.underperforming_serials | join(', ') }}",
    ),
    Entity(
        "site_output",
        "Output of capacity",
        unit="%",
        state_class="measurement",
        precision=0,
        icon="mdi:gauge",
    ),
    _count("batteries_provisioned", "Batteries provisioned", "mdi:home-battery", diagnostic=True),
    _count("batteries_communicating", "Batteries communicating", "mdi:lan-connect"),
    _count("batteries_reporting", "Batteries reporting", "mdi:home-battery"),
    _stale("batteries_stale", "Stale batteries"),
)

INVERTER: tuple[Entity, ...] = (
    _power("power", "Power"),
    _power("max_power", "Maximum power", diagnostic=True),
    Entity(
        "last_report", "Last report", kind="time", device_class="timestamp", diagnostic=True, enabled=False
    ),
    Entity(
        "provisioned", "Provisioned", kind="bool", platform="binary_sensor", diagnostic=True, enabled=False
    ),
    Entity(
        "communicating",
        "Communicating",
        kind="bool",
        platform="binary_sensor",
        device_class="connectivity",
        diagnostic=True,
    ),
    Entity("producing", "Producing", kind="bool", platform="binary_sensor", device_class="running"),
    Entity(
        "operating",
        "Operating",
        kind="bool",
        platform="binary_sensor",
        device_class="running",
        diagnostic=True,
        enabled=False,
    ),
    _energy("energy_today", "Energy today", daily=True),
    _energy("energy_lifetime", "Lifetime energy", lifetime=True),
    Entity(
        "dc_voltage",
        "DC voltage",
        device_class="voltage",
        unit="V",
        state_class="measurement",
        precision=1,
        diagnostic=True,
        enabled=False,
    ),
    Entity(
        "dc_current",
        "DC current",
        device_class="current",
        unit="A",
        state_class="measurement",
        precision=2,
        diagnostic=True,
        enabled=False,
    ),
    Entity(
        "ac_voltage",
        "AC voltage",
        device_class="voltage",
        unit="V",
        state_class="measurement",
        precision=1,
        diagnostic=True,
        enabled=False,
    ),
    Entity(
        "ac_current",
        "AC current",
        device_class="current",
        unit="A",
        state_class="measurement",
        precision=2,
        diagnostic=True,
        enabled=False,
    ),
    Entity(
        "ac_frequency",
        "AC frequency",
        device_class="frequency",
        unit="Hz",
        state_class="measurement",
        precision=2,
        diagnostic=True,
        enabled=False,
    ),
    Entity(
        "temperature",
        "Temperature",
        device_class="temperature",
        unit="°C",
        state_class="measurement",
        precision=0,
        diagnostic=True,
    ),
    Entity(
        "relative_output",
        "Relative output",
        unit="%",
        state_class="measurement",
        precision=0,
        icon="mdi:scale-balance",
    ),
    Entity(
        "underperforming", "Underperforming", kind="bool", platform="binary_sensor", device_class="problem"
    ),
)

BATTERY: tuple[Entity, ...] = (
    Entity("kind", "Battery type", kind="enum", device_class="enum", options=("acb", "iq"), diagnostic=True),
    _power("power", "Power"),
    _power("max_power", "Maximum power", diagnostic=True),
    Entity("soc", "Charge", device_class="battery", unit="%", state_class="measurement", precision=0),
    Entity(
        "max_cell_temperature",
        "Maximum cell temperature",
        device_class="temperature",
        unit="°C",
        state_class="measurement",
        precision=0,
    ),
    Entity(
        "temperature",
        "Temperature",
        device_class="temperature",
        unit="°C",
        state_class="measurement",
        precision=0,
        diagnostic=True,
    ),
    Entity("state", "State", kind="enum", device_class="enum", options=BATTERY_STATES),
    Entity(
        "provisioned", "Provisioned", kind="bool", platform="binary_sensor", diagnostic=True, enabled=False
    ),
    Entity(
        "communicating",
        "Communicating",
        kind="bool",
        platform="binary_sensor",
        device_class="connectivity",
        diagnostic=True,
    ),
    Entity(
        "producing",
        "Producing",
        kind="bool",
        platform="binary_sensor",
        device_class="running",
        diagnostic=True,
    ),
    Entity(
        "capacity",
        "Capacity",
        device_class="energy_storage",
        unit="Wh",
        state_class="measurement",
        precision=0,
        diagnostic=True,
    ),
    Entity(
        "last_report", "Last report", kind="time", device_class="timestamp", diagnostic=True, enabled=False
    ),
)

METER: tuple[Entity, ...] = (
    _power("power", "power", phased=True),
    _energy("energy_delivered_lifetime", "lifetime energy delivered", lifetime=True),
    _energy("energy_received_lifetime", "lifetime energy received", lifetime=True),
    Entity(
        "voltage",
        "voltage",
        device_class="voltage",
        unit="V",
        state_class="measurement",
        precision=1,
        diagnostic=True,
        enabled=False,
        phased=True,
    ),
    Entity(
        "current",
        "current",
        device_class="current",
        unit="A",
        state_class="measurement",
        precision=2,
        diagnostic=True,
        enabled=False,
        phased=True,
    ),
    Entity(
        "frequency",
        "frequency",
        device_class="frequency",
        unit="Hz",
        state_class="measurement",
        precision=2,
        diagnostic=True,
        enabled=False,
        phased=True,
    ),
    Entity(
        "power_factor",
        "power factor",
        device_class="power_factor",
        state_class="measurement",
        precision=2,
        diagnostic=True,
        enabled=False,
        phased=True,
    ),
    Entity(
        "metering_status",
        "metering status",
        kind="enum",
        device_class="enum",
        options=METERING_STATUSES,
        diagnostic=True,
        enabled=False,
    ),
    Entity(
        "status_flags",
        "status flags",
        kind="list",
        state_class="measurement",
        diagnostic=True,
        enabled=False,
        template="{{ value_json.status_flags | length }}",
    ),
)

# `<base>/<envoy>/live` (real-time power, opt-in): entities on the gateway device, "Live ..." names.
LIVE: tuple[Entity, ...] = (
    Entity(
        "timestamp", "reading time", kind="time", device_class="timestamp", diagnostic=True, enabled=False
    ),
    _power("grid_power", "grid power", phased=True),
    _power("production_power", "production power", phased=True),
    _power("consumption_power", "consumption power", phased=True),
    _power("battery_power", "battery power", phased=True),
    Entity(
        "battery_soc",
        "battery charge",
        device_class="battery",
        unit="%",
        state_class="measurement",
        precision=0,
    ),
)
LIVE_LABEL = "Live"

TABLES: dict[str, tuple[Entity, ...]] = {
    "system": SYSTEM,
    "gateway": GATEWAY,
    "health": HEALTH,
    "inverter": INVERTER,
    "battery": BATTERY,
    "meter": METER,
    "live": LIVE,
}

# What each CT is called in entity names; meter entities live on the gateway device.
METER_LABELS: dict[str, str] = {
    "production": "Production CT",
    "net-consumption": "Net consumption CT",
    "total-consumption": "Total consumption CT",
    "storage": "Storage CT",
}


def lifetime_keys(component: str) -> tuple[str, ...]:
    return tuple(e.key for e in TABLES[component] if e.lifetime)


def daily_keys(component: str) -> tuple[str, ...]:
    return tuple(e.key for e in TABLES[component] if e.daily)
