"""Shared pieces of the benches: a private mosquitto, an accelerated clock, process probes, configs.

Every bench prints ratios against a baseline measured in the same run; absolute times on a shared
2-core machine are noise, so each figure line also carries the load average at the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("metered-3phase-iq", "metered-1phase-acb", "legacy-unmetered")
PYTHON = sys.executable
BENCH = Path(__file__).resolve().parent

if str(ROOT) not in sys.path:  # `python bench/x.py` from anywhere
    sys.path.insert(0, str(ROOT))

# The private broker and the captures, shared with the tests (re-exported for the bench scripts).
from tests.support import Mosquitto as Mosquitto  # noqa: E402  (needs ROOT on the path)
from tests.support import capture_folders as capture_folders  # noqa: E402
from tests.support import free_port as free_port  # noqa: E402
from tests.support import wait_port as wait_port  # noqa: E402


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f} on {os.cpu_count()} cores"


class AcceleratedClock:
    """Monotonic and wall time run `speed` times faster than real time; sleeps are shorter to match."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._mono0 = time.monotonic()
        self._wall0 = time.time()

    def monotonic(self) -> float:
        return self._mono0 + (time.monotonic() - self._mono0) * self.speed

    def time(self) -> float:
        return self._wall0 + (time.monotonic() - self._mono0) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)


def proc_cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a live process (and its reaped children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def write_config(
    directory: Path,
    broker_port: int,
    sims: list[dict[str, Any]],
    *,
    system_interval: float = 60,
    device_interval: float = 300,
    level: str = "warning",
) -> Path:
    """A daemon config for the simulators described by `_simhost.py` (one [[envoy]] per simulator)."""
    first = sims[0]
    text = (
        f'state_dir = "{directory / "state"}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\nbase_topic = "envoy2mqtt"\n'
        f"[polling]\nsystem_interval = {system_interval}\ndevice_interval = {device_interval}\n"
        f'[enphase_cloud]\nlogin_url = "{first["login_url"]}"\ntoken_url = "{first["token_url"]}"\n'
        f'ca_file = "{first["ca_file"]}"\n'
        f'[logging]\nformat = "json"\nlevel = "{level}"\n'
    )
    for index, sim in enumerate(sims):
        text += f'[[envoy]]\nhost = "{sim["url"]}"\nname = "bench{index}"\n'
        if sim["token_auth"]:
            # the cloud of each simulator signs for its own Envoy: paste the token it issued
            text += f'token = "{sim["token"]}"\n'
    path = directory / "config.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


class SimHost:
    """`_simhost.py` in its own process: one or more simulators, described as JSON on its stdout."""

    def __init__(self, specs: list[dict[str, Any]], stamps: Path | None = None) -> None:
        self.specs = specs
        self.stamps = stamps
        self.proc: subprocess.Popen[str] | None = None
        self.sims: list[dict[str, Any]] = []

    def __enter__(self) -> SimHost:
        argv = [PYTHON, str(BENCH / "_simhost.py"), json.dumps(self.specs)]
        if self.stamps is not None:
            argv += ["--stamps", str(self.stamps)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
        assert self.proc.stdout is not None
        try:
            line = self.proc.stdout.readline()
            while line and not line.startswith("[{"):
                line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the simulator host died before it started")
            self.sims = json.loads(line)
        except BaseException:
            self.__exit__()  # never leave the simulator process behind
            raise
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def sim_requests(sim: dict[str, Any]) -> int:
    """Total requests one simulator has served so far (its /__sim/stats control endpoint)."""
    import ssl
    import urllib.request

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"{sim['url']}/__sim/stats", context=context, timeout=10) as response:
        stats = json.load(response)
    return int(sum(stats["requests"].values()))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Subscriber:
    """Everything the bridge publishes under ``envoy2mqtt/#``, with the time it arrived."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.events: list[tuple[float, str, bytes]] = []
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Subscriber:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port) as client:
            await client.subscribe("envoy2mqtt/#", qos=1)
            self.ready.set()
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                self.events.append((time.time(), str(message.topic), payload))
