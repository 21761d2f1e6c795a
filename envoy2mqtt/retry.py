"""One retry policy for every place that waits after a failure: capped, jittered exponential backoff.

Used by the supervisor (task restarts), the poller (connect, and the breaker that skips ticks while an
Envoy keeps failing), the MQTT publisher (reconnects), the Envoy client (retries of one request) and the
token manager (401 episodes, cloud requests). Each builds a `RetryPolicy` with its own numbers; the
shape is the same everywhere:

    policy = RetryPolicy(initial=5.0, cap=300.0)
    while True:
        try:
            await connect()
        except SomeError:
            await clock.sleep(policy.failed())   # 5, 10, 20, ... 300 s, each times a random factor
            continue
        policy.succeeded()                        # the next failure starts from `initial` again
        break

For a connection that can drop right after it came up (a broker that accepts and then kicks us), call
`started()` when it comes up and `reset_after_stable(seconds)` when it drops: the backoff starts over
only when the connection stayed up at least that long, so a flapping peer is not hammered.

The delay of the n-th failure in a row (n from 0) is `min(cap, initial × factor**n)` times a factor drawn
uniformly from `jitter` (`(1.0, 1.0)`: no jitter, for waits the user is told about to the second).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .clock import SYSTEM_CLOCK, Clock

__all__ = ["RetryPolicy"]


class RetryPolicy:
    """Capped exponential backoff with jitter, counting failures in a row."""

    def __init__(
        self,
        *,
        initial: float,
        cap: float,
        factor: float = 2.0,
        jitter: tuple[float, float] = (0.8, 1.2),
        clock: Clock = SYSTEM_CLOCK,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if initial <= 0 or cap < initial or factor < 1:
            raise ValueError(f"retry policy needs 0 < initial <= cap and factor >= 1 (got {initial}, {cap})")
        low, high = jitter
        if not 0 < low <= high:
            raise ValueError(f"retry jitter must be 0 < low <= high (got {jitter})")
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self._clock = clock
        self._uniform = uniform
        self.failures = 0  # failures in a row since the last success (or reset)
        self._started_at: float | None = None

    def ceiling(self, failures: int | None = None) -> float:
        """The un-jittered delay after `failures` earlier failures in a row (default: the current count)."""
        n = self.failures if failures is None else max(0, failures)
        # factor ** n overflows for large n: stop growing once the cap is reached
        delay = self.initial
        for _ in range(n):
            delay *= self.factor
            if delay >= self.cap:
                return self.cap
        return min(delay, self.cap)

    def delay(self, failures: int | None = None) -> float:
        """`ceiling(failures)` times a jitter factor: what to wait now, without counting a failure."""
        low, high = self.jitter
        ceiling = self.ceiling(failures)
        return ceiling if low == high == 1.0 else ceiling * self._uniform(low, high)

    def failed(self) -> float:
        """Count one more failure; the delay to wait before the next attempt."""
        wait = self.delay()
        self.failures += 1
        return wait

    def succeeded(self) -> None:
        """The attempt worked: the next failure starts from `initial` again."""
        self.failures = 0
        self._started_at = None

    def started(self) -> None:
        """A connection (or a task) came up now; see `reset_after_stable`."""
        self._started_at = self._clock.monotonic()

    def uptime(self) -> float:
        """Seconds since `started()` (0 when not started)."""
        if self._started_at is None:
            return 0.0
        return self._clock.monotonic() - self._started_at

    def reset_after_stable(self, seconds: float) -> bool:
        """Start the backoff over if what `started()` stayed up at least `seconds`; True when it did.

        A peer that accepts and drops us right away keeps its growing backoff.
        """
        stable = self._started_at is not None and self.uptime() >= seconds
        if stable:
            self.failures = 0
        self._started_at = None
        return stable
