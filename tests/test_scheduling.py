"""Fixed-rate cadences, task supervision and the poller's circuit breaker, on a controllable clock."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import pytest

from envoy2mqtt.clock import ManualClock
from envoy2mqtt.poller import run_at_fixed_rate
from envoy2mqtt.supervisor import supervise


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
