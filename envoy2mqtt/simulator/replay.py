"""Replay a capture folder (the shared layout: one file per endpoint, `<name>_log.json` for the status)."""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path
from typing import Any

from envoy2mqtt.envoy.endpoints import capture_file_name
from envoy2mqtt.errors import ConfigError
from envoy2mqtt.simulator.responses import (
    JSON_TYPE,
    EnvoyResponse,
    guess_content_type,
    not_found,
)
from envoy2mqtt.simulator.simtime import SimulatedTime

# Requests whose file carries another name in the capture layout.
_ALIASES = {"/info.xml": "info", "/home.json": "home", "/home": "home", "/": ""}

DEVICE_DATA_LIMIT = 50


def _tag(xml: str, tag: str) -> str | None:
    match = re.search(rf"<{tag}>\s*([^<]*?)\s*</{tag}>", xml)
    return match.group(1) if match else None


class CaptureSource:
    """Answers from the files of one real Envoy; optional `scale` and live movement on top."""

    def __init__(self, folder: Path, time: SimulatedTime, scale: int | None = None) -> None:
        if not folder.is_dir():
            raise ConfigError(f"capture folder {folder} does not exist")
        self.folder = folder
        self._time = time
        self._cache: dict[str, tuple[int, bytes] | None] = {}
        self._json_cache: dict[str, Any] = {}
        info = self._read("info")
        info_text = info[1].decode(errors="replace") if info else ""
        self._serial = _tag(info_text, "sn") or "000000000000"
        software = _tag(info_text, "software")
        if software is None:
            software = "D" + folder.name.split("_")[0]
        self._firmware = software
        self._scaler = CaptureScaler(self, scale) if scale is not None else None

    @property
    def serial(self) -> str:
        return self._serial

    @property
    def firmware(self) -> str:
        return self._firmware

    def _read(self, name: str) -> tuple[int, bytes] | None:
        if name in self._cache:
            return self._cache[name]
        result: tuple[int, bytes] | None = None
        path = self.folder / name
        if name and not name.endswith("_log.json") and not name.startswith(".") and path.is_file():
            status = 200
            log_file = self.folder / f"{name}_log.json"
            if log_file.is_file():
                try:
                    status = int(json.loads(log_file.read_text()).get("code", 200))
                except (ValueError, AttributeError):
                    status = 200
            result = (status, path.read_bytes())
        self._cache[name] = result
        return result

    def read_json(self, name: str) -> Any:
        """The parsed body of a capture file (None when absent or not JSON)."""
        if name not in self._json_cache:
            found = self._read(name)
            try:
                self._json_cache[name] = json.loads(found[1]) if found else None
            except ValueError:
                self._json_cache[name] = None
        return self._json_cache[name]

    def file_name(self, path: str, query: str) -> str | None:
        """The capture file answering `path?query`: the full name first, then the name without the query."""
        if path in _ALIASES:
            candidates = [_ALIASES[path]]
        else:
            full = capture_file_name(f"{path}?{query}" if query else path)
            candidates = [full, capture_file_name(path)] if query else [full]
        for name in candidates:
            if self._read(name) is not None:
                return name
        return None

    def respond(self, path: str, query: str) -> EnvoyResponse:
        name = self.file_name(path, query)
        if name is None:
            return not_found()
        found = self._read(name)
        assert found is not None
        status, body = found
        content_type = guess_content_type(body)
        if content_type != JSON_TYPE or status != 200:
            return EnvoyResponse(status, body, content_type)
        if self._scaler is None and not self._time.live:
            return EnvoyResponse(status, body, content_type)
        data = self._scaler.scaled(name) if self._scaler is not None else self.read_json(name)
        if self._time.live:
            data = move_live(data, self._time.elapsed())
        return EnvoyResponse(status, json.dumps(data, indent=2).encode(), JSON_TYPE)


# --------------------------------------------------------------------------------------------------
# scale: N microinverters replicated from the capture's rows


def _fresh_serial(index: int) -> str:
    return f"48{index:010d}"


def _is_pcu_row(row: Any) -> bool:
    return isinstance(row, dict) and row.get("devType", 1) == 1


