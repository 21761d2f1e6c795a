"""`envoy2mqtt demo`: the simulator in live mode, an MQTT broker, the bridge, and a live summary.

Runs with nothing else on the machine once the `demo` extra is installed (`pip install 'envoy2mqtt[demo]'`,
which ./scripts/demo does): the broker is amqtt, embedded, unless `--mqtt-url` points at a real one, and
the simulator needs cryptography. The daemon needs neither. Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiomqtt

from .config import CloudSettings, EnvoySettings, MqttSettings, PollingSettings, Settings
from .errors import ConfigError

DEMO_EXTRA_HINT = "pip install 'envoy2mqtt[demo]' (./scripts/demo installs it in .venv for you)"


def require_demo_extra(*, embedded_broker: bool) -> None:
    """The demo's simulator (cryptography) and embedded broker (amqtt) are the optional `demo` extra."""
    wanted = ["cryptography", *(["amqtt"] if embedded_broker else [])]
    missing = []
    for name in wanted:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            missing.append(name)
    if missing:
        raise ConfigError(
            f"`envoy2mqtt demo` needs the demo extra; missing: {', '.join(missing)}. Install it with "
            f"{DEMO_EXTRA_HINT}"
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """amqtt on 127.0.0.1, anonymous, for the demo only."""

    def __init__(self) -> None:
        self.port = _free_port()
        self._broker: Any = None

    async def start(self) -> None:
        import logging

        from amqtt.broker import Broker

        logging.getLogger("amqtt").setLevel(logging.ERROR)
        logging.getLogger("transitions").setLevel(logging.ERROR)
        self._broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            }
        )
        await self._broker.start()

    async def stop(self) -> None:
        if self._broker is not None:
            with contextlib.suppress(Exception):
                await self._broker.shutdown()


class Summary:
    """Collects what is published and prints a compact, readable view."""

    def __init__(self, base: str, prefix: str, out: TextIO) -> None:
        self.base = base
        self.prefix = prefix
        self.out = out
        self.states: dict[str, Any] = {}
        self.configs: dict[str, Any] = {}

    def feed(self, topic: str, payload: bytes) -> None:
        try:
            value: Any = json.loads(payload) if payload else None
        except ValueError:
            value = payload.decode(errors="replace")
        if topic.startswith(self.prefix + "/"):
            if value is None:
                self.configs.pop(topic, None)
            else:
                self.configs[topic] = value
        else:
            self.states[topic] = value

    def render(self) -> str:
        lines = ["", "── envoy2mqtt demo: what is published " + "─" * 30]
        bridge = self.states.get(f"{self.base}/bridge/availability", "?")
        lines.append(f"bridge: {bridge}")
        for topic, value in sorted(self.states.items()):
            parts = topic.split("/")
            if len(parts) == 3 and parts[2] == "system" and isinstance(value, dict):
                envoy = parts[1]
                avail = self.states.get(f"{self.base}/{envoy}/availability", "?")
                lines.append(f"Envoy {envoy} ({avail})  system:")
                keys = [k for k in value if k != "phases"]
                for key in keys:
                    lines.append(f"    {key:<34} {value[key]}")
        inverters = sum(1 for t in self.states if "/inverter/" in t)
        batteries = sum(1 for t in self.states if "/battery/" in t)
        meters = sorted(t.rsplit("/", 1)[1] for t in self.states if "/meter/" in t)
        entities = sum(len(c.get("components", c.get("cmps", {}))) for c in self.configs.values())
        lines.append(
            f"devices: {inverters} microinverters, {batteries} batteries; CT meters: {', '.join(meters) or 'none'}"
        )
        lines.append(f"Home Assistant discovery: {len(self.configs)} devices, {entities} entities")
        lines.append(f"topics with a retained state: {len(self.states)}   (Ctrl-C to stop)")
        return "\n".join(lines)


