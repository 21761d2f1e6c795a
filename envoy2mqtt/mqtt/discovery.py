"""Home Assistant device-based discovery payloads, generated from the entity table.

Pure functions: state payloads in, one discovery document per device out. The rows of
``envoy2mqtt.entities`` are the only list of keys; an entity is announced only when its key is present
in the state payload the bridge publishes (no consumption CT, no consumption entities), and a phased
row gets one entity per line (``<key>_l1``...) when the payload has ``phases.<line>.<key>``.

One device per gateway (system, gateway and CT meter entities), one per microinverter and one per
battery, each child linked to the gateway with ``via_device``. Everything uses full key names (no
abbreviations): the payloads stay readable in snapshots and in users' bug reports.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import envoy2mqtt
from envoy2mqtt.config import EnvoySettings
from envoy2mqtt.controls.catalog import ControlSpec
from envoy2mqtt.entities import (
    BATTERY,
    GATEWAY,
    HEALTH,
    INVERTER,
    LIVE,
    LIVE_LABEL,
    METER,
    METER_LABELS,
    SYSTEM,
    Entity,
)
from envoy2mqtt.model import PHASE_NAMES, EnvoyInfo, Payload
from envoy2mqtt.mqtt.topics import Topics, sanitize_segment

MANUFACTURER = "Enphase"
ID_PREFIX = "envoy2mqtt"
EXPIRY_FACTOR = 3  # an entity turns unavailable after about three missed cadences
LIVE_EXPIRY_MIN = 15  # seconds: real-time entities survive a few missed reads at the 1-second floor
_NOT_OBJECT_ID = re.compile(r"[^a-z0-9_]")


@dataclass(frozen=True, slots=True)
class GatewayDescription:
    """What the gateway's device block needs."""

    serial: str
    name: str
    firmware: str | None
    part_number: str | None
    configuration_url: str | None


def describe_gateway(envoy: EnvoySettings, serial: str, info: EnvoyInfo | None) -> GatewayDescription:
    """The gateway's device block from its configuration and /info."""
    host = envoy.host
    url = host if "://" in host else f"https://{host}"
    return GatewayDescription(
        serial=serial,
        name=envoy.name or f"Envoy {serial}",
        firmware=info.firmware if info else None,
        part_number=info.part_number if info else None,
        configuration_url=url if url.startswith(("http://", "https://")) else None,
    )


def device_id(serial: str) -> str:
    """The device identifier and discovery object id: ``envoy2mqtt_<serial>`` (sanitized)."""
    return f"{ID_PREFIX}_{sanitize_segment(serial)}"


def gateway_config(
    topics: Topics,
    gw: GatewayDescription,
    system: Payload | None,
    gateway: Payload | None,
    meters: Mapping[str, Payload],
    system_interval: float,
    device_interval: float,
    *,
    health: Payload | None = None,
    qos: int = 1,
    live: Payload | None = None,
    live_interval: float | None = None,
) -> Payload:
    """The gateway device: its system, gateway-diagnostic, fleet health and CT meter entities, and the
    real-time ("Live ...") entities while `live` (the last live payload, or its shape) is given."""
    serial = sanitize_segment(gw.serial)
    system_expiry = _expiry(system_interval)
    gateway_expiry = _expiry(max(device_interval, system_interval))
    components: dict[str, Payload] = {}
    entity_prefix = f"envoy_{serial}"

    def add(
        rows: tuple[Entity, ...],
        payload: Payload | None,
        state_topic: str,
        expiry: int,
        label: str = "",
        key_prefix: str = "",
    ) -> None:
        for component_id, component in _components(
            rows, payload, state_topic, expiry, label=label, key_prefix=key_prefix
        ):
            unique_id = f"{ID_PREFIX}_{serial}_{component_id}"
            entity_id = f"{component['platform']}.{_object_id(f'{entity_prefix}_{component_id}')}"
            components[component_id] = _identified(component, unique_id, entity_id)

    add(SYSTEM, system, topics.system(gw.serial), system_expiry)
    add(GATEWAY, gateway, topics.gateway(gw.serial), gateway_expiry)
    add(HEALTH, health, topics.health(gw.serial), _expiry(max(device_interval, system_interval)))
    for ct_type in sorted(meters):
        label = METER_LABELS.get(ct_type, f"{ct_type} CT")
        prefix = f"{sanitize_segment(ct_type).replace('-', '_')}_ct_"
        add(METER, meters[ct_type], topics.meter(gw.serial, ct_type), system_expiry, label, prefix)
    if live is not None and live_interval is not None:
        live_expiry = max(LIVE_EXPIRY_MIN, _expiry(live_interval))
        add(LIVE, live, topics.live(gw.serial), live_expiry, LIVE_LABEL, "live_")

    return _document(topics, gw, _gateway_device(gw), components, qos)


