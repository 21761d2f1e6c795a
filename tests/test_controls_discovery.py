"""Discovery of the controls: exact payloads (snapshot), the strict validator, templates as HA renders them."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from envoy2mqtt.announcer import Announcer
from envoy2mqtt.clock import SYSTEM_CLOCK
from envoy2mqtt.controls.catalog import FIXED_CONTROLS, RESERVE_SOC, STORAGE_MODE, dry_contact
from envoy2mqtt.model import Payload
from envoy2mqtt.mqtt.discovery import GatewayDescription, controls_config, controls_config_id
from envoy2mqtt.mqtt.publisher import Publisher
from envoy2mqtt.mqtt.topics import Topics
from envoy2mqtt.mqtt.validator import validate_device_discovery
from tests.conftest import Mosquitto

TOPICS = Topics("envoy2mqtt", "homeassistant")
GW = GatewayDescription(
    serial="122302045041",
    name="Envoy 122302045041",
    firmware="D8.2.4345",
    part_number="800-00654-r08",
    configuration_url="https://192.168.1.50",
)
TOPIC = TOPICS.device_config(controls_config_id(GW.serial))


def every_control() -> Payload:
    return controls_config(TOPICS, GW, [*FIXED_CONTROLS, dry_contact("NC1"), dry_contact("NO1")])


def test_snapshot(snapshot: SnapshotAssertion) -> None:
    doc = every_control()
    assert TOPIC == "homeassistant/device/envoy2mqtt_122302045041_controls/config"
    assert validate_device_discovery(TOPIC, doc) == []
    assert doc == snapshot.use_extension(JSONSnapshotExtension)


def test_controls_share_the_gateway_device_and_availability() -> None:
    doc = every_control()
    assert doc["device"]["identifiers"] == ["envoy2mqtt_122302045041"]
    assert doc["availability"] == [
        {"topic": "envoy2mqtt/bridge/availability"},
        {"topic": "envoy2mqtt/122302045041/availability"},
    ]
    for component in doc["components"].values():
        assert component["optimistic"] is False
        assert component["retain"] is False
        assert component["state_topic"] == "envoy2mqtt/122302045041/control"
        assert component["command_topic"].startswith("envoy2mqtt/122302045041/control/")
        assert component["command_topic"].endswith("/set")
    platforms = {key: c["platform"] for key, c in doc["components"].items()}
    assert platforms == {
        "control_storage_mode": "select",
        "control_reserve_soc": "number",
        "control_charge_from_grid": "switch",
        "control_grid_relay": "switch",
        "control_production": "switch",
        "control_export_limit": "number",
        "control_dry_contact_nc1": "switch",
        "control_dry_contact_no1": "switch",
    }


def test_templates_render_like_home_assistant() -> None:
    jinja2 = pytest.importorskip("jinja2")
    environment = jinja2.Environment(autoescape=False)
    components = every_control()["components"]

    def render(key: str, state: Payload) -> str:
        template = components[f"control_{key}"]["value_template"]
        return str(environment.from_string(template).render(value_json=state))

    assert render("storage_mode", {"storage_mode": "economy"}) == "economy"
    assert render("storage_mode", {"storage_mode": None}) == "None"
    assert render("reserve_soc", {"reserve_soc": 20}) == "20"
    assert render("production", {"production": "OFF"}) == "OFF"
    assert render("export_limit", {"export_limit": 2000}) == "2000"
    assert render("export_limit", {"export_limit": "OFF"}) == "None"  # no limit: unknown on a number


Mutation = Callable[[Payload], None]


def _component(key: str, change: Callable[[dict[str, Any]], None]) -> Mutation:
    def mutate(doc: Payload) -> None:
        change(doc["components"][key])

    return mutate


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (_component("control_storage_mode", lambda c: c.pop("command_topic")), "command_topic is required"),
        (_component("control_storage_mode", lambda c: c.update(options=[])), "a select needs options"),
        (_component("control_storage_mode", lambda c: c.update(options=["a", "a"])), "distinct"),
        (_component("control_reserve_soc", lambda c: c.update(min=100)), "must be below max"),
        (_component("control_reserve_soc", lambda c: c.update(step=0)), "step 0 must be positive"),
        (_component("control_reserve_soc", lambda c: c.update(mode="dial")), "not auto, box or slider"),
        (
            _component("control_export_limit", lambda c: c.update(unit_of_measurement="%")),
            "not valid together",
        ),
        (
            _component("control_production", lambda c: c.update(device_class="power")),
            "not a switch device class",
        ),
        (
            _component("control_production", lambda c: c.update(expire_after=60)),
            "expire_after is not a switch",
        ),
        (_component("control_production", lambda c: c.update(optimistic="no")), "optimistic must be true"),
        (
            _component("control_production", lambda c: c.pop("state_topic")),
            "without state_topic the entity is optimistic",
        ),
    ],
)
def test_validator_rejects(mutation: Mutation, expected: str) -> None:
    doc = copy.deepcopy(every_control())
    mutation(doc)
    problems = validate_device_discovery(TOPIC, doc)
    assert any(expected in p for p in problems), problems


async def test_the_announcer_follows_the_gateway_and_takes_controls_down(mosquitto: Mosquitto) -> None:
    """Through a real broker: announced on the gateway's device, announced again when the gateway's
    firmware changes (the same device block as the gateway's own config), cleared when none is offered."""
    from tests.test_mqtt_publisher import retained, running, settings_for, wait_connected

    settings, topics = settings_for(mosquitto.port)
    publisher = Publisher(settings, topics)
    announcer = Announcer(
        publisher, topics, SYSTEM_CLOCK, discovery=True, system_interval=60, device_interval=300
    )
    topic = topics.device_config(controls_config_id(GW.serial))
    async with running(publisher):
        await wait_connected(publisher)
        announcer.controls([STORAGE_MODE, RESERVE_SOC])  # before the gateway is described: waits for it
        assert (await retained(mosquitto.port, f"{settings.discovery_prefix}/#")) == {}
        announcer.describe(GW)
        await publisher.republish_all()
        kept = await retained(mosquitto.port, f"{settings.discovery_prefix}/#")
        doc = json.loads(kept[topic])
        assert validate_device_discovery(topic, doc) == []
        assert set(doc["components"]) == {"control_storage_mode", "control_reserve_soc"}
        assert doc["device"]["sw_version"] == "D8.2.4345"

        announcer.describe(dataclasses.replace(GW, firmware="D8.3.5167"))
        await publisher.republish_all()
        kept = await retained(mosquitto.port, f"{settings.discovery_prefix}/#")
        assert json.loads(kept[topic])["device"]["sw_version"] == "D8.3.5167"

        announcer.controls(())
        await publisher.republish_all()
        assert topic not in await retained(mosquitto.port, f"{settings.discovery_prefix}/#")
