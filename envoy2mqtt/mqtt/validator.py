"""A strict validator for device-based Home Assistant discovery payloads (HA 2026 rules).

Pure: a topic and a decoded JSON document in, a list of problems out (``[]`` when valid). It
enforces what Home Assistant 2026 rejects (``ha-mqtt-discovery.md`` §1.3-1.9) and a little more that
HA only warns about at runtime but that breaks statistics or the Energy dashboard (state class versus
device class, the seven-day rolling window without state class). Abbreviated keys are expanded first,
as Home Assistant does, so a payload is judged the same whichever spelling it uses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

# --------------------------------------------------------------------------------- vocabulary

SUPPORTED_COMPONENTS = frozenset(
    {
        "alarm_control_panel", "binary_sensor", "button", "camera", "climate", "cover",
        "device_automation", "device_tracker", "event", "fan", "humidifier", "image", "lawn_mower",
        "light", "lock", "notify", "number", "scene", "select", "sensor", "siren", "switch", "tag",
        "text", "update", "vacuum", "valve", "water_heater",
    }
)  # fmt: skip

SENSOR_DEVICE_CLASSES = frozenset(
    {
        "absolute_humidity", "apparent_power", "aqi", "area", "atmospheric_pressure", "battery",
        "blood_glucose_concentration", "carbon_dioxide", "carbon_monoxide", "conductivity", "current",
        "data_rate", "data_size", "date", "distance", "duration", "energy", "energy_distance",
        "energy_storage", "enum", "frequency", "gas", "humidity", "illuminance", "irradiance",
        "moisture", "monetary", "nitrogen_dioxide", "nitrogen_monoxide", "nitrous_oxide", "ozone", "ph",
        "pm1", "pm10", "pm25", "pm4", "power", "power_factor", "precipitation",
        "precipitation_intensity", "pressure", "reactive_energy", "reactive_power", "signal_strength",
        "sound_pressure", "speed", "sulphur_dioxide", "temperature", "temperature_delta", "timestamp",
        "volatile_organic_compounds", "volatile_organic_compounds_parts", "voltage", "volume",
        "volume_flow_rate", "volume_storage", "water", "weight", "wind_direction", "wind_speed",
    }
)  # fmt: skip

BINARY_SENSOR_DEVICE_CLASSES = frozenset(
    {
        "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
        "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving", "occupancy",
        "opening", "plug", "power", "presence", "problem", "running", "safety", "smoke", "sound",
        "tamper", "update", "vibration", "window",
    }
)  # fmt: skip

NUMBER_DEVICE_CLASSES = SENSOR_DEVICE_CLASSES - {"timestamp", "date", "enum"}
SWITCH_DEVICE_CLASSES = frozenset({"outlet", "switch"})
NUMBER_MODES = frozenset({"auto", "box", "slider"})
# Options of a read-only sensor that the controllable platforms do not take (Home Assistant drops them).
_CONTROL_ONLY_NOT = (
    "expire_after",
    "state_class",
    "last_reset_value_template",
    "suggested_display_precision",
)

STATE_CLASSES = frozenset({"measurement", "measurement_angle", "total", "total_increasing"})

_ENERGY_UNITS = frozenset(
    {"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh", "cal", "kcal", "Mcal", "Gcal", "thm"}
)

# §1.9: the units Home Assistant 2026 accepts per device class (None: no unit is allowed too).
DEVICE_CLASS_UNITS: dict[str, frozenset[str | None]] = {
    "power": frozenset({"mW", "W", "kW", "MW", "GW", "TW"}),
    "energy": frozenset(_ENERGY_UNITS),
    "energy_storage": frozenset(_ENERGY_UNITS),
    "battery": frozenset({"%"}),
    "temperature": frozenset({"°C", "°F", "K"}),
    "voltage": frozenset({"μV", "mV", "V", "kV", "MV"}),
    "current": frozenset({"μA", "mA", "A"}),
    "frequency": frozenset({"mHz", "Hz", "kHz", "MHz", "GHz"}),
    "power_factor": frozenset({"%", None}),
    "apparent_power": frozenset({"mVA", "VA", "kVA"}),
    "reactive_power": frozenset({"mvar", "var", "kvar"}),
    "reactive_energy": frozenset({"varh", "kvarh"}),
    "duration": frozenset({"d", "h", "min", "s", "ms", "μs"}),
    "signal_strength": frozenset({"dB", "dBm"}),
}

NON_NUMERIC_DEVICE_CLASSES = frozenset({"timestamp", "date", "enum"})

# The state classes each device class allows; a class missing here allows any state class.
DEVICE_CLASS_STATE_CLASSES: dict[str, frozenset[str]] = {
    "power": frozenset({"measurement"}),
    "energy": frozenset({"total", "total_increasing"}),
    "energy_storage": frozenset({"measurement"}),
    "battery": frozenset({"measurement"}),
    "temperature": frozenset({"measurement"}),
    "voltage": frozenset({"measurement"}),
    "current": frozenset({"measurement"}),
    "frequency": frozenset({"measurement"}),
    "power_factor": frozenset({"measurement"}),
    "apparent_power": frozenset({"measurement"}),
    "reactive_power": frozenset({"measurement"}),
    "reactive_energy": frozenset({"total", "total_increasing"}),
    "signal_strength": frozenset({"measurement"}),
    "timestamp": frozenset(),
    "date": frozenset(),
    "enum": frozenset(),
}

# Rolling windows go down as old days leave the window: never a state class (§1.9).
_ROLLING_WINDOW = re.compile(r"last_?7_?days|seven_?days|7_?day", re.IGNORECASE)

# Options the top level shares with every component (§1.3).
SHARED_OPTIONS = (
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "command_topic",
    "encoding",
    "message_expiry_interval",
    "payload_available",
    "payload_not_available",
    "state_topic",
    "qos",
)

# Home Assistant's abbreviations for the keys that matter here (mqtt/abbreviations.py).
ABBREVIATIONS = {
    "avty": "availability",
    "avty_mode": "availability_mode",
    "avty_t": "availability_topic",
    "avty_tpl": "availability_template",
    "cmd_t": "command_topic",
    "cmps": "components",
    "cdevs": "child_devices",
    "def_ent_id": "default_entity_id",
    "dev": "device",
    "dev_cla": "device_class",
    "e": "encoding",
    "en": "enabled_by_default",
    "ent_cat": "entity_category",
    "ent_pic": "entity_picture",
    "exp_aft": "expire_after",
    "frc_upd": "force_update",
    "ic": "icon",
    "json_attr_t": "json_attributes_topic",
    "json_attr_tpl": "json_attributes_template",
    "lrst_val_tpl": "last_reset_value_template",
    "msg_exp_int": "message_expiry_interval",
    "name": "name",
    "o": "origin",
    "obj_id": "object_id",
    "off_dly": "off_delay",
    "ops": "options",
    "opt": "optimistic",
    "ret": "retain",
    "mode": "mode",
    "stat_on": "state_on",
    "stat_off": "state_off",
    "p": "platform",
    "pl_avail": "payload_available",
    "pl_not_avail": "payload_not_available",
    "pl_off": "payload_off",
    "pl_on": "payload_on",
    "stat_cla": "state_class",
    "stat_t": "state_topic",
    "sug_dsp_prc": "suggested_display_precision",
    "t": "topic",
    "uniq_id": "unique_id",
    "unit_of_meas": "unit_of_measurement",
    "val_tpl": "value_template",
    "vis": "visible_by_default",
}
DEVICE_ABBREVIATIONS = {
    "cns": "connections",
    "ids": "identifiers",
    "mf": "manufacturer",
    "mdl": "model",
    "mdl_id": "model_id",
    "sn": "serial_number",
    "sw": "sw_version",
    "hw": "hw_version",
    "sa": "suggested_area",
    "cu": "configuration_url",
}
ORIGIN_ABBREVIATIONS = {"sw": "sw_version", "url": "support_url"}

_TOPIC = re.compile(r"^(?P<prefix>.+)/device/(?:[A-Za-z0-9_-]+/)?[A-Za-z0-9_-]+/config$")
_COMPONENT_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_OBJECT_ID = re.compile(r"^[a-z0-9_]+$")
_BINARY_ONLY_NOT = ("unit_of_measurement", "state_class", "options", "suggested_display_precision",
                    "last_reset_value_template")  # fmt: skip


# --------------------------------------------------------------------------------- entry point


def validate_device_discovery(topic: str, payload: Mapping[str, Any]) -> list[str]:
    """Every problem Home Assistant 2026 (or the Energy dashboard) would have with this document."""
    errors: list[str] = []
    match = _TOPIC.match(topic)
    if match is None:
        errors.append(f"topic {topic!r} is not <prefix>/device/[<node_id>/]<object_id>/config")
    elif _has_wildcard(match["prefix"]):
        errors.append(f"topic {topic!r}: the discovery prefix contains a wildcard")
    decoded: Any = payload  # callers may hand over whatever json.loads returned
    if not isinstance(decoded, Mapping):
        return [*errors, "the payload must be a JSON object"]

    doc, expand_errors = _expand(payload, ABBREVIATIONS)
    errors += [f"top level: {e}" for e in expand_errors]
    base = doc.get("~")
    if "object_id" in doc:
        errors.append("top level: object_id is not supported (use default_entity_id per component)")

    errors += _check_device(doc.get("device"))
    errors += _check_origin(doc.get("origin"))

    components = doc.get("components")
    if components is None:
        errors.append("components is required")
        return errors
    if not isinstance(components, Mapping) or not components:
        errors.append("components must be a non-empty object")
        return errors

    shared = {k: doc[k] for k in SHARED_OPTIONS if k in doc}
    unique_ids: dict[str, str] = {}
    for component_id, raw in components.items():
        where = f"component {component_id!r}"
        if not isinstance(component_id, str) or not _COMPONENT_ID.match(component_id):
            errors.append(f"{where}: the component id may contain only [A-Za-z0-9_-]")
        if not isinstance(raw, Mapping):
            errors.append(f"{where}: must be an object")
            continue
        component, expand_errors = _expand(raw, ABBREVIATIONS)
        errors += [f"{where}: {e}" for e in expand_errors]
        merged = {**shared, **component}
        if isinstance(base, str):
            merged = _substitute_base(merged, base)
        errors += [f"{where}: {e}" for e in _check_component(component, merged)]
        unique_id = component.get("unique_id")
        if isinstance(unique_id, str):
            if unique_id in unique_ids:
                errors.append(f"{where}: unique_id {unique_id!r} is also used by {unique_ids[unique_id]!r}")
            unique_ids[unique_id] = component_id
    return errors


# --------------------------------------------------------------------------------- the parts


def _expand(raw: Mapping[str, Any], table: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    errors: list[str] = []
    for key, value in raw.items():
        full = table.get(key, key)
        if full in out:
            errors.append(f"{full} is given twice (abbreviated and in full)")
        out[full] = value
    return out, errors


def _substitute_base(config: dict[str, Any], base: str) -> dict[str, Any]:
    def fill(value: Any) -> Any:
        if isinstance(value, str):
            if value.startswith("~"):
                return base + value[1:]
            if value.endswith("~"):
                return value[:-1] + base
        return value

    out = {k: fill(v) if k.endswith("topic") else v for k, v in config.items()}
    if isinstance(out.get("availability"), list):
        out["availability"] = [
            {**entry, "topic": fill(entry.get("topic"))} if isinstance(entry, Mapping) else entry
            for entry in out["availability"]
        ]
    return out


def _check_device(raw: Any) -> list[str]:
    if raw is None:
        return ["device is required"]
    if not isinstance(raw, Mapping):
        return ["device must be an object"]
    device, errors = _expand(raw, DEVICE_ABBREVIATIONS)
    errors = [f"device: {e}" for e in errors]
    identifiers = device.get("identifiers")
    connections = device.get("connections")
    if identifiers is None and connections is None:
        errors.append("device: identifiers (or connections) are required")
    if identifiers is not None:
        ids = [identifiers] if isinstance(identifiers, str) else identifiers
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            errors.append("device: identifiers must be a non-empty string or a non-empty list of strings")
    if connections is not None and not (
        isinstance(connections, list)
        and all(
            isinstance(c, list) and len(c) == 2 and all(isinstance(x, str) for x in c) for c in connections
        )
    ):
        errors.append("device: connections must be a list of [type, value] pairs")
    name = device.get("name")
    if not isinstance(name, str) or not name.strip():
        errors.append("device: name is required (Home Assistant logs every device without one)")
    url = device.get("configuration_url")
    if url is not None and not _configuration_url(url):
        errors.append(f"device: configuration_url {url!r} must be an http(s) or homeassistant:// URL")
    via = device.get("via_device")
    if via is not None and not isinstance(via, str):
        errors.append("device: via_device must be a string (an identifier of the parent device)")
    if isinstance(via, str) and isinstance(identifiers, str | list) and via in _as_list(identifiers):
        errors.append("device: via_device points at the device itself")
    for key in ("name", "manufacturer", "model", "model_id", "serial_number", "sw_version", "hw_version"):
        if key in device and not isinstance(device[key], str):
            errors.append(f"device: {key} must be a string")
    if "via_hub" in device:
        errors.append("device: via_hub is ignored by Home Assistant, use via_device")
    return errors


def _check_origin(raw: Any) -> list[str]:
    if raw is None:
        return ["origin is required for device discovery"]
    if not isinstance(raw, Mapping):
        return ["origin must be an object"]
    origin, errors = _expand(raw, ORIGIN_ABBREVIATIONS)
    errors = [f"origin: {e}" for e in errors]
    if not isinstance(origin.get("name"), str) or not origin["name"]:
        errors.append("origin: name is required")
    url = origin.get("support_url")
    if url is not None and not _http_url(url):
        errors.append(f"origin: support_url {url!r} must be an http(s) URL")
    return errors


def _check_component(own: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """``own``: what the component says itself; ``config``: with the shared options merged in."""
    errors: list[str] = []
    platform = own.get("platform")
    if platform is None:
        return ["platform is required"]
    if platform not in SUPPORTED_COMPONENTS:
        return [f"platform {platform!r} is not a supported component"]
    if set(own) == {"platform"}:
        return []  # the documented way to remove one component

    if "object_id" in own:
        errors.append("object_id is not supported since HA 2026.4 (use default_entity_id)")
    unique_id = own.get("unique_id")
    if not isinstance(unique_id, str) or not unique_id:
        errors.append("unique_id is required in a device payload")
    errors += _check_default_entity_id(own.get("default_entity_id"), platform)
    errors += _check_topics(config)
    errors += _check_availability(config)
    errors += _check_common_types(config)
    if platform in ("sensor", "binary_sensor"):
        if not config.get("state_topic"):
            errors.append("state_topic is required (own or shared)")
        category = config.get("entity_category")
        if category is not None and category != "diagnostic":
            errors.append(f"entity_category {category!r}: a {platform} may only be 'diagnostic'")
    elif "entity_category" in config and config["entity_category"] not in ("config", "diagnostic"):
        errors.append(f"entity_category {config['entity_category']!r} is not 'config' or 'diagnostic'")
    if platform == "sensor":
        errors += _check_sensor(config)
    elif platform == "binary_sensor":
        errors += _check_binary_sensor(config)
    elif platform in ("select", "number", "switch"):
        errors += _check_control(platform, config)
    return errors


def _check_control(platform: str, config: Mapping[str, Any]) -> list[str]:
    """select, number, switch: a command topic, no optimism without saying so, valid options and ranges."""
    errors: list[str] = []
    if not config.get("command_topic"):
        errors.append(f"command_topic is required for a {platform}")
    for key in ("optimistic", "retain"):
        if key in config and not isinstance(config[key], bool):
            errors.append(f"{key} must be true or false")
    if config.get("optimistic") is not True and not config.get("state_topic"):
        errors.append("without state_topic the entity is optimistic: give a state_topic or optimistic: true")
    for key in _CONTROL_ONLY_NOT:
        if key in config:
            errors.append(f"{key} is not a {platform} option (Home Assistant drops it)")
    device_class = config.get("device_class")
    unit = config.get("unit_of_measurement")
    if platform == "select":
        options = config.get("options")
        if not isinstance(options, list) or not options or not all(isinstance(o, str) for o in options):
            errors.append("a select needs options: a non-empty list of strings")
        elif len(set(options)) != len(options):
            errors.append("select options must be distinct")
        if device_class is not None or unit is not None:
            errors.append("a select takes no device_class or unit_of_measurement")
    elif platform == "switch":
        if device_class is not None and device_class not in SWITCH_DEVICE_CLASSES:
            errors.append(f"device_class {device_class!r} is not a switch device class (outlet, switch)")
        for key in ("payload_on", "payload_off", "state_on", "state_off"):
            if key in config and not isinstance(config[key], str):
                errors.append(f"{key} must be a string")
        if "unit_of_measurement" in config or "options" in config:
            errors.append("a switch takes no unit_of_measurement or options")
    else:
        low, high, step = config.get("min", 1), config.get("max", 100), config.get("step", 1)
        if not all(_is_number(v) for v in (low, high, step)):
            errors.append("min, max and step must be numbers")
        else:
            if low >= high:
                errors.append(f"min {low} must be below max {high}")
            if step <= 0:
                errors.append(f"step {step} must be positive")
        mode = config.get("mode")
        if mode is not None and mode not in NUMBER_MODES:
            errors.append(f"mode {mode!r} is not auto, box or slider")
        if device_class is not None and device_class not in NUMBER_DEVICE_CLASSES:
            errors.append(f"device_class {device_class!r} is not a number device class")
        if device_class in DEVICE_CLASS_UNITS and unit not in DEVICE_CLASS_UNITS[device_class]:
            errors.append(
                f"unit_of_measurement {unit!r} is not valid together with device class {device_class!r}"
            )
        if "options" in config:
            errors.append("a number takes no options")
    return errors


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_default_entity_id(value: Any, platform: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, str) or "." not in value:
        return [f"default_entity_id {value!r} must look like '{platform}.<object_id>'"]
    domain, _, object_id = value.partition(".")
    errors = []
    if domain != platform:
        errors.append(f"default_entity_id {value!r} has domain {domain!r}, not {platform!r}")
    if not _OBJECT_ID.match(object_id):
        errors.append(f"default_entity_id {value!r}: the object id may contain only [a-z0-9_]")
    return errors


def _check_topics(config: Mapping[str, Any]) -> list[str]:
    errors = []
    for key, value in config.items():
        if key.endswith("topic") and not _valid_topic(value):
            errors.append(f"{key} {value!r} is not a valid topic (empty, wildcard or NUL)")
    return errors


def _check_availability(config: Mapping[str, Any]) -> list[str]:
    errors = []
    availability = config.get("availability")
    if availability is not None and "availability_topic" in config:
        errors.append("availability and availability_topic are mutually exclusive")
    if availability is not None:
        if not isinstance(availability, list) or not availability:
            errors.append("availability must be a non-empty list")
        else:
            for index, raw in enumerate(availability):
                if not isinstance(raw, Mapping):
                    errors.append(f"availability[{index}] must be an object")
                    continue
                entry, _ = _expand(raw, ABBREVIATIONS)
                if not _valid_topic(entry.get("topic")):
                    errors.append(f"availability[{index}].topic {entry.get('topic')!r} is not a valid topic")
    mode = config.get("availability_mode")
    if mode is not None and mode not in ("all", "any", "latest"):
        errors.append(f"availability_mode {mode!r} is not all, any or latest")
    return errors


def _check_common_types(config: Mapping[str, Any]) -> list[str]:
    errors = []
    qos = config.get("qos")
    if qos is not None and (not isinstance(qos, int) or isinstance(qos, bool) or qos not in (0, 1, 2)):
        errors.append(f"qos {qos!r} must be 0, 1 or 2")
    for key in ("enabled_by_default", "visible_by_default", "force_update"):
        if key in config and not isinstance(config[key], bool):
            errors.append(f"{key} must be true or false")
    expire = config.get("expire_after")
    if expire is not None and (not _is_int(expire) or expire <= 0):
        errors.append(f"expire_after {expire!r} must be a positive integer (seconds)")
    name = config.get("name")
    if "name" in config and name is not None and not isinstance(name, str):
        errors.append("name must be a string or null")
    for key in ("value_template", "last_reset_value_template", "json_attributes_template"):
        if key in config and not isinstance(config[key], str):
            errors.append(f"{key} must be a template string")
    icon = config.get("icon")
    if icon is not None and (not isinstance(icon, str) or ":" not in icon):
        errors.append(f"icon {icon!r} must look like 'mdi:name'")
    return errors


def _check_sensor(config: Mapping[str, Any]) -> list[str]:
    errors: list[str] = []
    device_class = config.get("device_class")
    unit = config.get("unit_of_measurement")
    state_class = config.get("state_class")
    if isinstance(unit, str) and not unit.strip():
        unit = None
    if device_class is not None and device_class not in SENSOR_DEVICE_CLASSES:
        errors.append(f"device_class {device_class!r} is not a sensor device class")
    if state_class is not None and state_class not in STATE_CLASSES:
        errors.append(f"state_class {state_class!r} is not one of {sorted(STATE_CLASSES)}")

    if device_class in NON_NUMERIC_DEVICE_CLASSES:
        if unit is not None:
            errors.append(f"device_class {device_class!r} takes no unit_of_measurement (got {unit!r})")
    elif device_class in DEVICE_CLASS_UNITS:
        allowed = DEVICE_CLASS_UNITS[device_class]
        if unit not in allowed:
            units = sorted(u for u in allowed if u is not None)
            errors.append(
                f"unit_of_measurement {unit!r} is not valid together with device class {device_class!r} "
                f"(allowed: {', '.join(units)}{', or none' if None in allowed else ''})"
            )
    if device_class in DEVICE_CLASS_STATE_CLASSES and state_class in STATE_CLASSES:
        allowed_states = DEVICE_CLASS_STATE_CLASSES[device_class]
        if state_class not in allowed_states:
            expected = ", ".join(sorted(allowed_states)) or "no state class"
            errors.append(
                f"state_class {state_class!r} is impossible with device class {device_class!r} "
                f"(allowed: {expected})"
            )
    if state_class is not None and _is_rolling_window(config):
        errors.append(
            f"state_class {state_class!r} on a rolling seven-day window: it goes down as days leave "
            "the window, so it must have no state class"
        )

    if "last_reset_value_template" in config and state_class != "total":
        errors.append("last_reset_value_template is only allowed with state_class 'total'")

    options = config.get("options")
    if options is not None:
        if device_class != "enum":
            errors.append("options are only allowed with device_class 'enum'")
        if not isinstance(options, list) or not options or not all(isinstance(o, str) for o in options):
            errors.append("options must be a non-empty list of strings")
        if unit is not None or state_class is not None:
            errors.append("options do not go together with unit_of_measurement or state_class")
    elif device_class == "enum":
        errors.append("device_class 'enum' needs options")

    precision = config.get("suggested_display_precision")
    if precision is not None and (not _is_int(precision) or precision < 0):
        errors.append(f"suggested_display_precision {precision!r} must be a non-negative integer")
    return errors


def _check_binary_sensor(config: Mapping[str, Any]) -> list[str]:
    errors = []
    device_class = config.get("device_class")
    if device_class is not None and device_class not in BINARY_SENSOR_DEVICE_CLASSES:
        errors.append(f"device_class {device_class!r} is not a binary_sensor device class")
    for key in _BINARY_ONLY_NOT:
        if key in config:
            errors.append(f"{key} is not a binary_sensor option (Home Assistant drops it)")
    for key in ("payload_on", "payload_off"):
        if key in config and not isinstance(config[key], str):
            errors.append(f"{key} must be a string")
    return errors


# --------------------------------------------------------------------------------- helpers


def _has_wildcard(topic: str) -> bool:
    return "+" in topic or "#" in topic or "\0" in topic


def _valid_topic(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and not _has_wildcard(value) and len(value.encode()) < 65536


def _http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _configuration_url(value: Any) -> bool:
    return _http_url(value) or (isinstance(value, str) and value.startswith("homeassistant://"))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_pair(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(isinstance(x, str) for x in value)


def _as_list(value: str | list[Any]) -> list[Any]:
    return [value] if isinstance(value, str) else value


def _is_rolling_window(config: Mapping[str, Any]) -> bool:
    return any(
        isinstance(config.get(key), str) and _ROLLING_WINDOW.search(config[key])
        for key in ("unique_id", "value_template")
    )