class CaptureScaler:
    """Rewrites the inverter-bearing files of a capture for `count` microinverters; totals stay consistent."""

    def __init__(self, source: CaptureSource, count: int) -> None:
        if count < 1:
            raise ConfigError("scale must be at least 1")
        self._source = source
        self.count = count
        self._cache: dict[str, Any] = {}
        rows = source.read_json("api_v1_production_inverters")
        self._rows: list[dict[str, Any]] = (
            [r for r in rows if _is_pcu_row(r)] if isinstance(rows, list) else []
        )
        self.original = len(self._rows) or self._original_from_production() or 1
        self.ratio = count / self.original

    def _original_from_production(self) -> int:
        for name in ("production.json_details_1", "production.json", "production"):
            data = self._source.read_json(name)
            if isinstance(data, dict):
                for entry in data.get("production", []):
                    if entry.get("type") == "inverters":
                        return int(entry.get("activeCount", 0))
        return 0

    def inverter_rows(self) -> list[dict[str, Any]]:
        if not self._rows:
            return []
        out = []
        for index in range(self.count):
            row = dict(self._rows[index % len(self._rows)])
            row["serialNumber"] = _fresh_serial(index)
            out.append(row)
        return out

    def scaled(self, name: str) -> Any:
        if name not in self._cache:
            self._cache[name] = self._scale(name, copy.deepcopy(self._source.read_json(name)))
        return self._cache[name]

    def _scale(self, name: str, data: Any) -> Any:
        if name == "api_v1_production_inverters" and isinstance(data, list):
            others = [r for r in data if not _is_pcu_row(r)]
            return self.inverter_rows() + others
        if name == "api_v1_production" and isinstance(data, dict):
            return {k: _times(v, self.ratio) for k, v in data.items()}
        if name.startswith("production") and isinstance(data, dict):
            return self._scale_production(data)
        if name.startswith("inventory") and isinstance(data, list):
            return self._scale_inventory(data)
        if name.startswith("ivp_pdm_device_data") and isinstance(data, dict):
            return self._scale_device_data(data)
        if name == "ivp_meters_readings" and isinstance(data, list):
            return self._scale_readings(data)
        return data

    def _scale_production(self, data: dict[str, Any]) -> dict[str, Any]:
        rows = self.inverter_rows()
        production_w: float | None = None
        for entry in data.get("production", []):
            if entry.get("type") == "inverters":
                entry["activeCount"] = self.count
                entry["wNow"] = (
                    sum(int(r.get("lastReportWatts", 0)) for r in rows)
                    if rows
                    else round(entry.get("wNow", 0) * self.ratio)
                )
                entry["whLifetime"] = round(entry.get("whLifetime", 0) * self.ratio)
            elif entry.get("type") == "eim" and entry.get("measurementType") == "production":
                _scale_energy_fields(entry, self.ratio)
                production_w = entry.get("wNow")
        consumption = data.get("consumption", [])
        total = next((c for c in consumption if c.get("measurementType") == "total-consumption"), None)
        net = next((c for c in consumption if c.get("measurementType") == "net-consumption"), None)
        if production_w is not None and total is not None and net is not None:
            net["wNow"] = round(total.get("wNow", 0) - production_w, 3)
        return data

    def _scale_inventory(self, data: list[Any]) -> list[Any]:
        for group in data:
            if isinstance(group, dict) and group.get("type") == "PCU" and group.get("devices"):
                template = group["devices"]
                devices = []
                for index in range(self.count):
                    device = dict(template[index % len(template)])
                    device["serial_num"] = _fresh_serial(index)
                    devices.append(device)
                group["devices"] = devices
        return data

    def _scale_device_data(self, data: dict[str, Any]) -> dict[str, Any]:
        pcus = [(k, v) for k, v in data.items() if isinstance(v, dict) and v.get("devName") == "pcu"]
        if not pcus:
            return data
        others = {k: v for k, v in data.items() if not (isinstance(v, dict) and v.get("devName") == "pcu")}
        out: dict[str, Any] = {}
        reported = min(self.count, DEVICE_DATA_LIMIT)
        for index in range(reported):
            device = copy.deepcopy(pcus[index % len(pcus)][1])
            device["sn"] = _fresh_serial(index)
            out[str(600_000_000 + index)] = device
        for key, value in others.items():
            if key not in ("deviceCount", "deviceDataLimit"):
                out[key] = value
        non_pcu = sum(1 for v in others.values() if isinstance(v, dict))
        out["deviceCount"] = self.count + non_pcu
        out["deviceDataLimit"] = data.get("deviceDataLimit", DEVICE_DATA_LIMIT)
        return out

    def _scale_readings(self, data: list[Any]) -> list[Any]:
        meters = self._source.read_json("ivp_meters")
        production_eids = {
            m.get("eid")
            for m in (meters if isinstance(meters, list) else [])
            if isinstance(m, dict) and m.get("measurementType") == "production"
        }
        for reading in data:
            if isinstance(reading, dict) and reading.get("eid") in production_eids:
                _scale_energy_fields(reading, self.ratio)
                for channel in reading.get("channels", []):
                    _scale_energy_fields(channel, self.ratio)
        return data