async def run_demo(
    *,
    mqtt_url: str | None = None,
    profile: str = "metered-3phase-iq",
    interval: float = 10.0,
    duration: float | None = None,
    out: TextIO = sys.stdout,
    print_every: float = 5.0,
) -> int:
    from .logging import setup_logging
    from .simulator.server import Simulator, SimulatorConfig
    from .supervisor import Daemon

    setup_logging("warning", "console", stream=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    broker: EmbeddedBroker | None = None
    if mqtt_url:
        parts = urlsplit(mqtt_url if "://" in mqtt_url else f"mqtt://{mqtt_url}")
        mqtt_host, mqtt_port = parts.hostname or "localhost", parts.port or 1883
        mqtt_user, mqtt_password = parts.username or "", parts.password or ""
    else:
        broker = EmbeddedBroker()
        await broker.start()
        mqtt_host, mqtt_port, mqtt_user, mqtt_password = "127.0.0.1", broker.port, "", ""

    with tempfile.TemporaryDirectory(prefix="envoy2mqtt-demo-") as state_dir:
        async with Simulator(SimulatorConfig(profile=profile, live=True, time_scale=60.0)) as sim:
            settings = Settings(
                state_dir=Path(state_dir),
                mqtt=MqttSettings(
                    host=mqtt_host,
                    port=mqtt_port,
                    username=mqtt_user,
                    password=mqtt_password,
                    protocol="3.1.1" if broker is not None else "auto",  # amqtt has no MQTT 5
                ),
                polling=PollingSettings(system_interval=max(interval, 10.0), device_interval=60.0),
                enphase_cloud=CloudSettings(
                    login_url=sim.login_url, token_url=sim.token_url, ca_file=sim.ca_file
                ),
                envoy=[
                    EnvoySettings(
                        host=sim.url,
                        name="Demo Envoy",
                        enlighten_username=sim.enlighten_username,
                        enlighten_password=sim.enlighten_password,
                    )
                ],
            )
            print(
                f"envoy2mqtt demo: simulated Envoy ({profile}) at {sim.url}, "
                f"MQTT broker at {mqtt_host}:{mqtt_port}{' (embedded)' if broker else ''}",
                file=out,
            )
            daemon = Daemon(settings)
            summary = Summary(settings.mqtt.base_topic, settings.mqtt.discovery_prefix, out)
            daemon_task = asyncio.create_task(daemon.run())
            watch_task = asyncio.create_task(_watch(settings, summary, out, print_every))
            waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait()), daemon_task]
            if duration is not None:
                waiters.append(asyncio.ensure_future(asyncio.sleep(duration)))
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            print("\nstopping…", file=out)
            daemon.request_stop()
            code = 0
            with contextlib.suppress(Exception):
                code = await asyncio.wait_for(daemon_task, 10)
            watch_task.cancel()
            with contextlib.suppress(BaseException):
                await watch_task
            for waiter in waiters:
                waiter.cancel()
    if broker is not None:
        await broker.stop()
    print("demo stopped", file=out)
    return code


async def _watch(settings: Settings, summary: Summary, out: TextIO, every: float) -> None:
    render: Callable[[], str] = summary.render
    while True:
        try:
            async with aiomqtt.Client(
                settings.mqtt.host,
                settings.mqtt.port,
                username=settings.mqtt.username or None,
                password=settings.mqtt.password.get_secret_value() or None,
            ) as client:
                await client.subscribe(f"{settings.mqtt.base_topic}/#")
                await client.subscribe(f"{settings.mqtt.discovery_prefix}/device/+/config")
                next_print = asyncio.get_running_loop().time() + 2.0
                async for message in client.messages:
                    payload = (
                        message.payload
                        if isinstance(message.payload, bytes)
                        else str(message.payload).encode()
                    )
                    summary.feed(str(message.topic), payload)
                    now = asyncio.get_running_loop().time()
                    if now >= next_print:
                        print(render(), file=out, flush=True)
                        next_print = now + every
        except aiomqtt.MqttError:
            await asyncio.sleep(1)
