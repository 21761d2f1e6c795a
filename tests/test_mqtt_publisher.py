"""The publisher against a real mosquitto: Last Will, order after connect, reconnects, births, clears."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from envoy2mqtt.clock import ManualClock
from envoy2mqtt.config import MqttSettings
from envoy2mqtt.mqtt.publisher import Publisher, encode_payload
from envoy2mqtt.mqtt.topics import Topics
from tests.conftest import Mosquitto

WAIT = 15.0  # a safety net for a broken publisher, not a performance claim


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool


@dataclass
class Recorder:
    """An aiomqtt subscriber that records everything it sees, in order."""

    client: aiomqtt.Client
    messages: list[Received] = field(default_factory=list)

    def topics(self) -> list[str]:
        return [m.topic for m in self.messages]

    def payloads(self, topic: str) -> list[bytes]:
        return [m.payload for m in self.messages if m.topic == topic]

    async def wait_for(self, predicate: Callable[[], bool], what: str = "") -> None:
        async with asyncio.timeout(WAIT):
            while not predicate():
                await asyncio.sleep(0.01)

    async def wait_payload(self, topic: str, payload: bytes) -> None:
        await self.wait_for(lambda: payload in self.payloads(topic))


@contextlib.asynccontextmanager
async def recorder(port: int, *filters: str, **client_kw: Any) -> AsyncIterator[Recorder]:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"rec-{uuid.uuid4().hex[:8]}", **client_kw) as c:
        rec = Recorder(c)
        for f in filters:
            await c.subscribe(f, qos=1)

        async def pump() -> None:
            async for m in c.messages:
                payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                rec.messages.append(Received(m.topic.value, payload, m.retain))

        task = asyncio.create_task(pump())
        try:
            yield rec
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


async def retained(port: int, topic_filter: str, **client_kw: Any) -> dict[str, bytes]:
    """What the broker keeps retained under ``topic_filter`` (a fresh subscriber's view)."""
    sentinel = f"sentinel/{uuid.uuid4().hex}"
    async with recorder(port, topic_filter, sentinel, **client_kw) as rec:
        await rec.client.publish(sentinel, b"x", qos=1)
        await rec.wait_payload(sentinel, b"x")
        return {m.topic: m.payload for m in rec.messages if m.retain}


def settings_for(port: int, **overrides: Any) -> tuple[MqttSettings, Topics]:
    tag = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "base_topic": f"e2m-{tag}",
        "discovery_prefix": f"ha-{tag}",
    }
    values.update(overrides)
    settings = MqttSettings(**values)
    return settings, Topics(settings.base_topic, settings.discovery_prefix)


@contextlib.asynccontextmanager
async def running(publisher: Publisher) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(publisher.run())
    try:
        yield task
    finally:
        if not task.done():
            await publisher.shutdown([])
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def wait_connected(publisher: Publisher) -> None:
    async with asyncio.timeout(WAIT):
        await publisher.connected.wait()


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not predicate():
            await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- tests


async def test_online_retained_after_connect(mosquitto: Mosquitto) -> None:
    settings, topics = settings_for(mosquitto.port)
    publisher = Publisher(settings, topics)
    async with running(publisher):
        await wait_connected(publisher)
        kept = await retained(mosquitto.port, f"{settings.base_topic}/#")
    assert kept == {topics.bridge_availability: b"online"}


async def test_order_after_connect(mosquitto: Mosquitto) -> None:
    settings, topics = settings_for(mosquitto.port)
    events: list[str] = []

    async def on_connect() -> None:
        events.append("on_connect")
        publisher.publish(topics.envoy_availability("E1"), "online")
        publisher.set_config(topics.device_config("new"), {"from": "on_connect"})

    publisher = Publisher(settings, topics, on_connect=on_connect)
    configs = [topics.device_config(f"d{i}") for i in range(3)]
    states = [topics.inverter("E1", f"S{i}") for i in range(3)]
    for i, t in enumerate(configs):
        publisher.set_config(t, {"n": i})
    for i, t in enumerate(states):
        publisher.publish(t, {"power": i})

    async with recorder(mosquitto.port, f"{settings.base_topic}/#", f"{settings.discovery_prefix}/#") as rec:
        async with running(publisher):
            await rec.wait_for(lambda: all(t in rec.topics() for t in states))
        seen = rec.topics()

    first = {t: seen.index(t) for t in dict.fromkeys(seen)}
    assert seen[0] == topics.bridge_availability
    assert events == ["on_connect"]
    assert first[topics.envoy_availability("E1")] < min(first[t] for t in configs)
    assert max(first[t] for t in configs) < min(first[t] for t in states)
    assert first[topics.device_config("new")] < min(first[t] for t in states)
    assert json.loads(rec.payloads(states[2])[-1]) == {"power": 2}


