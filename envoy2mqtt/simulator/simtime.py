"""Simulated time: frozen for static sites, running `time_scale` times faster than the clock in live mode."""

from __future__ import annotations

from envoy2mqtt.clock import Clock


class SimulatedTime:
    def __init__(self, clock: Clock, live: bool, time_scale: float = 1.0, start: float | None = None) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.clock = clock
        self.live = live
        self.time_scale = time_scale
        self._real_start = clock.time()
        self.start = self._real_start if start is None else start

    def now(self) -> float:
        """Simulated epoch seconds; always `start` when not live."""
        if not self.live:
            return self.start
        return self.start + (self.clock.time() - self._real_start) * self.time_scale

    def elapsed(self) -> float:
        return self.now() - self.start
