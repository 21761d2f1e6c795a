"""Helpers for end-to-end tests: the daemon as a real subprocess, an MQTT watcher, generated configs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from envoy2mqtt.simulator import Simulator
from tests.support import die_with_parent

ROOT = Path(__file__).resolve().parent.parent


def envoy_table(sim: Simulator, name: str = "", **extra: str) -> str:
    lines = ["[[envoy]]", f'host = "{sim.url}"']
    if name:
        lines.append(f'name = "{name}"')
    if _major(sim.firmware) >= 7:
        lines.append(f'enlighten_username = "{sim.enlighten_username}"')
        lines.append(f'enlighten_password = "{sim.enlighten_password}"')
    for key, value in extra.items():
        lines.append(f'{key} = "{value}"')
    return "\n".join(lines) + "\n"


def _major(firmware: str) -> int:
    digits = ""
    for char in firmware.lstrip("RDMrdm"):
        if not char.isdigit():
            break
        digits += char
    return int(digits or 0)


def write_config(
    directory: Path,
    broker_port: int,
    envoys: str,
    *,
    sim: Simulator | None = None,
    system_interval: float = 10,
    device_interval: float = 60,
    base_topic: str = "envoy2mqtt",
    extra: str = "",
) -> Path:
    cloud = ""
    if sim is not None:
        cloud = (
            "[enphase_cloud]\n"
            f'login_url = "{sim.login_url}"\n'
            f'token_url = "{sim.token_url}"\n'
            f'ca_file = "{sim.ca_file}"\n'
        )
    text = (
        f'state_dir = "{directory / "state"}"\n'
        f'[mqtt]\nport = {broker_port}\nhost = "127.0.0.1"\nbase_topic = "{base_topic}"\n'
        f"[polling]\nsystem_interval = {system_interval}\ndevice_interval = {device_interval}\n"
        f"{cloud}"
        '[logging]\nformat = "json"\nlevel = "info"\n'
        f"{extra}\n{envoys}"
    )
    path = directory / "config.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


class Daemon:
    """`python -m envoy2mqtt run` as a real subprocess, its output in a file."""

    def __init__(self, config: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "envoy2mqtt",
            "run",
            "--config",
            str(self.config),
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            cwd=str(ROOT),
            preexec_fn=die_with_parent,
        )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def terminate(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took)."""
        assert self.proc is not None
        started = time.monotonic()
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        self._log.close()
        return code, time.monotonic() - started

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Event:
    at: float
    topic: str
    payload: bytes
    retain: bool


@dataclass
class Watcher:
    """Subscribes to everything and keeps the latest payload per topic plus a history."""

    port: int
    latest: dict[str, bytes] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> Watcher:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.connected.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port) as client:
                    await client.subscribe("#", qos=1)
                    self.connected.set()
                    async for message in client.messages:
                        payload = message.payload if isinstance(message.payload, bytes) else b""
                        topic = str(message.topic)
                        if payload:
                            self.latest[topic] = payload
                        else:
                            self.latest.pop(topic, None)
                        self.events.append(Event(time.monotonic(), topic, payload, message.retain))
                        self._changed.set()
            except aiomqtt.MqttError:
                self.connected.clear()
                await asyncio.sleep(0.2)

    def json(self, topic: str) -> Any:
        return json.loads(self.latest[topic])

    async def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}; topics: {sorted(self.latest)}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))

    def since(self, moment: float, prefix: str = "") -> list[Event]:
        return [e for e in self.events if e.at >= moment and e.topic.startswith(prefix)]
