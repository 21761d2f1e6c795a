"""Topics, the publisher (aiomqtt, Last Will, reconnect) and Home Assistant discovery."""

from __future__ import annotations

from envoy2mqtt.mqtt.discovery import (
    GatewayDescription,
    battery_config,
    device_id,
    gateway_config,
    inverter_config,
)
from envoy2mqtt.mqtt.publisher import Publisher
from envoy2mqtt.mqtt.topics import Topics

__all__ = [
    "GatewayDescription",
    "Publisher",
    "Topics",
    "battery_config",
    "device_id",
    "gateway_config",
    "inverter_config",
]