async def test_a_device_cycle_burst_arrives_complete_and_in_order(mosquitto: Mosquitto) -> None:
    # A 300-inverter device cycle lands in the outbox at once: every state reaches the broker, in order.
    settings, topics = settings_for(mosquitto.port)
    publisher = Publisher(settings, topics)
    states = [topics.inverter("E1", f"S{i:03d}") for i in range(300)]
    async with recorder(mosquitto.port, f"{settings.base_topic}/E1/#") as rec, running(publisher):
        await wait_connected(publisher)
        sent_before = publisher.messages_published
        for i, t in enumerate(states):
            publisher.publish(t, {"power": i})
        await rec.wait_for(lambda: len(rec.messages) >= len(states))
        await until(lambda: not publisher._outbox)
        assert publisher.messages_published - sent_before == len(states)
    assert rec.topics() == states
    assert [json.loads(m.payload)["power"] for m in rec.messages] == list(range(len(states)))


async def test_last_will_on_crash(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """A killed bridge process leaves `offline` retained through the Last Will."""
    settings, topics = settings_for(mosquitto.port)
    script = tmp_path / "bridge.py"
    script.write_text(
        "import asyncio, sys\n"
        "from envoy2mqtt.config import MqttSettings\n"
        "from envoy2mqtt.mqtt.publisher import Publisher\n"
        "from envoy2mqtt.mqtt.topics import Topics\n"
        "async def main():\n"
        f"    s = MqttSettings(host='127.0.0.1', port={mosquitto.port}, base_topic={settings.base_topic!r},"
        f" discovery_prefix={settings.discovery_prefix!r})\n"
        "    p = Publisher(s, Topics(s.base_topic, s.discovery_prefix))\n"
        "    await p.run()\n"
        "asyncio.run(main())\n"
    )
    async with recorder(mosquitto.port, topics.bridge_availability) as rec:
        proc = subprocess.Popen([sys.executable, str(script)], cwd=Path(__file__).parent.parent)
        try:
            await rec.wait_payload(topics.bridge_availability, b"online")
            os.kill(proc.pid, signal.SIGKILL)
            await rec.wait_payload(topics.bridge_availability, b"offline")
        finally:
            proc.kill()
            proc.wait(10)
    kept = await retained(mosquitto.port, topics.bridge_availability)
    assert kept == {topics.bridge_availability: b"offline"}


async def test_only_latest_value_after_outage(mosquitto: Mosquitto) -> None:
    """Values published while the broker is down collapse to the latest one per topic."""
    mosquitto.stop()
    settings, topics = settings_for(mosquitto.port)
    stack = contextlib.AsyncExitStack()
    watchers: list[Recorder] = []

    async def on_connect() -> None:
        # subscribed before the replay starts: every replayed message is seen live
        watchers.append(await stack.enter_async_context(recorder(mosquitto.port, "#")))

    publisher = Publisher(settings, topics, on_connect=on_connect, initial_backoff=0.05, max_backoff=0.2)
    topic = topics.system("E1")
    async with stack, running(publisher):
        for value in (1, 2, 3):
            publisher.publish(topic, {"production_power": value})
        assert not publisher.connected.is_set()
        mosquitto.start()
        await wait_connected(publisher)
        await until(lambda: bool(watchers))
        rec = watchers[0]
        await rec.wait_payload(topic, b'{"production_power":3}')
        publisher.publish(topic, {"production_power": 4})
        await rec.wait_payload(topic, b'{"production_power":4}')
        assert rec.payloads(topic) == [b'{"production_power":3}', b'{"production_power":4}']
        assert publisher.reconnects == 0


async def test_broker_restart_republishes_everything(mosquitto: Mosquitto) -> None:
    settings, topics = settings_for(mosquitto.port)
    connects = 0

    async def on_connect() -> None:
        nonlocal connects
        connects += 1
        publisher.publish(topics.envoy_availability("E1"), "online")

    publisher = Publisher(settings, topics, on_connect=on_connect, initial_backoff=0.05, max_backoff=0.5)
    config = topics.device_config("envoy2mqtt_E1")
    state = topics.system("E1")
    publisher.set_config(config, {"device": {"name": "x"}})
    publisher.publish(state, {"production_power": 1})
    async with running(publisher):
        await wait_connected(publisher)
        await publisher.republish_all()
        mosquitto.stop()  # persistence is off: every retained message is gone
        await until(lambda: not publisher.connected.is_set())
        publisher.publish(state, {"production_power": 2})  # while the broker is down
        mosquitto.start()
        await wait_connected(publisher)
        await publisher.republish_all()
        kept = await retained(mosquitto.port, "#")
    assert publisher.reconnects == 1
    assert connects == 2
    assert kept == {
        topics.bridge_availability: b"online",
        topics.envoy_availability("E1"): b"online",
        config: b'{"device":{"name":"x"}}',
        state: b'{"production_power":2}',
    }


async def test_home_assistant_birth_republishes_once(mosquitto: Mosquitto) -> None:
    settings, topics = settings_for(mosquitto.port)
    clock = ManualClock()
    publisher = Publisher(settings, topics, clock=clock)
    config = topics.device_config("envoy2mqtt_E1")
    state = topics.system("E1")
    publisher.set_config(config, {"components": {}})
    publisher.publish(state, {"production_power": 5})
    async with (
        recorder(mosquitto.port, config, state) as rec,
        running(publisher),
    ):
        await rec.wait_for(lambda: len(rec.payloads(state)) == 1)
        for _ in range(3):
            await rec.client.publish(topics.ha_status, b"online", qos=1)
        await rec.client.publish(topics.ha_status, b"offline", qos=1)
        await until(lambda: publisher.ha_births == 3)
        assert publisher.ha_republishes == 0  # waits for the random delay first
        clock.advance(5.0)
        await until(lambda: len(rec.payloads(state)) == 2)
        # a marker published after the republish arrives after it: nothing else was queued
        publisher.publish(topics.gateway("E1"), {"marker": 1})
        await until(lambda: publisher.messages_published == 1 + 2 + 2 + 1)
        assert publisher.ha_republishes == 1
        assert len(rec.payloads(config)) == 2


async def test_discovery_disabled_never_publishes_configs(mosquitto: Mosquitto) -> None:
    settings, topics = settings_for(mosquitto.port, discovery=False)
    clock = ManualClock()
    publisher = Publisher(settings, topics, clock=clock)
    publisher.set_config(topics.device_config("envoy2mqtt_E1"), {"components": {}})
    publisher.publish(topics.system("E1"), {"production_power": 5})
    async with recorder(mosquitto.port, f"{settings.discovery_prefix}/#") as rec, running(publisher):
        await wait_connected(publisher)
        publisher.set_config(topics.device_config("envoy2mqtt_E2"), {"components": {}})
        await rec.client.publish(topics.ha_status, b"online", qos=1)
        await rec.wait_payload(topics.ha_status, b"online")  # the broker has routed the birth
        clock.advance(10.0)
        await publisher.republish_all()
        kept = await retained(mosquitto.port, "#")
    assert publisher.ha_births == 0
    assert [m.topic for m in rec.messages] == [topics.ha_status]
    assert set(kept) == {topics.bridge_availability, topics.system("E1")}


async def test_clear_forgets_retained_config_and_state(mosquitto: Mosquitto) -> None:
    settings, topics = settings_for(mosquitto.port)
    publisher = Publisher(settings, topics)
    config = topics.device_config("envoy2mqtt_S1")
    state = topics.inverter("E1", "S1")
    keep = topics.inverter("E1", "S2")
    async with recorder(mosquitto.port, "#") as rec, running(publisher):
        await wait_connected(publisher)
        publisher.set_config(config, {"components": {}})
        publisher.publish(state, {"power": 1})
        publisher.publish(keep, {"power": 2})
        await publisher.republish_all()
        before = await retained(mosquitto.port, "#")
        assert {config, state, keep} <= set(before)
        publisher.clear(config)
        publisher.clear(state)
        await rec.wait_for(lambda: b"" in rec.payloads(config) and b"" in rec.payloads(state))
        after = await retained(mosquitto.port, "#")
        assert config not in after
        assert state not in after
        assert after[keep] == b'{"power":2}'
        # forgotten: a republish does not bring them back
        await publisher.republish_all()
        assert set(await retained(mosquitto.port, "#")) == {topics.bridge_availability, keep}


async def test_clear_while_offline_reaches_broker(mosquitto: Mosquitto) -> None:
    settings, topics = settings_for(mosquitto.port)
    state = topics.inverter("E1", "S1")
    # a stale retained state from an earlier run of the bridge
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
        await c.publish(state, b'{"power":1}', qos=1, retain=True)
    publisher = Publisher(settings, topics)
    publisher.clear(state)  # before the first connect
    async with running(publisher):
        await wait_connected(publisher)
        await publisher.republish_all()
        kept = await retained(mosquitto.port, "#")
    assert kept == {topics.bridge_availability: b"online"}


async def test_shutdown_publishes_offline_and_disconnects(mosquitto: Mosquitto) -> None:
    settings, topics = settings_for(mosquitto.port)
    publisher = Publisher(settings, topics)
    envoy = topics.envoy_availability("E1")
    publisher.publish(envoy, "online")
    task = asyncio.create_task(publisher.run())
    await wait_connected(publisher)
    await publisher.republish_all()
    await publisher.shutdown([envoy])
    async with asyncio.timeout(WAIT):
        await task  # run() returns after a shutdown
    assert not publisher.connected.is_set()
    kept = await retained(mosquitto.port, "#")
    assert kept == {topics.bridge_availability: b"offline", envoy: b"offline"}
    publisher.publish(envoy, "online")  # ignored once shut down
    assert publisher.messages_published == 4


async def test_state_retain_and_qos_follow_settings(mosquitto: Mosquitto) -> None:
    settings, topics = settings_for(mosquitto.port, retain=False, qos=0)
    publisher = Publisher(settings, topics)
    async with recorder(mosquitto.port, "#") as rec, running(publisher):
        await wait_connected(publisher)
        publisher.publish(topics.system("E1"), {"production_power": 1})
        publisher.publish(topics.gateway("E1"), {"firmware": "D8"}, retain=True)
        await rec.wait_for(lambda: topics.gateway("E1") in rec.topics())
        kept = await retained(mosquitto.port, "#")
    assert set(kept) == {topics.bridge_availability, topics.gateway("E1")}


def test_payload_encoding() -> None:
    settings, topics = settings_for(1883)
    publisher = Publisher(settings, topics)
    with pytest.raises(ValueError):
        publisher.publish("t", {"x": float("nan")})
    with pytest.raises(ValueError):
        publisher.publish("t", {"x": float("inf")})

    assert (
        encode_payload({"a": 1, "b": [True, None], "t": "°C"}) == '{"a":1,"b":[true,null],"t":"°C"}'.encode()
    )
    assert encode_payload("online") == b"online"
    assert encode_payload(b"\x00") == b"\x00"


def test_backoff_is_capped_and_jittered() -> None:
    settings, topics = settings_for(1883)
    publisher = Publisher(settings, topics, initial_backoff=1.0)
    delays = [publisher.backoff.failed() for _ in range(12)]
    assert all(0.5 <= d <= 60.0 for d in delays)
    assert max(delays[8:]) <= 60.0
    assert min(delays[8:]) >= 30.0  # capped: jitter stays within [cap/2, cap]
    assert len({round(publisher.backoff.delay(10), 6) for _ in range(20)}) > 1  # jittered
    publisher.backoff.succeeded()
    assert publisher.backoff.failed() <= 1.0  # a connection starts the backoff over


async def test_on_connect_failure_does_not_break_the_connection(mosquitto: Mosquitto) -> None:
    settings, topics = settings_for(mosquitto.port)

    async def broken() -> None:
        raise RuntimeError("supervisor bug")

    publisher = Publisher(settings, topics, on_connect=broken)
    publisher.publish(topics.system("E1"), {"production_power": 1})
    async with running(publisher):
        await wait_connected(publisher)
        await publisher.republish_all()
        kept = await retained(mosquitto.port, "#")
    assert topics.system("E1") in kept


async def test_cancelled_run_leaves_offline_retained(mosquitto: Mosquitto) -> None:
    """A clean DISCONNECT suppresses the Last Will, so a cancelled run() says `offline` itself."""
    settings, topics = settings_for(mosquitto.port)
    publisher = Publisher(settings, topics)
    task = asyncio.create_task(publisher.run())
    await wait_connected(publisher)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not publisher.connected.is_set()
    kept = await retained(mosquitto.port, "#")
    assert kept == {topics.bridge_availability: b"offline"}


# --------------------------------------------------------------------------- subscriptions


async def test_subscriptions_deliver_with_retain_flag_and_survive_a_broker_restart(
    mosquitto: Mosquitto,
) -> None:
    settings, topics = settings_for(mosquitto.port)
    publisher = Publisher(settings, topics, initial_backoff=0.05, max_backoff=0.2)
    seen: list[tuple[str, bytes, bool]] = []
    command = f"{settings.base_topic}/cmd/+/set"
    publisher.subscribe(command, lambda m: seen.append((m.topic, m.payload, m.retain)))
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="seed") as seed:
        # retained before the bridge connects: delivered, flagged retained
        await seed.publish(f"{settings.base_topic}/cmd/a/set", b"stale", qos=1, retain=True)
    async with running(publisher):
        await wait_connected(publisher)
        await until(lambda: (f"{settings.base_topic}/cmd/a/set", b"stale", True) in seen)
        async with recorder(mosquitto.port) as rec:
            await rec.client.publish(f"{settings.base_topic}/cmd/b/set", b"live", qos=1)
            await rec.client.publish(f"{settings.base_topic}/other", b"ignored", qos=1)
        await until(lambda: (f"{settings.base_topic}/cmd/b/set", b"live", False) in seen)

        mosquitto.stop()  # persistence is off: the subscription must be made again by us
        mosquitto.start()
        await until(lambda: publisher.reconnects >= 1 and publisher.connected.is_set())
        async with recorder(mosquitto.port) as rec:
            await rec.client.publish(f"{settings.base_topic}/cmd/c/set", b"again", qos=1)
        await until(lambda: (f"{settings.base_topic}/cmd/c/set", b"again", False) in seen)
    assert all(topic != f"{settings.base_topic}/other" for topic, _, _ in seen)


