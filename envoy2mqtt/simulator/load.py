"""How a real Envoy suffers under too many requests: slower answers, then 503s for a while.

Reports (docs/envoy-writes-and-realtime.md §4): polling every 10 s or a second client polling in
parallel made Envoys answer slowly, then with 503s that cleared after about five minutes. The model:
the request rate over the last `window` seconds; above `limit` requests a second every answer is
delayed, more the further the rate is above the limit; once the rate has stayed above the limit for
`overload_after` seconds the Envoy answers 503 to everything for `busy_for` seconds, then starts afresh.
Off (`limit` None) unless configured or switched on with `POST /__sim/faults {"fault": "overload"}`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

MAX_DELAY = 10.0


@dataclass(frozen=True, slots=True)
class LoadSettings:
    limit: float  # requests per second the Envoy takes without slowing down
    window: float = 10.0  # seconds the rate is measured over
    overload_after: float = 10.0  # seconds above the limit before the 503s start
    busy_for: float = 30.0  # seconds of 503s
    delay_factor: float = 0.5  # seconds of delay at twice the limit, growing with the square


@dataclass(frozen=True, slots=True)
class LoadDecision:
    delay: float = 0.0
    busy: bool = False  # answer 503


class LoadModel:
    """Fed one `admit(now)` per request (monotonic seconds); answers how to treat it."""

    def __init__(self, settings: LoadSettings | None = None) -> None:
        self.settings = settings
        self._arrivals: deque[float] = deque()
        self._over_since: float | None = None
        self._busy_until = 0.0
        self.busy_periods = 0  # how often the Envoy went into its 503 state
        self.requests_while_overloaded = 0  # requests that arrived while slow or busy

    def configure(self, settings: LoadSettings | None) -> None:
        self.settings = settings
        self._arrivals.clear()
        self._over_since = None
        self._busy_until = 0.0

    def rate(self, now: float) -> float:
        if self.settings is None:
            return 0.0
        window = self.settings.window
        while self._arrivals and self._arrivals[0] <= now - window:
            self._arrivals.popleft()
        return len(self._arrivals) / window

    def overloaded(self, now: float) -> bool:
        """Slow or busy right now."""
        return self.settings is not None and (now < self._busy_until or self._over_since is not None)

    def admit(self, now: float) -> LoadDecision:
        settings = self.settings
        if settings is None:
            return LoadDecision()
        self._arrivals.append(now)
        rate = self.rate(now)
        if now < self._busy_until:
            self.requests_while_overloaded += 1
            return LoadDecision(busy=True)
        if rate <= settings.limit:
            self._over_since = None
            return LoadDecision()
        self.requests_while_overloaded += 1
        if self._over_since is None:
            self._over_since = now
        if now - self._over_since >= settings.overload_after:
            self._busy_until = now + settings.busy_for
            self._over_since = None
            self.busy_periods += 1
            return LoadDecision(busy=True)
        return LoadDecision(delay=min(MAX_DELAY, settings.delay_factor * (rate / settings.limit) ** 2))

    def snapshot(self, now: float) -> dict[str, object]:
        settings = self.settings
        return {
            "limit": settings.limit if settings else None,
            "rate": round(self.rate(now), 3),
            "overloaded": self.overloaded(now),
            "busy": now < self._busy_until,
            "busy_periods": self.busy_periods,
            "requests_while_overloaded": self.requests_while_overloaded,
        }
