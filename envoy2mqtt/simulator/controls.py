"""The writable settings of a simulated Envoy, with the bad behaviours real gateways show.

What it models (envoy-writes-and-realtime.md §2):

- `/admin/lib/tariff` (GET, PUT of the whole `{"tariff": {...}}`): storage mode, reserve, charge from
  grid. With `opt_schedules` true in the stored tariff and in the PUT, the write answers 200 and changes
  nothing (firmware 8.2.42xx+).
- `/ivp/ensemble/relay` (GET, POST `{"mains_admin_state"}`): the operating state follows the admin
  state only after `relay_seconds`.
- `/ivp/ensemble/dry_contacts` (GET, POST `{"dry_contacts": {"id", "status"}}`): every contact reads
  "open" for `dry_contact_settle_seconds` after a write. `/ivp/ss/dry_contact_settings` is served
  read-only (a partial settings POST is what crashes real Envoys: answered 400 here).
- `/ivp/mod/603980032/mode/power` (GET `{"powerForcedOff"}`, PUT `{"length": 1, "arr": [0|1]}`) and
  `/ivp/ss/dpel` (GET, POST the whole document): installer token only, an owner token gets 401.

Behaviours, switchable at run time (`POST /__sim/controls`): `applied` (the default), `ignored` (200,
nothing changes), `revert` (applied, then the "cloud" puts the old value back after `revert_seconds`),
`reject` (HTTP `reject_status` to every write). Each may be limited to some controls with `controls`.
Time-dependent state is worked out lazily from the clock on every request: no background tasks.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from envoy2mqtt.clock import SYSTEM_CLOCK, Clock
from envoy2mqtt.simulator.responses import EnvoyResponse, json_response

TARIFF = "/admin/lib/tariff"
RELAY = "/ivp/ensemble/relay"
DRY_CONTACTS = "/ivp/ensemble/dry_contacts"
DRY_CONTACT_SETTINGS = "/ivp/ss/dry_contact_settings"
POWER_MODE = "/ivp/mod/603980032/mode/power"
DPEL = "/ivp/ss/dpel"
PEL_SETTINGS = "/ivp/ss/pel_settings"

BEHAVIOURS = ("applied", "ignored", "revert", "reject")
# The names a behaviour can be limited to (what the bridge calls its controls).
CONTROL_GROUPS = ("tariff", "grid_relay", "dry_contacts", "production", "export_limit")
_INSTALLER_PATHS = (POWER_MODE, DPEL)
_CONTACT_IDS = ("NC1", "NC2", "NO1", "NO2")


@dataclass(frozen=True, slots=True)
class WriteRecord:
    """One write request as the simulated Envoy received it (tests assert on these)."""

    method: str
    path: str
    body: Any
    status: int
    token_type: str | None


@dataclass
class ControlBehaviour:
    kind: str = "applied"
    controls: frozenset[str] = frozenset()  # empty: every control
    revert_seconds: float = 60.0
    reject_status: int = 400

    def covers(self, group: str) -> bool:
        return not self.controls or group in self.controls


@dataclass
class _Revert:
    at: float
    restore: Callable[[], None]


@dataclass
class SiteControls:
    """The state behind the write endpoints; `respond` answers GETs and writes alike."""

    batteries: bool
    enpower: bool
    clock: Clock = SYSTEM_CLOCK
    relay_seconds: float = 0.0
    dry_contact_settle_seconds: float = 0.0
    opt_schedules: bool = False
    behaviour: ControlBehaviour = field(default_factory=ControlBehaviour)
    writes: list[WriteRecord] = field(default_factory=list)
    _reverts: list[_Revert] = field(default_factory=list)
    _tariff: dict[str, Any] = field(default_factory=dict)
    _relay_admin: str = "closed"
    _relay_oper: str = "closed"
    _relay_changed_at: float = 0.0
    _contacts: dict[str, str] = field(default_factory=dict)
    _contacts_written_at: float | None = None
    _power_forced_off: bool = False
    _dpel: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._tariff = _default_tariff(self.clock.time(), self.opt_schedules)
        self._contacts = dict.fromkeys(_CONTACT_IDS, "closed")
        self._dpel = {
            "dynamic_pel_settings": {
                "enable": False,
                "export_limit": True,
                "limit_value_W": 0.0,
                "slew_rate": 1.5,
                "enable_dynamic_limiting": False,
            },
            "filename": "site_settings",
            "version": "00.00.01",
        }

    # ------------------------------------------------------------------------------ switches

    def configure(self, options: dict[str, Any]) -> None:
        """What `POST /__sim/controls` sets; unknown keys raise ValueError."""
        known = {"behaviour", "controls", "revert_seconds", "reject_status", "relay_seconds",
                 "dry_contact_settle_seconds", "opt_schedules"}  # fmt: skip
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown control option(s) {sorted(unknown)}; known: {sorted(known)}")
        behaviour = self.behaviour
        if "behaviour" in options:
            kind = str(options["behaviour"])
            if kind not in BEHAVIOURS:
                raise ValueError(f"unknown behaviour {kind!r}; known: {', '.join(BEHAVIOURS)}")
            behaviour = ControlBehaviour(kind=kind)
        if "controls" in options:
            groups = frozenset(str(g) for g in options["controls"] or ())
            if groups - set(CONTROL_GROUPS):
                raise ValueError(f"controls must be among {', '.join(CONTROL_GROUPS)}")
            behaviour.controls = groups
        if "revert_seconds" in options:
            behaviour.revert_seconds = float(options["revert_seconds"])
        if "reject_status" in options:
            status = int(options["reject_status"])
            if not 400 <= status <= 599:
                raise ValueError("reject_status must be 4xx or 5xx")
            behaviour.reject_status = status
        self.behaviour = behaviour
        if "relay_seconds" in options:
            self.relay_seconds = float(options["relay_seconds"])
        if "dry_contact_settle_seconds" in options:
            self.dry_contact_settle_seconds = float(options["dry_contact_settle_seconds"])
        if "opt_schedules" in options:
            self.opt_schedules = bool(options["opt_schedules"])
            self._tariff["tariff"]["storage_settings"]["opt_schedules"] = self.opt_schedules

    def snapshot(self) -> dict[str, Any]:
        self._settle()
        settings = self._tariff["tariff"]["storage_settings"]
        return {
            "behaviour": self.behaviour.kind,
            "controls": sorted(self.behaviour.controls),
            "revert_seconds": self.behaviour.revert_seconds,
            "relay_seconds": self.relay_seconds,
            "dry_contact_settle_seconds": self.dry_contact_settle_seconds,
            "storage_mode": settings["mode"],
            "reserved_soc": settings["reserved_soc"],
            "charge_from_grid": settings["charge_from_grid"],
            "opt_schedules": settings.get("opt_schedules"),
            "mains_admin_state": self._relay_admin,
            "mains_oper_state": self._relay_oper,
            "dry_contacts": dict(self._contacts),
            "power_forced_off": self._power_forced_off,
            "dpel": copy.deepcopy(self._dpel["dynamic_pel_settings"]),
            "writes": len(self.writes),
        }

    def set_value(self, group: str, value: Any) -> None:
        """Change a setting as the cloud or an installer would (not a write through the API)."""
        if group == "storage_mode":
            self._tariff["tariff"]["storage_settings"]["mode"] = value
        elif group == "grid_relay":
            self._relay_admin = self._relay_oper = str(value)
        elif group == "production":
            self._power_forced_off = not bool(value)
        else:
            raise ValueError(f"unknown setting {group!r}")

    # ------------------------------------------------------------------------------ HTTP

    def handles(self, path: str) -> bool:
        if path == TARIFF:
            return self.batteries
        if path in (RELAY, DRY_CONTACTS, DRY_CONTACT_SETTINGS):
            return self.enpower
        return path in (POWER_MODE, DPEL, PEL_SETTINGS)

    def respond(self, method: str, path: str, body: bytes, token_type: str | None) -> EnvoyResponse:
        self._settle()
        if method == "GET":
            return self._get(path, token_type)
        try:
            document = json.loads(body) if body else None
        except ValueError:
            document = None
        answer = self._write(method, path, document, token_type)
        self.writes.append(WriteRecord(method, path, document, answer.status, token_type))
        return answer

    def _get(self, path: str, token_type: str | None) -> EnvoyResponse:
        if path in _INSTALLER_PATHS and token_type == "owner":
            return _status(401, "installer token required")
        if path == TARIFF:
            return json_response(self._tariff)
        if path == RELAY:
            return json_response(
                {
                    "mains_admin_state": self._relay_admin,
                    "mains_oper_state": self._relay_oper,
                    "der1_state": 0,
                    "der2_state": 0,
                    "der3_state": 0,
                    "Enchg_grid_mode": "multimode-ongrid"
                    if self._relay_oper == "closed"
                    else "multimode-offgrid",
                    "Solar_grid_mode": "multimode-ongrid"
                    if self._relay_oper == "closed"
                    else "multimode-offgrid",
                }
            )
        if path == DRY_CONTACTS:
            settling = self._contacts_written_at is not None
            return json_response(
                {
                    "dry_contacts": [
                        {"id": cid, "status": "open" if settling else status}
                        for cid, status in self._contacts.items()
                    ]
                }
            )
        if path == DRY_CONTACT_SETTINGS:
            return json_response(
                {"dry_contacts": [_contact_settings(i, cid) for i, cid in enumerate(self._contacts)]}
            )
        if path == POWER_MODE:
            return json_response({"powerForcedOff": self._power_forced_off})
        if path == DPEL:
            return json_response(self._dpel)
        if path == PEL_SETTINGS:
            return json_response({"PEL": bool(self._dpel["dynamic_pel_settings"]["enable"])})
        return _status(404, "not found")

    def _write(self, method: str, path: str, document: Any, token_type: str | None) -> EnvoyResponse:
        group = _group_of(path)
        if group is None or (path == DRY_CONTACT_SETTINGS):
            return _status(400, "partial settings refused")
        expected = "PUT" if path in (TARIFF, POWER_MODE) else "POST"
        if method != expected:
            return _status(405, f"use {expected}")
        if path in _INSTALLER_PATHS and token_type == "owner":
            return _status(401, "installer token required")
        behaviour = self.behaviour
        covered = behaviour.covers(group)
        if covered and behaviour.kind == "reject":
            return _status(behaviour.reject_status, "rejected by the simulator")
        apply: Callable[[], Callable[[], None] | None] | None = None
        if path == TARIFF:
            apply = self._tariff_writer(document)
        elif path == RELAY:
            apply = self._relay_writer(document)
        elif path == DRY_CONTACTS:
            apply = self._contact_writer(document)
        elif path == POWER_MODE:
            apply = self._power_writer(document)
        elif path == DPEL:
            apply = self._dpel_writer(document)
        if apply is None:
            return _status(400, "malformed document")
        if covered and behaviour.kind == "ignored":
            return json_response({"status": "ok"})
        undo = apply()
        if covered and behaviour.kind == "revert" and undo is not None:
            self._reverts.append(_Revert(self.clock.monotonic() + behaviour.revert_seconds, undo))
        return json_response({"status": "ok"})

    # ------------------------------------------------------------------------------ writers

    def _tariff_writer(self, document: Any) -> Callable[[], Callable[[], None] | None] | None:
        tariff = document.get("tariff") if isinstance(document, dict) else None
        if not isinstance(tariff, dict) or set(tariff) != set(self._tariff["tariff"]):
            return None  # only a whole tariff object is accepted
        settings = tariff.get("storage_settings")
        if not isinstance(settings, dict) or not {"mode", "reserved_soc", "charge_from_grid"} <= set(
            settings
        ):
            return None

        def apply() -> Callable[[], None] | None:
            stored = self._tariff["tariff"]["storage_settings"]
            if stored.get("opt_schedules") and settings.get("opt_schedules", True):
                return None  # 200, and the battery controller goes on with its schedules
            before = copy.deepcopy(self._tariff)
            self._tariff = {**self._tariff, "tariff": copy.deepcopy(tariff)}

            def cloud_push() -> None:
                restored = copy.deepcopy(before)
                restored["tariff"]["date"] = str(int(self.clock.time()))
                if self.opt_schedules:
                    restored["tariff"]["storage_settings"]["opt_schedules"] = True
                self._tariff = restored

            return cloud_push

        return apply

    def _relay_writer(self, document: Any) -> Callable[[], Callable[[], None] | None] | None:
        state = document.get("mains_admin_state") if isinstance(document, dict) else None
        if state not in ("open", "closed"):
            return None

        def apply() -> Callable[[], None] | None:
            before = self._relay_admin
            self._set_relay(str(state))
            return lambda: self._set_relay(before)

        return apply

    def _set_relay(self, state: str) -> None:
        self._relay_admin = state
        self._relay_changed_at = self.clock.monotonic()
        if self.relay_seconds <= 0:
            self._relay_oper = state

    def _contact_writer(self, document: Any) -> Callable[[], Callable[[], None] | None] | None:
        entry = document.get("dry_contacts") if isinstance(document, dict) else None
        if not isinstance(entry, dict) or set(entry) != {"id", "status"}:
            return None
        cid, status = entry.get("id"), entry.get("status")
        if cid not in self._contacts or status not in ("open", "closed"):
            return None

        def apply() -> Callable[[], None] | None:
            before = self._contacts[str(cid)]
            self._set_contact(str(cid), str(status))
            return lambda: self._set_contact(str(cid), before)

        return apply

    def _set_contact(self, cid: str, status: str) -> None:
        self._contacts[cid] = status
        if self.dry_contact_settle_seconds > 0:
            self._contacts_written_at = self.clock.monotonic()

    def _power_writer(self, document: Any) -> Callable[[], Callable[[], None] | None] | None:
        if not isinstance(document, dict) or document.get("length") != 1:
            return None
        arr = document.get("arr")
        if not isinstance(arr, list) or len(arr) != 1 or arr[0] not in (0, 1):
            return None
        forced_off = arr[0] == 0

        def apply() -> Callable[[], None] | None:
            before = self._power_forced_off
            self._power_forced_off = forced_off
            return lambda: setattr(self, "_power_forced_off", before)

        return apply

    def _dpel_writer(self, document: Any) -> Callable[[], Callable[[], None] | None] | None:
        if not isinstance(document, dict) or set(document) != set(self._dpel):
            return None
        settings = document.get("dynamic_pel_settings")
        if not isinstance(settings, dict) or set(settings) != set(self._dpel["dynamic_pel_settings"]):
            return None

        def apply() -> Callable[[], None] | None:
            before = copy.deepcopy(self._dpel)
            self._dpel = copy.deepcopy(document)

            def restore() -> None:
                self._dpel = before

            return restore

        return apply

    # ------------------------------------------------------------------------------ time

    def _settle(self) -> None:
        now = self.clock.monotonic()
        if self._relay_oper != self._relay_admin and now - self._relay_changed_at >= self.relay_seconds:
            self._relay_oper = self._relay_admin
        written = self._contacts_written_at
        if written is not None and now - written >= self.dry_contact_settle_seconds:
            self._contacts_written_at = None
        due = [r for r in self._reverts if r.at <= now]
        self._reverts = [r for r in self._reverts if r.at > now]
        for revert in due:
            revert.restore()


def _group_of(path: str) -> str | None:
    return {
        TARIFF: "tariff",
        RELAY: "grid_relay",
        DRY_CONTACTS: "dry_contacts",
        DRY_CONTACT_SETTINGS: "dry_contacts",
        POWER_MODE: "production",
        DPEL: "export_limit",
    }.get(path)


def _status(status: int, message: str) -> EnvoyResponse:
    return json_response({"status": status, "error": message}, status=status)


def _contact_settings(index: int, cid: str) -> dict[str, Any]:
    return {
        "id": cid,
        "type": "NONE",
        "grid_action": "none",
        "micro_grid_action": "none",
        "gen_action": "none",
        "essential_start_time": 32400,
        "essential_end_time": 57600,
        "priority": index + 1,
        "black_s_start": 5,
        "override": "false",
        "manual_override": "true",
        "load_name": f"Load {index + 1}",
        "mode": "manual",
        "soc_low": 30,
        "soc_high": 40,
        "pv_serial_nb": [],
    }


def _default_tariff(now: float, opt_schedules: bool) -> dict[str, Any]:
    """The shape of capture 8.2.127's tariff (a real one), one season, with `opt_schedules`."""
    return {
        "tariff": {
            "currency": {"code": "EUR"},
            "logger": "mylogger",
            "date": str(int(now) - 86400),
            "storage_settings": {
                "mode": "self-consumption",
                "operation_mode_sub_type": "prioritize-energy",
                "reserved_soc": 20.0,
                "very_low_soc": 10,
                "charge_from_grid": False,
                "date": str(int(now) - 86400),
                "opt_schedules": opt_schedules,
            },
            "single_rate": {"rate": 0.32, "sell": 0.08},
            "seasons": [
                {
                    "id": "all_year",
                    "start": "1/1",
                    "days": [
                        {
                            "id": "all_days",
                            "days": "Mon,Tue,Wed,Thu,Fri,Sat,Sun",
                            "must_charge_start": 0,
                            "must_charge_duration": 0,
                            "must_charge_mode": "CP",
                            "peak_rule": "DL",
                            "enable_discharge_to_grid": False,
                            "periods": [{"id": "filler", "start": 0, "rate": 0.32}],
                        }
                    ],
                    "tiers": [],
                }
            ],
            "seasons_sell": [],
        },
        "schedule": {"filename": "Tariff", "source": "Tariff", "version": "00.00.02"},
    }
