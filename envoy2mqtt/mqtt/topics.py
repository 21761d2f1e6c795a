"""Every MQTT topic the bridge uses, built in one place.

Topic segments that come from the hardware (serials, CT types, aliases) are sanitized: only
``[A-Za-z0-9_-]`` survives, anything else becomes ``_``. That keeps wildcards (``+``, ``#``), level
separators and spaces out of topics, and keeps discovery object ids inside what Home Assistant accepts.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def sanitize_segment(value: str) -> str:
    """One topic level made safe: ``[A-Za-z0-9_-]`` kept, every other character replaced by ``_``."""
    cleaned = _UNSAFE.sub("_", value)
    return cleaned or "_"


class Topics:
    """The bridge's state topics under ``base`` and Home Assistant's topics under ``discovery_prefix``."""

    __slots__ = ("base", "bridge_availability", "discovery_prefix", "ha_status")

    def __init__(self, base: str, discovery_prefix: str) -> None:
        self.base = base
        self.discovery_prefix = discovery_prefix
        self.bridge_availability = f"{base}/bridge/availability"
        self.ha_status = f"{discovery_prefix}/status"

    def _envoy(self, envoy: str) -> str:
        return f"{self.base}/{sanitize_segment(envoy)}"

    def envoy_availability(self, envoy: str) -> str:
        return f"{self._envoy(envoy)}/availability"

    def system(self, envoy: str) -> str:
        return f"{self._envoy(envoy)}/system"

    def gateway(self, envoy: str) -> str:
        return f"{self._envoy(envoy)}/gateway"

    def health(self, envoy: str) -> str:
        return f"{self._envoy(envoy)}/health"

    @property
    def bridge_info(self) -> str:
        return f"{self.base}/bridge/info"

    @property
    def bridge_requests(self) -> str:
        """The filter for every bridge request: ``<base>/bridge/request/#`` (commands may have levels)."""
        return f"{self.base}/bridge/request/#"

    def bridge_request(self, command: str) -> str:
        return f"{self.base}/bridge/request/{command}"

    def bridge_response(self, command: str) -> str:
        return f"{self.base}/bridge/response/{command}"

    def live(self, envoy: str) -> str:
        """Real-time power: QoS 0, never retained."""
        return f"{self._envoy(envoy)}/live"

    def inverter(self, envoy: str, serial: str) -> str:
        return f"{self._envoy(envoy)}/inverter/{sanitize_segment(serial)}"

    def battery(self, envoy: str, serial: str) -> str:
        return f"{self._envoy(envoy)}/battery/{sanitize_segment(serial)}"

    def meter(self, envoy: str, ct_type: str) -> str:
        return f"{self._envoy(envoy)}/meter/{sanitize_segment(ct_type)}"

    def control_state(self, envoy: str) -> str:
        return f"{self._envoy(envoy)}/control"

    def control_command(self, envoy: str, control: str) -> str:
        return f"{self._envoy(envoy)}/control/{sanitize_segment(control)}/set"

    def control_commands(self, envoy: str) -> str:
        """The subscription filter for every control command of one Envoy."""
        return f"{self._envoy(envoy)}/control/+/set"

    def device_config(self, device_id: str) -> str:
        return f"{self.discovery_prefix}/device/{sanitize_segment(device_id)}/config"

    def __repr__(self) -> str:
        return f"Topics(base={self.base!r}, discovery_prefix={self.discovery_prefix!r})"
