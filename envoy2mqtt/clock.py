"""Time as a parameter, so tests can run hours in milliseconds."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock tests advance by hand; `sleep` returns once `advance` has moved time past its deadline."""

    def __init__(self, start: float = 1_780_000_000.0) -> None:
        self._wall = start
        self._mono = 1000.0
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self._mono

    def time(self) -> float:
        return self._wall

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._mono + seconds, future))
        await future

    def jump(self, seconds: float) -> None:
        """Set the wall clock forward (or back, when negative) without time passing: NTP after a boot."""
        self._wall += seconds

    def advance(self, seconds: float) -> None:
        self._mono += seconds
        self._wall += seconds
        remaining = []
        for deadline, future in self._waiters:
            if deadline <= self._mono:
                if not future.done():
                    future.set_result(None)
            else:
                remaining.append((deadline, future))
        self._waiters = remaining


def iso_utc(epoch_seconds: float) -> str:
    """ISO 8601 UTC with a trailing Z, second precision, as the contract asks."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
