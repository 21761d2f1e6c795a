"""How often the real-time reader may ask: an interval that backs off when the Envoy struggles.

- Slow: the 90th percentile of the response times since the last change (at most the last minute)
  above half the current interval, or one response longer than the interval itself.
- Failed: any request that failed.
Either doubles the interval, up to the cap (60 s). After a calm period without either, and only
when the recent responses would be fast enough at half the interval, it halves again, down to the
configured interval. A burst of failures in a row pauses reads altogether (`FailureBurst`).

Pure: the caller passes the monotonic time; tests run hours in microseconds.
"""

from __future__ import annotations

import math
from collections import deque

P90_WINDOW = 60.0
MIN_SAMPLES = 3
BURST_FAILURES = 5


def p90(values: list[float]) -> float:
    """The nearest-rank 90th percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


class AdaptiveInterval:
    def __init__(self, base: float, *, cap: float, calm_period: float, start: float) -> None:
        if not 0 < base <= cap:
            raise ValueError("the base interval must be positive and at most the cap")
        self.base = base
        self.cap = cap
        self.calm_period = calm_period
        self.interval = base
        self._samples: deque[tuple[float, float]] = deque()  # (when, seconds) since the last change
        self._last_trouble = start
        self._last_change = start

    def _recent(self, now: float) -> list[float]:
        horizon = max(now - P90_WINDOW, self._last_change)
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()
        return [seconds for _, seconds in self._samples]

    def _set(self, interval: float, now: float) -> float | None:
        interval = min(self.cap, max(self.base, interval))
        self._samples.clear()
        self._last_change = now
        if interval == self.interval:
            return None
        self.interval = interval
        return interval

    def failed(self, now: float) -> float | None:
        """A request failed: back off. The new interval when it changed, else None."""
        self._last_trouble = now
        return self._set(self.interval * 2, now)

    def succeeded(self, now: float, seconds: float) -> float | None:
        """A request answered after `seconds`. The new interval when it changed, else None."""
        self._samples.append((now, seconds))
        recent = self._recent(now)
        slow = seconds > self.interval or (len(recent) >= MIN_SAMPLES and p90(recent) > self.interval / 2)
        if slow:
            self._last_trouble = now
            return self._set(self.interval * 2, now)
        calm = now - self._last_trouble >= self.calm_period and now - self._last_change >= self.calm_period
        if calm and self.interval > self.base:
            smaller = max(self.base, self.interval / 2)
            if p90(recent) <= smaller / 2:
                return self._set(smaller, now)
        return None


class FailureBurst:
    """Counts failures in a row; a burst pauses the real-time reads for `pause` seconds."""

    def __init__(self, pause: float, burst: int = BURST_FAILURES) -> None:
        self.pause = pause
        self.burst = burst
        self.in_a_row = 0

    def failed(self) -> bool:
        """True when this failure completes a burst (the counter starts again)."""
        self.in_a_row += 1
        if self.in_a_row >= self.burst:
            self.in_a_row = 0
            return True
        return False

    def succeeded(self) -> None:
        self.in_a_row = 0
