"""Fixed-rate cadences, task supervision and the poller's circuit breaker, on a controllable clock."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path

import pytest

from envoy2mqtt.clock import ManualClock
from envoy2mqtt.config import Settings
from envoy2mqtt.poller import run_at_fixed_rate
from envoy2mqtt.supervisor import Daemon, supervise


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_fixed_rate_ticks_on_the_grid_and_skips_overrun_ticks() -> None:
    clock = ManualClock()
    start = clock.monotonic()
    ticks: list[float] = []
    slow_once = {"pending": True}

    async def tick() -> None:
        ticks.append(clock.monotonic() - start)
        if len(ticks) == 3 and slow_once["pending"]:
            slow_once["pending"] = False
            await clock.sleep(25)  # this poll takes 2.5 intervals

    task = asyncio.create_task(run_at_fixed_rate(10, tick, clock))
    for _ in range(100):
        await _settle()
        clock.advance(1)
    await _settle()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # 0, 10, 20 (slow until 45), then the next grid point 50, 60, ... : 30 and 40 are skipped, never bunched
    assert ticks[:6] == [0, 10, 20, 50, 60, 70]
    assert all(t % 10 == 0 for t in ticks)


async def test_supervise_restarts_a_crashing_task_with_growing_backoff() -> None:
    clock = ManualClock()
    calls: list[float] = []

    async def flaky() -> None:
        calls.append(clock.monotonic())
        raise RuntimeError("boom")

    task = asyncio.create_task(supervise("flaky", flaky, clock))
    for _ in range(200):
        await _settle()
        clock.advance(0.5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert len(calls) >= 4
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps[0] < gaps[-1]  # backoff grows
    assert all(g >= 0.5 for g in gaps)  # never a tight loop


async def test_supervise_lets_fatal_errors_through() -> None:
    class Fatal(Exception):
        pass

    async def fatal() -> None:
        raise Fatal

    with pytest.raises(Fatal):
        await supervise("fatal", fatal, ManualClock(), fatal=(Fatal,))


async def test_a_daemon_spreads_its_envoys_cadences_across_the_interval(tmp_path: Path) -> None:
    # Four Envoys in one daemon: each polls right away, then its system ticks sit a quarter interval
    # apart (plus at most 1 s of jitter at 10 s) instead of all in the same second.
    settings = Settings(
        state_dir=tmp_path,
        polling={"system_interval": 10, "device_interval": 60},
        envoy=[{"host": f"192.0.2.{n}", "serial": f"12200000000{n}"} for n in range(1, 5)],
    )
    clock = ManualClock()
    daemon = Daemon(settings, clock=clock)
    assert [p.stagger for p in daemon.pollers] == [0.0, 0.25, 0.5, 0.75]
    start = clock.monotonic()
    ticks: dict[int, list[float]] = {}

    for index, poller in enumerate(daemon.pollers):

        async def connected() -> None:
            return None

        async def system_tick(index: int = index) -> None:
            ticks.setdefault(index, []).append(clock.monotonic() - start)

        async def device_tick() -> None:
            return None

        poller._connect_with_backoff = connected  # type: ignore[method-assign]
        poller._system_tick = system_tick  # type: ignore[method-assign]
        poller._device_tick = device_tick  # type: ignore[method-assign]

    tasks = [asyncio.create_task(p.run()) for p in daemon.pollers]
    for _ in range(400):
        await _settle()
        clock.advance(0.1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for index, times in ticks.items():
        assert times[0] == 0  # the first poll right away, whatever the stagger
        second = times[1]
        expected = 10 * (1 + index / 4)
        assert expected <= second <= expected + 1.0 + 0.2, (index, times)
        assert all(abs(b - a - 10) < 0.15 for a, b in itertools.pairwise(times[1:]))
    offsets = sorted(times[2] % 10 for times in ticks.values())
    assert min(b - a for a, b in itertools.pairwise(offsets)) > 1.0  # spread, not bunched
