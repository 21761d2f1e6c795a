"""What each control is: its Home Assistant platform, its values, the hardware and token it needs.

Commands arrive as the plain payloads Home Assistant's `select`, `number` and `switch` send ("economy",
"20", "ON"); `parse_command` validates type, enum and range before anything can be sent to the Envoy.
A storage mode may also come as JSON `{"value": "backup", "opt_schedules_off": true}` (optimisers).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from envoy2mqtt.config import EnvoySettings
from envoy2mqtt.model import Features

Value = str | int | float
Platform = Literal["select", "number", "switch"]
Need = Literal["batteries", "enpower", "installer"]

STORAGE_MODES = ("backup", "self-consumption", "economy")
_MODE_ALIASES = {"savings-mode": "economy", "savings": "economy", "self_consumption": "self-consumption"}
EXPORT_LIMIT_MAX = 100_000  # W; far above any residential site, a typo guard more than a limit
DRY_CONTACT_PREFIX = "dry_contact_"


class CommandError(ValueError):
    """A command that is not valid for its control (never sent); the message says what is accepted."""


@dataclass(frozen=True, slots=True)
class Command:
    """One validated command."""

    control: str
    value: Value
    opt_schedules_off: bool = False


@dataclass(frozen=True, slots=True)
class ControlSpec:
    name: str  # the topic segment and the state key
    label: str  # the Home Assistant entity name
    platform: Platform
    needs: tuple[Need, ...]
    options: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    unit: str | None = None
    device_class: str | None = None
    icon: str | None = None
    off_allowed: bool = False  # a number that also takes "OFF" (export limit: no limit)
    contact_id: str | None = None  # dry contacts: the Envoy's id ("NC1")


STORAGE_MODE = ControlSpec(
    "storage_mode", "Battery storage mode", "select", ("batteries",), options=STORAGE_MODES,
    icon="mdi:home-battery",
)  # fmt: skip
RESERVE_SOC = ControlSpec(
    "reserve_soc", "Battery reserve", "number", ("batteries",), minimum=0, maximum=100, step=1,
    unit="%", device_class="battery",
)  # fmt: skip
CHARGE_FROM_GRID = ControlSpec(
    "charge_from_grid", "Charge battery from grid", "switch", ("batteries",), icon="mdi:transmission-tower-import"
)  # fmt: skip
GRID_RELAY = ControlSpec(
    "grid_relay", "Grid connection", "switch", ("enpower",), icon="mdi:transmission-tower"
)
PRODUCTION = ControlSpec("production", "Production", "switch", ("installer",), icon="mdi:solar-power")
EXPORT_LIMIT = ControlSpec(
    "export_limit", "Export limit", "number", ("installer",), minimum=0, maximum=EXPORT_LIMIT_MAX, step=1,
    unit="W", device_class="power", icon="mdi:transmission-tower-export", off_allowed=True,
)  # fmt: skip

FIXED_CONTROLS = (STORAGE_MODE, RESERVE_SOC, CHARGE_FROM_GRID, GRID_RELAY, PRODUCTION, EXPORT_LIMIT)


def dry_contact(contact_id: str) -> ControlSpec:
    name = DRY_CONTACT_PREFIX + "".join(c if c.isalnum() else "_" for c in contact_id.lower())
    return ControlSpec(
        name, f"Dry contact {contact_id}", "switch", ("enpower",), icon="mdi:electric-switch",
        contact_id=contact_id,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Offer:
    """The controls this Envoy offers, and why the others are refused."""

    controls: Mapping[str, ControlSpec]
    refused: Mapping[str, str]  # control name -> the reason, for the fixed controls not offered

    def refusal(self, name: str) -> str:
        if name in self.refused:
            return self.refused[name]
        if name.startswith(DRY_CONTACT_PREFIX):
            return f"this Envoy has no dry contact {name[len(DRY_CONTACT_PREFIX) :]!r}"
        return f"unknown control {name!r}"


def decide_offer(
    envoy: EnvoySettings,
    features: Features,
    *,
    auth_mode: str | None,
    token_type: str | None,
    contact_ids: Iterable[str] = (),
) -> Offer:
    """Which controls the hardware and the credentials allow (nothing at all while `controls` is off)."""
    if not envoy.controls:
        return Offer({}, {})
    installer = token_type == "installer" or (auth_mode == "legacy" and envoy.username == "installer")
    reasons: dict[Need, str | None] = {
        "batteries": None
        if features.iq_batteries
        else "needs IQ Batteries (none in /ivp/ensemble/inventory)",
        "enpower": None
        if features.enpower
        else "needs an IQ System Controller (Enpower; none in /ivp/ensemble/inventory)",
        "installer": None
        if installer
        else f"needs an installer token (this Envoy uses {'an ' + token_type if token_type else 'an unknown'} "
        "token; the Envoy answers 401/403 to anything else)",
    }
    offered: dict[str, ControlSpec] = {}
    refused: dict[str, str] = {}
    candidates = [*FIXED_CONTROLS, *(dry_contact(cid) for cid in contact_ids)]
    for spec in candidates:
        reason = next((r for need in spec.needs if (r := reasons[need]) is not None), None)
        if reason is None and spec is GRID_RELAY and not envoy.allow_grid_relay:
            reason = "the grid relay can take the house off grid: set allow_grid_relay = true to control it"
        if reason is None:
            offered[spec.name] = spec
        else:
            refused[spec.name] = reason
    return Offer(offered, refused)


def parse_command(spec: ControlSpec, payload: bytes) -> Command:
    """Validate one command payload for `spec`; raise CommandError with what is accepted."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CommandError("the payload is not UTF-8 text") from None
    if not text:
        raise CommandError("empty command")
    if spec.platform == "select":
        return _parse_select(spec, text)
    if spec.platform == "switch":
        upper = text.upper()
        if upper not in ("ON", "OFF"):
            raise CommandError(f"{spec.name} takes ON or OFF, not {_shown(text)}")
        return Command(spec.name, upper)
    return _parse_number(spec, text)