def controls_config_id(serial: str) -> str:
    """The discovery object id of a gateway's controls: a document of its own on the same device."""
    return f"{device_id(serial)}_controls"


def controls_config(
    topics: Topics, gw: GatewayDescription, controls: Iterable[ControlSpec], *, qos: int = 1
) -> Payload:
    """The controls of one gateway (select, number, switch), on the gateway's device.

    `optimistic: false`: an entity changes only when the state topic (read back from the Envoy) says
    so. Commands are never retained (a stale retained command would act at every restart).
    """
    serial = sanitize_segment(gw.serial)
    state_topic = topics.control_state(gw.serial)
    components: dict[str, Payload] = {}
    for spec in controls:
        value = f"value_json.{spec.name}"
        component: dict[str, Any] = {
            "platform": spec.platform,
            "name": spec.label,
            "command_topic": topics.control_command(gw.serial, spec.name),
            "state_topic": state_topic,
            # null (not read yet) is "None", Home Assistant's unknown
            "value_template": f"{{% if {value} is none %}}None{{% else %}}{{{{ {value} }}}}{{% endif %}}",
            "optimistic": False,
            "retain": False,
            "entity_category": "config",
        }
        if spec.platform == "select":
            component["options"] = list(spec.options)
        elif spec.platform == "switch":
            component |= {"payload_on": "ON", "payload_off": "OFF", "state_on": "ON", "state_off": "OFF"}
            component["device_class"] = "switch"
        else:
            component |= {"min": spec.minimum, "max": spec.maximum, "step": spec.step, "mode": "box"}
            if spec.off_allowed:
                # "OFF" (no limit) has no place on a number entity: it reads as unknown there
                component["value_template"] = (
                    f"{{% if {value} is number %}}{{{{ {value} }}}}{{% else %}}None{{% endif %}}"
                )
        if spec.unit is not None:
            component["unit_of_measurement"] = spec.unit
        if spec.device_class is not None:
            component["device_class"] = spec.device_class
        if spec.icon is not None:
            component["icon"] = spec.icon
        unique_id = f"{ID_PREFIX}_{serial}_control_{spec.name}"
        entity_id = f"{spec.platform}.{_object_id(f'envoy_{serial}_{spec.name}')}"
        components[f"control_{spec.name}"] = _identified(component, unique_id, entity_id)
    return _document(topics, gw, _gateway_device(gw), components, qos)


def _gateway_device(gw: GatewayDescription) -> Payload:
    return {
        "identifiers": [device_id(gw.serial)],
        "name": gw.name,
        "manufacturer": MANUFACTURER,
        "model": "IQ Gateway",
        "model_id": gw.part_number,
        "serial_number": gw.serial,
        "sw_version": gw.firmware,
        "configuration_url": gw.configuration_url,
    }


def inverter_config(
    topics: Topics,
    gw: GatewayDescription,
    serial: str,
    state: Payload,
    device_interval: float,
    *,
    qos: int = 1,
) -> Payload:
    """One microinverter device, a child of the gateway."""
    device: Payload = {
        "identifiers": [device_id(serial)],
        "name": f"Microinverter {serial}",
        "manufacturer": MANUFACTURER,
        "model": "Microinverter",
        "serial_number": serial,
        "via_device": device_id(gw.serial),
    }
    return _child(topics, gw, serial, "inverter", INVERTER, state, topics.inverter(gw.serial, serial),
                  device_interval, device, qos)  # fmt: skip


def battery_config(
    topics: Topics,
    gw: GatewayDescription,
    serial: str,
    state: Payload,
    device_interval: float,
    *,
    qos: int = 1,
) -> Payload:
    """One battery device (AC Battery or IQ Battery), a child of the gateway."""
    model = {"acb": "AC Battery", "iq": "IQ Battery"}.get(str(state.get("kind")), "Battery")
    device: Payload = {
        "identifiers": [device_id(serial)],
        "name": f"{model} {serial}",
        "manufacturer": MANUFACTURER,
        "model": model,
        "serial_number": serial,
        "via_device": device_id(gw.serial),
    }
    return _child(topics, gw, serial, "battery", BATTERY, state, topics.battery(gw.serial, serial),
                  device_interval, device, qos)  # fmt: skip


