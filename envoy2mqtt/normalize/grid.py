"""Grid state: is the house on the grid or running off-grid? Only some hardware can say.

Sources, in order of preference (each a pure reading of one body; None = this body does not say):

- the IQ System Controller (Enpower) entry of `/ivp/ensemble/inventory`: `mains_oper_state` is the
  grid relay as it is, `"closed"` = on grid, `"open"` = off grid;
- the IQ Meter Collar entry of the same list: `mid_state` (the microgrid interconnect device, `"close"` /
  `"open"`); its `grid_state` field proved unreliable on collar sites and is only a fallback;
- `/ivp/ensemble/relay` (Enpower sites): `mains_oper_state` as above;
- `/ivp/livedata/status`: `meters.main_relay_state`, 1 = closed (on grid), 0 = open.

Sites without an IQ System Controller or Meter Collar have no relay at all: no grid state is published.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._values import as_mapping, mappings, number, text

GRID_RELAY_GROUPS = ("ENPOWER", "COLLAR")

_CLOSED = {"closed": True, "close": True, "open": False, "opened": False}
_COLLAR_GRID_STATES = {"on_grid": True, "on-grid": True, "off_grid": False, "off-grid": False}


def _devices(ensemble_inventory: object, kind: str) -> list[Mapping[str, Any]]:
    return [
        device
        for group in mappings(ensemble_inventory)
        if text(group, "type") == kind
        for device in mappings(group.get("devices"))
    ]


def has_grid_relay(ensemble_inventory: object) -> bool:
    """Whether this site has hardware that reports the grid relay (an Enpower or a Meter Collar)."""
    return any(_devices(ensemble_inventory, kind) for kind in GRID_RELAY_GROUPS)


def _relay_state(value: object) -> bool | None:
    return _CLOSED.get(value.strip().lower()) if isinstance(value, str) else None


def grid_state(
    ensemble_inventory: object = None, relay: object = None, livedata: object = None
) -> bool | None:
    """True on grid, False off grid, None when no body read says it."""
    for device in _devices(ensemble_inventory, "ENPOWER"):
        state = _relay_state(device.get("mains_oper_state"))
        if state is not None:
            return state
    for device in _devices(ensemble_inventory, "COLLAR"):
        state = _relay_state(device.get("mid_state"))
        if state is None:
            grid = text(device, "grid_state")
            state = _COLLAR_GRID_STATES.get(grid.lower()) if grid else None
        if state is not None:
            return state
    state = _relay_state(text(relay, "mains_oper_state"))
    if state is not None:
        return state
    live = as_mapping(livedata)
    value = number(live.get("meters") if live is not None else None, "main_relay_state")
    if value in (0, 1):
        return value == 1
    return None