_SCALED_FIELDS = {
    "wNow",
    "whLifetime",
    "whToday",
    "whLastSevenDays",
    "vahLifetime",
    "vahToday",
    "varhLeadLifetime",
    "varhLagLifetime",
    "varhLeadToday",
    "varhLagToday",
    "rmsCurrent",
    "reactPwr",
    "apprntPwr",
    "actEnergyDlvd",
    "actEnergyRcvd",
    "apparentEnergy",
    "reactEnergyLagg",
    "reactEnergyLead",
    "instantaneousDemand",
    "activePower",
    "apparentPower",
    "reactivePower",
    "current",
}


def _times(value: Any, factor: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return round(value * factor) if isinstance(value, int) else round(value * factor, 3)


def _scale_energy_fields(entry: dict[str, Any], factor: float) -> None:
    for key in _SCALED_FIELDS & entry.keys():
        entry[key] = _times(entry[key], factor)
    for line in entry.get("lines", []):
        if isinstance(line, dict):
            _scale_energy_fields(line, factor)


# --------------------------------------------------------------------------------------------------
# live: power moves, energy counters integrate it, timestamps advance

_HOUR = 3600.0
_SLOW_PERIOD = 3600.0
_FAST_PERIOD = 617.0


def live_factor(elapsed: float) -> float:
    """Multiplier of the captured power at `elapsed` simulated seconds: 1 at start, always in [0.65, 1.35]."""
    return (
        1.0
        + 0.25 * math.sin(2 * math.pi * elapsed / _SLOW_PERIOD)
        + 0.1 * math.sin(2 * math.pi * elapsed / _FAST_PERIOD)
    )


def live_factor_integral(elapsed: float) -> float:
    """Integral of `live_factor` from 0 to `elapsed` (seconds); never decreases."""
    slow = 0.25 * _SLOW_PERIOD / (2 * math.pi) * (1 - math.cos(2 * math.pi * elapsed / _SLOW_PERIOD))
    fast = 0.1 * _FAST_PERIOD / (2 * math.pi) * (1 - math.cos(2 * math.pi * elapsed / _FAST_PERIOD))
    return elapsed + slow + fast


_POWER_FIELDS = (
    "wNow",
    "wattsNow",
    "activePower",
    "instantaneousDemand",
    "apparentPower",
    "reactivePower",
    "apprntPwr",
    "reactPwr",
    "rmsCurrent",
    "current",
    "lastReportWatts",
    "real_power_mw",
    "apparent_power_mva",
    "currW",
    "actPower",
    "agg_p_mw",
)
# energy field -> which sign of the dict's power feeds it ("signed", "positive", "negative")
_ENERGY_FIELDS = {
    "whLifetime": "signed",
    "whToday": "signed",
    "whLastSevenDays": "signed",
    "wattHoursLifetime": "signed",
    "wattHoursToday": "signed",
    "wattHoursSevenDays": "signed",
    "actEnergyDlvd": "positive",
    "actEnergyRcvd": "negative",
    "whDlvdCum": "positive",
    "whRcvdCum": "negative",
}
_LIFETIME_FIELDS = (
    "whLifetime",
    "wattHoursLifetime",
    "actEnergyDlvd",
    "actEnergyRcvd",
    "whDlvdCum",
    "whRcvdCum",
)
_TIME_FIELDS = ("readingTime", "timestamp", "lastReportDate", "endDate", "last_rpt_date")


def _base_power(entry: dict[str, Any]) -> float | None:
    for key in ("wNow", "wattsNow", "activePower", "currW", "lastReportWatts"):
        value = entry.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def move_live(data: Any, elapsed: float) -> Any:
    """A copy of a captured JSON body as it would read `elapsed` simulated seconds after the capture."""
    factor = live_factor(elapsed)
    integral_hours = live_factor_integral(elapsed) / _HOUR
    return _move(data, elapsed, factor, integral_hours)


def _move(data: Any, elapsed: float, factor: float, hours: float) -> Any:
    if isinstance(data, list):
        return [_move(item, elapsed, factor, hours) for item in data]
    if not isinstance(data, dict):
        return data
    power = _base_power(data)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict | list):
            out[key] = _move(value, elapsed, factor, hours)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            out[key] = value
        elif key in _POWER_FIELDS:
            out[key] = _as_type(value, value * factor)
        elif key in _ENERGY_FIELDS and power is not None and (value != 0 or key in _LIFETIME_FIELDS):
            # period counters that a firmware leaves at 0 (net-consumption today) stay 0
            mode = _ENERGY_FIELDS[key]
            feed = power if mode == "signed" else max(power, 0.0) if mode == "positive" else max(-power, 0.0)
            out[key] = _as_type(value, value + feed * hours)
        elif key in _TIME_FIELDS and value > 0:
            out[key] = int(value + elapsed)
        else:
            out[key] = value
    return out


def _as_type(original: int | float, value: float) -> int | float:
    return round(value) if isinstance(original, int) else round(value, 3)
