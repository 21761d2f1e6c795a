"""The real-time reader on an injected clock against the simulator over real HTTP: it pauses in the
maintenance window and after a burst of failures, backs off, and resumes by itself."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from envoy2mqtt.clock import SYSTEM_CLOCK, ManualClock
from envoy2mqtt.config import CloudSettings, EnvoySettings, RealtimeSettings, TokenSettings
from envoy2mqtt.envoy import endpoints
from envoy2mqtt.envoy.client import EnvoyClient
from envoy2mqtt.metrics import Metrics
from envoy2mqtt.model import Payload
from envoy2mqtt.readers import probe
from envoy2mqtt.realtime.reader import RealtimeReader
from envoy2mqtt.realtime.source import probe_source
from envoy2mqtt.simulator import Simulator, SimulatorConfig

# ManualClock's wall clock starts at 2026-05-28 20:26:40 UTC
WINDOW_AROUND_START = "20:20-20:30"


@dataclass
class Rig:
    sim: Simulator
    clock: ManualClock
    reader: RealtimeReader
    published: list[Payload] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)

    def reads(self) -> int:
        return self.sim.requests.get(endpoints.METERS_READINGS, 0)


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def quiet(seconds: float = 0.3) -> None:
    """Real time for anything in flight to happen (nothing should)."""
    await asyncio.sleep(seconds)


@pytest.fixture
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    options: dict[str, Any] = getattr(request, "param", {})
    clock = ManualClock()
    async with Simulator(SimulatorConfig(profile="metered-1phase-acb", live=True)) as sim:
        settings = EnvoySettings(host=sim.url, token=sim.issue_token())
        async with EnvoyClient(settings, CloudSettings(), TokenSettings(), tmp_path, clock) as client:
            info = await client.connect()
            features = (await probe(client)).features
            realtime = RealtimeSettings(enabled=True, interval=1, source="meters", **options)
            choice = await probe_source(client, "meters", info, features, None)
            rig = Rig(sim, clock, None)  # type: ignore[arg-type]
            rig.reader = RealtimeReader(
                label="test",
                client=client,
                features=features,
                source=choice,
                settings=realtime,
                publish=rig.published.append,
                clock=clock,
                zone=lambda: UTC,
                on_change=lambda: rig.changes.append(rig.reader.state),
                metrics=Metrics(),
                metrics_label="test",
            )
            task = asyncio.create_task(rig.reader.run())
            try:
                yield rig
            finally:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task


@pytest.mark.parametrize("rig", [{"maintenance_window": WINDOW_AROUND_START}], indirect=True)
async def test_no_reads_in_the_maintenance_window_then_resumes_by_itself(rig: Rig) -> None:
    await until(lambda: rig.reader.state == "paused-maintenance", "the pause")
    rig.clock.advance(60)
    await quiet()
    assert rig.reads() == 0
    rig.clock.advance(240)  # 20:31:40: the window is over
    await until(lambda: len(rig.published) >= 1, "the first live value after the window")
    assert rig.reader.state == "running"
    for _ in range(3):
        count = len(rig.published)
        rig.clock.advance(1)
        await until(lambda c=count: len(rig.published) > c, "the next live value")
    assert rig.reads() == len(rig.published)


@pytest.mark.parametrize("rig", [{"maintenance_window": "", "failure_pause": 300}], indirect=True)
async def test_a_burst_of_failures_pauses_then_resumes(rig: Rig) -> None:
    await until(lambda: len(rig.published) >= 1, "the first live value")
    rig.sim.faults.server_error(count=1000)
    for _ in range(5):
        before = rig.reader.failures
        rig.clock.advance(rig.reader.interval)
        await until(lambda b=before: rig.reader.failures > b, "a failed read")
    assert rig.reader.state == "paused-failures"
    assert rig.reader.interval == 32  # doubled by each failure: 2, 4, 8, 16, 32
    assert rig.reader.gateway_fields() == {
        "realtime_source": "meters",
        "realtime_interval": 32,
        "realtime_state": "paused-failures",
    }
    failed_reads = rig.reads()
    rig.clock.advance(200)  # inside the pause: nothing is sent
    await quiet()
    assert rig.reads() == failed_reads
    rig.sim.faults.clear()
    rig.clock.advance(120)  # the pause is over
    await until(lambda: rig.reader.state == "running", "the resume")
    await until(lambda: rig.reads() > failed_reads, "a read after the pause")
    assert "paused-failures" in rig.changes
    metric = rig.reader.metrics
    assert metric is not None
    # calm for longer than calm_period (120 s) by now: the first good answer halved it already
    assert rig.reader.interval == 16
    assert metric.realtime_interval.labels(envoy="test").value == 16
    assert 'envoy2mqtt_realtime_interval_seconds{envoy="test"} 16' in metric.render().decode()


@pytest.mark.parametrize("rig", [{"maintenance_window": "", "calm_period": 10}], indirect=True)
async def test_a_slow_envoy_backs_the_interval_off_and_calm_brings_it_back(rig: Rig) -> None:
    await until(lambda: len(rig.published) >= 1, "the first live value")
    rig.sim.faults.slow(0.6, count=4)  # p90 above half of the 1 s interval
    for _ in range(4):
        count = len(rig.published)
        rig.clock.advance(rig.reader.interval)
        await until(lambda c=count: len(rig.published) > c, "a slow live value")
    assert rig.reader.interval >= 2
    backed_off = rig.reader.interval
    # fast answers for longer than the calm period: halves back to 1 s, one step per calm period
    for _ in range(80):
        count = len(rig.published)
        rig.clock.advance(rig.reader.interval)
        await until(lambda c=count: len(rig.published) > c, "a fast live value")
        if rig.reader.interval == 1:
            break
    assert backed_off > rig.reader.interval == 1


async def test_a_cycle_request_waits_behind_at_most_one_real_time_request(tmp_path: Path) -> None:
    """Real clock, slow answers, the stream lapsing every read (a POST and a GET per tick): between two
    requests of a system-like cycle the Envoy serves at most one real-time request."""
    config = SimulatorConfig(profile="metered-3phase-iq", live=True, stream_expiry=0.2)
    async with Simulator(config) as sim:
        settings = EnvoySettings(host=sim.url, token=sim.issue_token())
        async with EnvoyClient(settings, CloudSettings(), TokenSettings(), tmp_path) as client:
            info = await client.connect()
            probed = await probe(client)
            features = probed.features
            inventory = probed.bodies.get(endpoints.ENSEMBLE_INVENTORY)
            choice = await probe_source(client, "livedata", info, features, inventory)
            assert choice.source == "livedata", choice.reason
            reader = RealtimeReader(
                label="test",
                client=client,
                features=features,
                source=choice,
                settings=RealtimeSettings(enabled=True, interval=1, maintenance_window=""),
                publish=lambda payload: None,
                clock=SYSTEM_CLOCK,
            )
            sim.faults.slow(0.15)  # every request
            task = asyncio.create_task(reader.run())
            cycle = [endpoints.PRODUCTION_JSON, endpoints.METERS_READINGS, endpoints.ENSEMBLE_POWER] * 4
            try:
                await asyncio.sleep(0.5)
                first = len(sim.recent)  # the probe's requests came before
                for path in cycle:
                    await client.get_json(path)
            finally:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
        realtime_paths = ("/ivp/livedata/status", "/ivp/livedata/stream")
        order = [what.split(" ", 1)[1] for _, what in list(sim.recent)[first:]]
        positions = [i for i, path in enumerate(order) if path in cycle]
        between = [
            sum(1 for path in order[a + 1 : b] if path in realtime_paths)
            for a, b in itertools.pairwise(positions)
        ]
        assert len(positions) == len(cycle)
        assert max(between) <= 1, between
        assert sim.requests["POST /ivp/livedata/stream"] >= 2  # the tick with two requests did happen
