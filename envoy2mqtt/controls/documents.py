"""Read-modify-write of the Envoy's documents, one per control. Pure: bodies in, values and documents out.

A write always sends the whole object the Envoy handed out, with the one field changed (a partial
tariff or dry-contact document is what breaks real Envoys, envoy-writes-and-realtime.md §2). The values
are those of the state topic: storage mode names, reserve in %, switches as "ON"/"OFF", the export
limit in W ("OFF" when no limit is active).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from envoy2mqtt.errors import BadEnvoyData

from .catalog import DRY_CONTACT_PREFIX, Command, ControlSpec, Value

TARIFF = "/admin/lib/tariff"
RELAY = "/ivp/ensemble/relay"
DRY_CONTACTS = "/ivp/ensemble/dry_contacts"
POWER_MODE = "/ivp/mod/603980032/mode/power"
DPEL = "/ivp/ss/dpel"

_MODE_NAMES = {"savings-mode": "economy"}


@dataclass(frozen=True, slots=True)
class Document:
    """How one control is read and written."""

    read_path: str
    write_method: str
    write_path: str
    read: Callable[[Any], Value | None]  # the current value from the read body; None: not in it
    build: Callable[[Any, Command], Any]  # the whole document to write, from the read body
    # True while the body cannot be trusted yet (dry contacts all read "open" for a while after a write)
    unsettled: Callable[[Any], bool] = lambda body: False


def document_for(spec: ControlSpec) -> Document:
    name = spec.name
    if name == "storage_mode":
        return Document(TARIFF, "PUT", TARIFF, _storage_mode, _tariff_with("mode"))
    if name == "reserve_soc":
        return Document(TARIFF, "PUT", TARIFF, _reserve, _tariff_with("reserved_soc"))
    if name == "charge_from_grid":
        return Document(TARIFF, "PUT", TARIFF, _charge_from_grid, _tariff_with("charge_from_grid"))
    if name == "grid_relay":
        return Document(RELAY, "POST", RELAY, _relay, _relay_document)
    if name == "production":
        return Document(POWER_MODE, "PUT", POWER_MODE, _production, _power_document)
    if name == "export_limit":
        return Document(DPEL, "POST", DPEL, _export_limit, _dpel_document)
    if name.startswith(DRY_CONTACT_PREFIX) and spec.contact_id is not None:
        contact = spec.contact_id
        return Document(
            DRY_CONTACTS,
            "POST",
            DRY_CONTACTS,
            lambda body: _contact_state(body, contact),
            lambda body, command: {
                "dry_contacts": {"id": contact, "status": "closed" if command.value == "ON" else "open"}
            },
            _contacts_all_open,
        )
    raise ValueError(f"no document for control {name!r}")


# ------------------------------------------------------------------------------ tariff


def _storage_settings(body: Any) -> dict[str, Any] | None:
    tariff = body.get("tariff") if isinstance(body, dict) else None
    settings = tariff.get("storage_settings") if isinstance(tariff, dict) else None
    return settings if isinstance(settings, dict) else None


def _storage_mode(body: Any) -> Value | None:
    settings = _storage_settings(body)
    mode = settings.get("mode") if settings else None
    return _MODE_NAMES.get(mode, mode) if isinstance(mode, str) else None


def _reserve(body: Any) -> Value | None:
    settings = _storage_settings(body)
    value = settings.get("reserved_soc") if settings else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if value == int(value) else float(value)


def _charge_from_grid(body: Any) -> Value | None:
    settings = _storage_settings(body)
    value = settings.get("charge_from_grid") if settings else None
    return _on_off(value) if isinstance(value, bool) else None


def opt_schedules(body: Any) -> bool | None:
    """`storage_settings.opt_schedules` (8.2.42xx+): true makes the Envoy ignore mode writes."""
    settings = _storage_settings(body)
    value = settings.get("opt_schedules") if settings else None
    return value if isinstance(value, bool) else None


def _tariff_with(field: str) -> Callable[[Any, Command], Any]:
    def build(body: Any, command: Command) -> Any:
        if _storage_settings(body) is None:
            raise BadEnvoyData(f"{TARIFF} has no tariff.storage_settings object to change")
        tariff = copy.deepcopy(body["tariff"])
        settings = tariff["storage_settings"]
        value: Any = command.value
        if field == "charge_from_grid":
            value = command.value == "ON"
        elif field == "mode" and settings.get("mode") == "savings-mode" and value == "economy":
            value = "savings-mode"  # the firmware's own spelling of economy
        settings[field] = value
        if field == "mode" and command.opt_schedules_off and "opt_schedules" in settings:
            settings["opt_schedules"] = False
        return {"tariff": tariff}

    return build


# ------------------------------------------------------------------------------ relay, contacts, production


def _relay(body: Any) -> Value | None:
    # The operating state, not the admin state: the relay takes up to ~30 s to follow a write. Only
    # without an operating state (not seen in captures, but cheap to allow) the admin state is used.
    if not isinstance(body, dict):
        return None
    state = body.get("mains_oper_state", body.get("mains_admin_state"))
    return {"closed": "ON", "open": "OFF"}.get(state) if isinstance(state, str) else None


def _relay_document(body: Any, command: Command) -> Any:
    return {"mains_admin_state": "closed" if command.value == "ON" else "open"}


def _contacts(body: Any) -> list[dict[str, Any]]:
    contacts = body.get("dry_contacts") if isinstance(body, dict) else None
    return [c for c in contacts if isinstance(c, dict)] if isinstance(contacts, list) else []


def contact_ids(body: Any) -> list[str]:
    """The dry contact ids of a /ivp/ensemble/dry_contacts body ("NC1", "NO1"...)."""
    return [c["id"] for c in _contacts(body) if isinstance(c.get("id"), str) and c["id"]]


def _contact_state(body: Any, contact: str) -> Value | None:
    for entry in _contacts(body):
        if entry.get("id") == contact:
            return {"closed": "ON", "open": "OFF"}.get(str(entry.get("status")))
    return None


def _contacts_all_open(body: Any) -> bool:
    contacts = _contacts(body)
    return bool(contacts) and all(c.get("status") == "open" for c in contacts)


def _production(body: Any) -> Value | None:
    value = body.get("powerForcedOff") if isinstance(body, dict) else None
    if isinstance(value, bool):
        return "OFF" if value else "ON"
    if value in (0, 1):
        return "OFF" if value == 1 else "ON"
    return None


def _power_document(body: Any, command: Command) -> Any:
    return {"length": 1, "arr": [1 if command.value == "ON" else 0]}


# ------------------------------------------------------------------------------ export limit


def _dpel_settings(body: Any) -> dict[str, Any] | None:
    settings = body.get("dynamic_pel_settings") if isinstance(body, dict) else None
    return settings if isinstance(settings, dict) else None


def _export_limit(body: Any) -> Value | None:
    settings = _dpel_settings(body)
    if settings is None:
        return None
    if not settings.get("enable") or not settings.get("export_limit"):
        return "OFF"
    value = settings.get("limit_value_W")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if value == int(value) else float(value)


def _dpel_document(body: Any, command: Command) -> Any:
    if _dpel_settings(body) is None:
        raise BadEnvoyData(f"{DPEL} has no dynamic_pel_settings object to change")
    document = copy.deepcopy(body)
    settings = document["dynamic_pel_settings"]
    if command.value == "OFF":
        settings["enable"] = False
    else:
        settings["enable"] = True
        settings["export_limit"] = True
        settings["limit_value_W"] = command.value
    return document


def _on_off(value: bool) -> str:
    return "ON" if value else "OFF"