async def test_subscribe_while_connected_and_a_failing_handler_keeps_the_connection(
    mosquitto: Mosquitto,
) -> None:
    settings, topics = settings_for(mosquitto.port)
    publisher = Publisher(settings, topics)
    seen: list[bytes] = []

    def broken(_message: object) -> None:
        raise ValueError("handler bug")

    async with running(publisher) as task:
        await wait_connected(publisher)
        publisher.subscribe(f"{settings.base_topic}/broken", broken)
        publisher.subscribe(f"{settings.base_topic}/ok", lambda m: seen.append(m.payload))
        await asyncio.sleep(0.2)  # the SUBSCRIBE goes out from a task of its own
        async with recorder(mosquitto.port) as rec:
            await rec.client.publish(f"{settings.base_topic}/broken", b"1", qos=1)
            await rec.client.publish(f"{settings.base_topic}/ok", b"2", qos=1)
        await until(lambda: seen == [b"2"])
        assert not task.done()
        assert publisher.reconnects == 0
        publisher.unsubscribe(f"{settings.base_topic}/ok")
        await asyncio.sleep(0.2)
        async with recorder(mosquitto.port) as rec:
            await rec.client.publish(f"{settings.base_topic}/ok", b"3", qos=1)
            await rec.client.publish(f"{settings.base_topic}/broken", b"4", qos=1)
        await asyncio.sleep(0.3)
    assert seen == [b"2"]


def test_a_dead_socket_is_a_warning_but_a_callback_error_stays_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """paho's "failed to receive on socket" duplicates the publisher's own "mqtt_connection_lost"."""
    import logging

    paho = logging.getLogger("mqtt")
    with caplog.at_level(logging.DEBUG, logger="mqtt"):
        paho.error("failed to receive on socket: %s", ConnectionResetError(104, "Connection reset by peer"))
        paho.error("timeout on socket: %s", TimeoutError())
        paho.error("Caught exception in on_connect: %s", ValueError("bug"))
    assert [r.levelname for r in caplog.records if r.name == "mqtt"] == ["WARNING", "WARNING", "ERROR"]
