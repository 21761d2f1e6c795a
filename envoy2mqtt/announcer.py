"""Everything one Envoy shows on MQTT: state topics, Home Assistant discovery, availability, vanished devices.

The poller hands the `Announcer` the payloads of each cycle's typed readings (after the counter guard);
the announcer publishes the states, announces a discovery config only when what it is built from
changed (payload shapes are cached: 300 unchanged inverter configs are not rebuilt every cycle,
bench/cpu.py), clears the retained topics of a device that disappeared from every source that lists
it, and publishes the gateway object (on change, else every `GATEWAY_REPUBLISH_INTERVAL`) and the
availability. It never reads the Envoy and keeps no health score (`poll_health.PollHealth` does).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from .clock import Clock
from .controls.catalog import ControlSpec
from .model import Payload
from .mqtt.discovery import (
    GatewayDescription,
    battery_config,
    controls_config,
    controls_config_id,
    device_id,
    gateway_config,
    inverter_config,
)
from .mqtt.publisher import Publisher
from .mqtt.topics import Topics

log = structlog.get_logger(__name__)

GATEWAY_REPUBLISH_INTERVAL = 300.0
# gateway keys that change every cycle without making the object new
_VOLATILE_GATEWAY_KEYS = ("last_poll_ok", "poll_duration")


def payload_shape(payload: Payload | None) -> tuple[Any, ...] | None:
    """What discovery reads from a state payload: its keys, its phase keys, the battery kind."""
    if payload is None:
        return None
    phases = payload.get("phases")
    phase_keys = (
        tuple((line, tuple(values)) for line, values in phases.items() if isinstance(values, dict))
        if isinstance(phases, dict)
        else None
    )
    return (tuple(payload), str(payload.get("kind")), phase_keys)


class Announcer:
    """Publishes one Envoy's states and discovery; remembers what it announced."""

    def __init__(
        self,
        publisher: Publisher,
        topics: Topics,
        clock: Clock,
        *,
        discovery: bool,
        system_interval: float,
        device_interval: float,
        label: str = "",
        live_interval: float | None = None,
    ) -> None:
        self.publisher = publisher
        self.topics = topics
        self.clock = clock
        self.discovery = discovery
        self.system_interval = system_interval
        self.device_interval = device_interval
        self.live_interval = live_interval  # the configured real-time interval (the live entities' expiry)
        self.log = log.bind(envoy=label)
        self.description: GatewayDescription | None = None
        # the last payloads published, per kind
        self.system_payload: Payload | None = None
        self.meter_payloads: dict[str, Payload] = {}
        self.inverter_payloads: dict[str, Payload] = {}
        self.battery_payloads: dict[str, Payload] = {}
        self.health_payload: Payload | None = None
        self.live_payload: Payload | None = None  # the last real-time value (never replayed, see live())
        self._gateway_published: Payload | None = None
        self._gateway_published_at = -math.inf
        self._announced_gateway: Payload | None = None
        self._gateway_shape: tuple[Any, ...] | None = None  # what the announced gateway config was built from
        self._announced_children: dict[str, Payload] = {}
        self._child_shapes: dict[str, tuple[Any, ...]] = {}  # what each announced config was built from
        self._controls: tuple[ControlSpec, ...] | None = None  # None: controls never decided
        self._announced_controls: Payload | None = None

    @property
    def serial(self) -> str | None:
        return self.description.serial if self.description is not None else None

    def describe(self, description: GatewayDescription) -> None:
        """The gateway device (serial, name, firmware...): set once /info answered, again on a firmware change."""
        if description != self.description:
            self.description = description
            self._announced_gateway = None
            self._announce_controls()  # the same device block as the gateway (a new firmware, a new name)
        self.log = self.log.bind(serial=description.serial)

    def controls(self, offered: Sequence[ControlSpec]) -> None:
        """The controls this Envoy offers (README "Controls"), announced on the gateway's device; none
        (controls off, or nothing the hardware and token allow): the entities of an earlier run go away."""
        self._controls = tuple(offered)
        self._announce_controls()

    # ------------------------------------------------------------------ states

    def system(self, system: Payload, meters: dict[str, Payload], gateway: Payload) -> None:
        """One system cycle's payloads: the system object, one per CT; the gateway's discovery follows."""
        serial = self._serial()
        self.system_payload = system
        self.publisher.publish(self.topics.system(serial), system)
        for ct_type, payload in meters.items():
            self.publisher.publish(self.topics.meter(serial, ct_type), payload)
        self.meter_payloads = meters
        self._announce_gateway(gateway)

    def devices(
        self,
        inverters: dict[str, Payload],
        batteries: dict[str, Payload],
        *,
        inverters_complete: bool,
        batteries_complete: bool,
    ) -> None:
        """One device cycle's payloads. `*_complete`: every source listing such devices was read, so a
        device missing from it is gone (one failed endpoint must not wipe Home Assistant's devices)."""
        serial = self._serial()
        for device, payload in inverters.items():
            self.publisher.publish(self.topics.inverter(serial, device), payload)
        for device, payload in batteries.items():
            self.publisher.publish(self.topics.battery(serial, device), payload)
        if inverters_complete:
            self._forget_gone(self.inverter_payloads, inverters, self.topics.inverter)
        else:
            inverters = {**self.inverter_payloads, **inverters}
        if batteries_complete:
            self._forget_gone(self.battery_payloads, batteries, self.topics.battery)
        else:
            batteries = {**self.battery_payloads, **batteries}
        self.inverter_payloads = inverters
        self.battery_payloads = batteries
        self._announce_children()

    def health(self, health: Payload, gateway: Payload) -> None:
        """Fleet health after a device cycle (`<base>/<envoy>/health`); its entities are the gateway's."""
        self.health_payload = health
        self.publisher.publish(self.topics.health(self._serial()), health)
        self._announce_gateway(gateway)

    def live(self, payload: Payload) -> None:
        """One real-time value: QoS 0, not retained, never replayed (a value seconds old is worthless)."""
        self.publisher.publish_transient(self.topics.live(self._serial()), payload)
        self.live_payload = payload

    def refresh_gateway(self, gateway: Payload) -> None:
        """Announce the gateway device again if what it is built from changed (the live entities' keys)."""
        self._announce_gateway(gateway)

    def gateway(self, payload: Payload, *, force: bool = False) -> None:
        """The gateway object: on change, on `force`, else every GATEWAY_REPUBLISH_INTERVAL."""
        if self.description is None:
            return
        now = self.clock.monotonic()
        due = now - self._gateway_published_at >= GATEWAY_REPUBLISH_INTERVAL
        previous = self._gateway_published
        changed = previous is None or _stable(payload) != _stable(previous)
        if changed or due or force:
            self.publisher.publish(self.topics.gateway(self.description.serial), payload)
            self._gateway_published = payload
            self._gateway_published_at = now

    def availability(self, available: bool) -> bool:
        """Publish `online` / `offline`; False (nothing published) while the serial is unknown."""
        if self.description is None:
            return False
        self.publisher.publish(
            self.topics.envoy_availability(self.description.serial), "online" if available else "offline"
        )
        self.log.info("envoy_availability", available=available)
        return True

    # ------------------------------------------------------------------ discovery

    def _serial(self) -> str:
        if self.description is None:
            raise RuntimeError("Announcer.describe() first")
        return self.description.serial

    def _forget_gone(
        self, before: dict[str, Payload], after: dict[str, Payload], topic_of: Callable[[str, str], str]
    ) -> None:
        """A device that disappeared: clear its retained config and state topics."""
        serial = self._serial()
        for device in set(before) - set(after):
            self.log.info("device_removed", action="clearing its topics", device=device)
            self.publisher.clear(topic_of(serial, device))
            self._child_shapes.pop(device, None)
            if device in self._announced_children:
                del self._announced_children[device]
                if self.discovery:
                    self.publisher.clear(self.topics.device_config(device_id(device)))

    def _announce_gateway(self, gateway: Payload) -> None:
        description = self.description
        if not self.discovery or description is None:
            return
        # Rebuilt only when what it is built from changed, not every system cycle (bench/cpu.py).
        shape = (
            description,
            payload_shape(self.system_payload),
            payload_shape(gateway),
            tuple((ct, payload_shape(p)) for ct, p in sorted(self.meter_payloads.items())),
            payload_shape(self.health_payload),
            payload_shape(self.live_payload),
        )
        if shape == self._gateway_shape and self._announced_gateway is not None:
            return
        self._gateway_shape = shape
        config = gateway_config(
            self.topics,
            description,
            self.system_payload,
            gateway,
            self.meter_payloads,
            self.system_interval,
            self.device_interval,
            health=self.health_payload,
            live=self.live_payload,
            live_interval=self.live_interval,
        )
        if config != self._announced_gateway:
            self.publisher.set_config(self.topics.device_config(device_id(description.serial)), config)
            self._announced_gateway = config

    def _announce_children(self) -> None:
        description = self.description
        if not self.discovery or description is None:
            return
        for builder, payloads in (
            (inverter_config, self.inverter_payloads),
            (battery_config, self.battery_payloads),
        ):
            for device, payload in payloads.items():
                # A child's config depends only on the gateway description and on which keys its payload
                # has: skip rebuilding 300 unchanged configs every device cycle (bench/cpu.py).
                shape = (description, payload_shape(payload))
                if self._child_shapes.get(device) == shape and device in self._announced_children:
                    continue
                config = builder(self.topics, description, device, payload, self.device_interval)
                if self._announced_children.get(device) != config:
                    self.publisher.set_config(self.topics.device_config(device_id(device)), config)
                    self._announced_children[device] = config
                self._child_shapes[device] = shape

    def _announce_controls(self) -> None:
        description = self.description
        if self._controls is None or description is None:
            return
        topic = self.topics.device_config(controls_config_id(description.serial))
        if not self._controls:
            if not self.discovery:
                return
            self.publisher.clear(topic)
            self._announced_controls = None
            return
        config = controls_config(self.topics, description, self._controls)
        if config != self._announced_controls:
            self.publisher.set_config(topic, config)
            self._announced_controls = config


def _stable(payload: Payload) -> Payload:
    return {k: v for k, v in payload.items() if k not in _VOLATILE_GATEWAY_KEYS}
