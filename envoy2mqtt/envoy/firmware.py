"""`/info` parsing and firmware versions.

`/info` is the one endpoint every Envoy serves without authentication; it tells the serial, the part
number, the firmware and whether the hardware is metered (envoy-local-api.md §1.1).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # the Envoy is the only source; expat refuses external entities

from envoy2mqtt.errors import BadEnvoyData
from envoy2mqtt.model import EnvoyInfo

_VERSION = re.compile(r"\d+(?:\.\d+)*")


def version_tuple(software: str) -> tuple[int, ...]:
    """`"D8.2.4345"` -> `(8, 2, 4345)`. The prefix letter varies (R, D, M) and is ignored."""
    match = _VERSION.search(software.strip())
    if match is None:
        raise BadEnvoyData(f"firmware version {software!r} has no version number")
    return tuple(int(part) for part in match.group(0).split("."))


def _flag(text: str | None) -> bool | None:
    if text is None:
        return None
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    return None


def _text(element: ET.Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    value = element.text.strip()
    return value or None


def parse_info(xml_text: str) -> EnvoyInfo:
    """Read the serial, part number, firmware and the imeter / web-tokens flags from `/info`."""
    body = xml_text.strip()
    if not body.startswith("<"):
        raise BadEnvoyData("/info is not XML")
    try:
        root = ET.fromstring(body)  # noqa: S314 - a LAN device's own document, no external entities
    except ET.ParseError as exc:
        raise BadEnvoyData(f"/info is not well-formed XML ({exc})") from None
    if root.tag != "envoy_info":
        raise BadEnvoyData(f"/info has root <{root.tag}>, expected <envoy_info>")
    device = root.find("device")
    if device is None:
        raise BadEnvoyData("/info has no <device> element")
    serial = _text(device.find("sn"))
    software = _text(device.find("software"))
    if serial is None:
        raise BadEnvoyData("/info has no serial number (<device><sn>)")
    if software is None:
        raise BadEnvoyData("/info has no firmware version (<device><software>)")
    return EnvoyInfo(
        serial=serial,
        part_number=_text(device.find("pn")),
        firmware=software,
        version=version_tuple(software),
        imeter=_flag(_text(device.find("imeter"))),
        web_tokens=_flag(_text(root.find("web-tokens"))),
    )