# ---------------------------------------------------------------------------------------- internals


def _child(
    topics: Topics,
    gw: GatewayDescription,
    serial: str,
    kind: str,
    rows: tuple[Entity, ...],
    state: Payload,
    state_topic: str,
    device_interval: float,
    device: Payload,
    qos: int,
) -> Payload:
    clean = sanitize_segment(serial)
    components: dict[str, Payload] = {}
    for component_id, component in _components(rows, state, state_topic, _expiry(device_interval)):
        entity_id = f"{component['platform']}.{_object_id(f'envoy_{kind}_{clean}_{component_id}')}"
        components[component_id] = _identified(component, f"{ID_PREFIX}_{clean}_{component_id}", entity_id)
    return _document(topics, gw, device, components, qos)


def _identified(component: Payload, unique_id: str, default_entity_id: str) -> Payload:
    """The component with its identity right after the platform, where a reader looks first."""
    platform = component.pop("platform")
    return {"platform": platform, "unique_id": unique_id, "default_entity_id": default_entity_id, **component}


def _document(
    topics: Topics, gw: GatewayDescription, device: Payload, components: dict[str, Payload], qos: int
) -> Payload:
    return {
        "device": {k: v for k, v in device.items() if v is not None},
        "origin": {
            "name": "envoy2mqtt",
            "sw_version": envoy2mqtt.__version__,
            "support_url": envoy2mqtt.PROJECT_URL,
        },
        "availability": [
            {"topic": topics.bridge_availability},
            {"topic": topics.envoy_availability(gw.serial)},
        ],
        "availability_mode": "all",
        "qos": qos,
        "components": components,
    }


def _expiry(interval: float) -> int:
    return max(1, math.ceil(EXPIRY_FACTOR * interval))


def _components(
    rows: tuple[Entity, ...],
    payload: Payload | None,
    state_topic: str,
    expiry: int,
    *,
    label: str = "",
    key_prefix: str = "",
) -> Iterator[tuple[str, Payload]]:
    """(component id, component) for every row whose key the payload has, then its phase entities."""
    if not payload:
        return
    phases = payload.get("phases")
    for row in rows:
        name = f"{label} {row.name}" if label else row.name
        if row.key in payload:
            template = row.template or _value_template(row, f"value_json.{row.key}")
            yield f"{key_prefix}{row.key}", _component(row, name, state_topic, template, expiry)
        if row.phased and isinstance(phases, Mapping):
            for line in PHASE_NAMES:
                values = phases.get(line)
                if isinstance(values, Mapping) and row.key in values:
                    template = _value_template(row, f"value_json.phases.{line}.{row.key}")
                    component = _component(row, f"{name} {line.upper()}", state_topic, template, expiry)
                    yield f"{key_prefix}{row.key}_{line}", component


def _value_template(row: Entity, value: str) -> str:
    if row.platform == "binary_sensor":
        # JSON true/false become ON/OFF; null (temporarily unknown) becomes "None", HA's unknown.
        return f"{{% if {value} is none %}}None{{% elif {value} %}}ON{{% else %}}OFF{{% endif %}}"
    return f"{{{{ {value} }}}}"


def _component(row: Entity, name: str, state_topic: str, value_template: str, expiry: int) -> Payload:
    component: dict[str, Any] = {
        "platform": row.platform,
        "name": _capitalized(name),
        "state_topic": state_topic,
        "value_template": value_template,
    }
    if row.attributes is not None:
        component["json_attributes_topic"] = state_topic
        component["json_attributes_template"] = row.attributes
    if row.platform == "binary_sensor":
        component["payload_on"] = "ON"
        component["payload_off"] = "OFF"
    if row.device_class is not None:
        component["device_class"] = row.device_class
    if row.unit is not None:
        component["unit_of_measurement"] = row.unit
    if row.state_class is not None:
        component["state_class"] = row.state_class
    if row.precision is not None:
        component["suggested_display_precision"] = row.precision
    if row.options:
        component["options"] = list(row.options)
    if row.icon is not None:
        component["icon"] = row.icon
    if row.diagnostic:
        component["entity_category"] = "diagnostic"
    if not row.enabled:
        component["enabled_by_default"] = False
    component["expire_after"] = expiry
    return component


def _object_id(text: str) -> str:
    """An entity object id as Home Assistant writes them: lower case, ``[a-z0-9_]`` only."""
    return _NOT_OBJECT_ID.sub("_", text.lower())


def _capitalized(name: str) -> str:
    return name[:1].upper() + name[1:]
