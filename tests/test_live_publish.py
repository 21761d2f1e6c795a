"""The live topic's publishing path on a real broker: QoS 0, never retained, never replayed, first in line."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiomqtt

from envoy2mqtt.mqtt.publisher import Publisher
from tests.conftest import Mosquitto
from tests.test_mqtt_publisher import retained, running, settings_for, until, wait_connected


@dataclass
class Seen:
    messages: list[tuple[str, bytes, bool, int]] = field(default_factory=list)  # topic, payload, retain, qos

    def on(self, topic: str) -> list[tuple[str, bytes, bool, int]]:
        return [m for m in self.messages if m[0] == topic]


@contextlib.asynccontextmanager
async def subscriber(port: int, *filters: str) -> AsyncIterator[Seen]:
    seen = Seen()
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"live-{uuid.uuid4().hex[:8]}") as client:
        for topic_filter in filters:
            await client.subscribe(topic_filter, qos=1)

        async def pump() -> None:
            async for m in client.messages:
                payload = m.payload if isinstance(m.payload, bytes) else b""
                seen.messages.append((m.topic.value, payload, m.retain, m.qos))

        task = asyncio.create_task(pump())
        try:
            yield seen
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


async def test_live_values_are_qos0_not_retained_and_never_replayed(mosquitto: Mosquitto) -> None:
    settings, topics = settings_for(mosquitto.port)
    publisher = Publisher(settings, topics, initial_backoff=0.05, max_backoff=0.5)
    live, system = topics.live("E1"), topics.system("E1")
    async with subscriber(mosquitto.port, f"{topics.base}/#") as seen, running(publisher):
        await wait_connected(publisher)
        publisher.publish(system, {"production_power": 1})
        publisher.publish_transient(live, {"grid_power": 100})
        await until(lambda: len(seen.on(live)) == 1 and len(seen.on(system)) == 1)
        assert seen.on(live)[0] == (live, b'{"grid_power":100}', False, 0)
        assert live not in await retained(mosquitto.port, "#")

        # a republish (Home Assistant's birth, a reconnect) replays states, never a live value
        await publisher.republish_all()
        await until(lambda: len(seen.on(system)) == 2)
        assert len(seen.on(live)) == 1

        # while the broker is away a live value is dropped, not queued for later
        mosquitto.stop()
        await until(lambda: not publisher.connected.is_set())
        publisher.publish_transient(live, {"grid_power": 200})
        publisher.publish(system, {"production_power": 2})
        mosquitto.start()
        await wait_connected(publisher)
        await publisher.republish_all()
    # the subscriber's connection died with the broker: ask a fresh one what is kept
    kept = await retained(mosquitto.port, "#")
    assert live not in kept
    assert kept[system] == b'{"production_power":2}'


async def test_a_live_value_overtakes_the_queued_states(mosquitto: Mosquitto) -> None:
    settings, topics = settings_for(mosquitto.port)
    publisher = Publisher(settings, topics)
    live = topics.live("E1")
    async with subscriber(mosquitto.port, f"{topics.base}/#") as seen, running(publisher):
        await wait_connected(publisher)
        marker = topics.gateway("E1")
        for index in range(300):  # a device cycle of a large site, queued at once
            publisher.publish(topics.inverter("E1", str(index)), {"power": index})
        publisher.publish(marker, {"last": True})
        publisher.publish_transient(live, {"grid_power": 1})
        await until(lambda: seen.on(marker) != [])
        order = [m[0] for m in seen.messages]
        assert order.index(live) < order.index(marker) - 100
