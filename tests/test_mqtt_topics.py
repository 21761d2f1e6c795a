"""Topic layout of the MQTT contract, and sanitizing of hardware-provided segments."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from envoy2mqtt.mqtt.topics import Topics, sanitize_segment

SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


def test_contract_topics() -> None:
    t = Topics("envoy2mqtt", "homeassistant")
    assert t.bridge_availability == "envoy2mqtt/bridge/availability"
    assert t.ha_status == "homeassistant/status"
    assert t.envoy_availability("122302045041") == "envoy2mqtt/122302045041/availability"
    assert t.system("122302045041") == "envoy2mqtt/122302045041/system"
    assert t.gateway("122302045041") == "envoy2mqtt/122302045041/gateway"
    assert t.inverter("122302045041", "482211050001") == "envoy2mqtt/122302045041/inverter/482211050001"
    assert t.battery("122302045041", "122227000001") == "envoy2mqtt/122302045041/battery/122227000001"
    assert t.meter("122302045041", "net-consumption") == "envoy2mqtt/122302045041/meter/net-consumption"
    assert t.device_config("envoy2mqtt_122302045041") == "homeassistant/device/envoy2mqtt_122302045041/config"


def test_multi_level_roots() -> None:
    t = Topics("home/solar", "ha/discovery")
    assert t.system("1") == "home/solar/1/system"
    assert t.device_config("x") == "ha/discovery/device/x/config"


def test_unsafe_segments_are_replaced() -> None:
    t = Topics("b", "p")
    assert t.inverter("e", "12/3+4#5 6") == "b/e/inverter/12_3_4_5_6"
    assert t.system("a/b") == "b/a_b/system"
    assert t.device_config("envoy2mqtt_x+y") == "p/device/envoy2mqtt_x_y/config"
    assert sanitize_segment("") == "_"


@given(st.text())
def test_sanitized_segment_is_one_safe_level(value: str) -> None:
    cleaned = sanitize_segment(value)
    assert SEGMENT.fullmatch(cleaned)
    if SEGMENT.fullmatch(value):
        assert cleaned == value
    t = Topics("base", "prefix")
    levels = t.battery(value, value).split("/")
    assert len(levels) == 4