def _parse_select(spec: ControlSpec, text: str) -> Command:
    opt_schedules_off = False
    value: object = text
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            raise CommandError('a JSON command must be an object such as {"value": "backup"}') from None
        if not isinstance(document, dict) or set(document) - {"value", "opt_schedules_off"}:
            raise CommandError('a JSON command takes only "value" and "opt_schedules_off"')
        value = document.get("value")
        flag = document.get("opt_schedules_off", False)
        if not isinstance(flag, bool):
            raise CommandError("opt_schedules_off must be true or false")
        opt_schedules_off = flag
    if not isinstance(value, str):
        raise CommandError(f"{spec.name} takes one of {', '.join(spec.options)}")
    mode = value.strip().lower()
    mode = _MODE_ALIASES.get(mode, mode)
    if mode not in spec.options:
        raise CommandError(f"{spec.name} takes one of {', '.join(spec.options)}, not {_shown(value)}")
    return Command(spec.name, mode, opt_schedules_off)


def _parse_number(spec: ControlSpec, text: str) -> Command:
    if spec.off_allowed and text.upper() == "OFF":
        return Command(spec.name, "OFF")
    try:
        number = float(text)
    except ValueError:
        accepted = " or OFF" if spec.off_allowed else ""
        raise CommandError(f"{spec.name} takes a number{accepted}, not {_shown(text)}") from None
    if not math.isfinite(number):
        raise CommandError(f"{spec.name} takes a finite number")
    low, high = spec.minimum, spec.maximum
    if (low is not None and number < low) or (high is not None and number > high):
        raise CommandError(
            f"{spec.name} must be between {_number(low)} and {_number(high)} {spec.unit or ''}".rstrip()
        )
    value: Value = int(number) if number == int(number) else number
    if spec.step == 1 and not isinstance(value, int):
        raise CommandError(f"{spec.name} takes whole numbers")
    return Command(spec.name, value)


def _number(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if value == int(value) else str(value)


def _shown(text: str, limit: int = 32) -> str:
    """The offending payload, cut short (it goes into logs and the state topic)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
