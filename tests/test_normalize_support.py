"""Build what the Envoy client would hand the normalizers, from a shared capture folder.

An endpoint counts only when its file exists, parses as JSON, is not an `{"error": ...}` body and its
`<name>_log.json` (where recorded) says HTTP 200 — the client treats everything else as absent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envoy2mqtt.envoy import endpoints
from envoy2mqtt.model import EnvoyInfo, Features, RawDeviceData, RawSystemData
from envoy2mqtt.normalize import detect_features
from envoy2mqtt.normalize.features import usable_body

# Capture files to try per endpoint, best first (older captures lack the `?details=1` variant).
_FILES: dict[str, tuple[str, ...]] = {
    endpoints.PRODUCTION_JSON: ("production.json_details_1", "production.json"),
    endpoints.INVENTORY: ("inventory.json", "inventory.json_deleted_1"),
}
_SYSTEM_AND_DEVICE = (*endpoints.PROBE_ENDPOINTS, endpoints.METERS_READINGS)


def parse_info_minimal(xml_text: str) -> EnvoyInfo:
    """Until/unless envoy2mqtt.envoy.firmware.parse_info is importable: enough of /info for the tests."""

    def tag(name: str) -> str | None:
        match = re.search(rf"<{name}>\s*([^<]*?)\s*</{name}>", xml_text)
        return match.group(1) if match else None

    def boolean(name: str) -> bool | None:
        value = tag(name)
        return None if value is None else value.lower() == "true"

    software = tag("software") or "0"
    version = tuple(int(p) for p in re.findall(r"\d+", software))
    return EnvoyInfo(
        serial=tag("sn") or "",
        part_number=tag("pn"),
        firmware=software,
        version=version,
        imeter=boolean("imeter"),
        web_tokens=boolean("web-tokens"),
    )


def parse_info(xml_text: str) -> EnvoyInfo:
    try:
        from envoy2mqtt.envoy.firmware import parse_info as real_parse_info
    except ImportError:  # the Envoy engineer's module is not there yet
        return parse_info_minimal(xml_text)
    return real_parse_info(xml_text)


def read_endpoint(folder: Path, path: str) -> Any:
    """The parsed body the client would get for `path`, or None when it would be absent."""
    for name in _FILES.get(path, (endpoints.capture_file_name(path),)):
        file = folder / name
        if not file.is_file():
            continue
        log = folder / f"{name}_log.json"
        if log.is_file():
            try:
                status = json.loads(log.read_text()).get("code")
            except ValueError:
                status = None
            if status not in (None, 200):
                return None
        try:
            body = json.loads(file.read_text())
        except ValueError:
            return None
        if isinstance(body, dict) and ("error" in body or body.get("status") == 401):
            return None
        return body
    return None


@dataclass(frozen=True)
class Capture:
    name: str
    info: EnvoyInfo
    bodies: dict[str, Any]
    features: Features
    system: RawSystemData
    devices: RawDeviceData


def load_capture(folder: Path) -> Capture:
    info = parse_info((folder / "info").read_text())
    bodies = {p: b for p in _SYSTEM_AND_DEVICE if (b := read_endpoint(folder, p)) is not None}
    probe = {p: b for p, b in bodies.items() if p in endpoints.PROBE_ENDPOINTS}
    if not any(usable_body(p, probe.get(p)) for p in endpoints.JSON_PRODUCTION_ENDPOINTS):
        # as the client's probe: firmware < 3.9 has only the HTML page (a text body, not JSON)
        page = folder / endpoints.capture_file_name(endpoints.PRODUCTION_HTML)
        if page.is_file():
            bodies[endpoints.PRODUCTION_HTML] = probe[endpoints.PRODUCTION_HTML] = page.read_text()
    features = detect_features(info, probe)

    def polled(path: str) -> Any:
        return bodies.get(path) if path in features.endpoints else None

    system = RawSystemData(
        production_json=polled(endpoints.PRODUCTION_JSON),
        api_v1_production=polled(endpoints.API_V1_PRODUCTION),
        meters=bodies.get(endpoints.METERS),
        meters_readings=polled(endpoints.METERS_READINGS),
        ensemble_power=polled(endpoints.ENSEMBLE_POWER),
        ensemble_secctrl=polled(endpoints.ENSEMBLE_SECCTRL),
        ensemble_inventory=polled(endpoints.ENSEMBLE_INVENTORY),
        production_html=polled(endpoints.PRODUCTION_HTML),
    )
    devices = RawDeviceData(
        inverters=polled(endpoints.API_V1_INVERTERS),
        device_data=polled(endpoints.DEVICE_DATA),
        inventory=polled(endpoints.INVENTORY),
        ensemble_inventory=polled(endpoints.ENSEMBLE_INVENTORY),
        ensemble_power=polled(endpoints.ENSEMBLE_POWER),
        production_json=polled(endpoints.PRODUCTION_JSON),
    )
    return Capture(folder.name, info, bodies, features, system, devices)
