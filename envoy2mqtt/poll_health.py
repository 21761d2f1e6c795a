"""One Envoy's polling health: failures in a row, the breaker, `last_error`, availability, readiness.

`PollHealth` only keeps score; it neither reads nor publishes. The poller tells it how each cycle ended
(`succeeded(cadence)`, `failed(exc, cadence)`, `counter_corrected(reason)`); it answers whether the
breaker is open (skip this tick), whether the Envoy is available (changes go to `on_availability`, which
the poller wires to the announcer) and whether the daemon is ready (`ready()`, for /readyz). Each
distinct failure is logged once while the Envoy keeps failing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import structlog

from .clock import Clock
from .config import PollingSettings
from .errors import short_error
from .metrics import Metrics, error_kind
from .retry import RetryPolicy

log = structlog.get_logger(__name__)

BREAKER_CAP = 300.0  # while the Envoy keeps failing, try at most this rarely (its ~23:00 reset lasts minutes)
_NUMBERS = re.compile(r"\d+")


class PollHealth:
    """Scores one Envoy's polls; decides availability, the breaker and readiness."""

    def __init__(
        self,
        polling: PollingSettings,
        clock: Clock,
        *,
        label: str,
        metrics: Metrics | None = None,
        on_availability: Callable[[bool], bool] | None = None,
    ) -> None:
        self.polling = polling
        self.clock = clock
        self.label = label  # the serial once known (metrics label), else the configured label
        self.metrics = metrics
        self.on_availability = on_availability
        self.log = log.bind(envoy=label)
        self.failures = 0  # failed polls in a row
        self.available: bool | None = None
        self.last_error: str | None = None
        self.last_poll_ok: float | None = None  # wall clock
        self.last_success_monotonic: dict[str, float] = {}
        self.poll_duration: float | None = None
        self._error_is_correction = False
        self._last_failure_at: float | None = None
        self._failure_problems: set[str] = set()  # failures logged since the last success
        self._slow = False  # the last system poll took longer than the cadence (said once)
        # Ticks skipped while the Envoy keeps failing: one system interval, doubling up to BREAKER_CAP
        # (exact: the ticks themselves already carry the cadence's jitter).
        self._breaker = RetryPolicy(
            initial=polling.system_interval,
            cap=max(BREAKER_CAP, polling.system_interval),
            jitter=(1.0, 1.0),
            clock=clock,
        )

    @property
    def failing(self) -> bool:
        """As many failures in a row as make the Envoy unavailable."""
        return self.failures >= self.polling.failures_before_offline

    def breaker_open(self) -> bool:
        """After `failures_before_offline` failures in a row, back off: skip ticks, doubling the wait.

        A dead or rebooting Envoy then sees a few requests per hour instead of a burst every tick, and the
        log gets no line per tick; the first tick after the wait is the half-open trial.
        """
        excess = self.failures - self.polling.failures_before_offline
        if excess < 0 or self._last_failure_at is None:
            return False
        return self.clock.monotonic() - self._last_failure_at < self._breaker.ceiling(excess)

    def succeeded(self, cadence: str) -> None:
        self.failures = 0
        self._failure_problems.clear()
        self.last_poll_ok = self.clock.time()
        self.last_success_monotonic[cadence] = self.clock.monotonic()
        if self.last_error and not self._error_is_correction:
            self.last_error = None
        self._set_available(True)
        if self.metrics is not None:
            self.metrics.last_successful_poll.labels(envoy=self.label, cadence=cadence).set(self.last_poll_ok)

    def failed(self, exc: BaseException, cadence: str) -> None:
        self.failures += 1
        self._last_failure_at = self.clock.monotonic()
        self._error_is_correction = False
        reason = short_error(exc)
        # Once per distinct problem while the Envoy keeps failing; numbers (a countdown such as "next
        # attempt in 63 s", a port) do not make a problem new, else a 401 storm logs every poll.
        problem = _NUMBERS.sub("#", reason)
        if problem not in self._failure_problems:
            self._failure_problems.add(problem)
            self.log.warning("poll_failed", cadence=cadence, kind=error_kind(exc), reason=reason)
        self.last_error = reason
        if self.metrics is not None:
            self.metrics.record_error(self.label, error_kind(exc))
        if self.failing:
            self._set_available(False)

    def system_poll_took(self, seconds: float) -> None:
        """Record a system poll's duration; say once when it outgrows the cadence (ticks are then
        skipped and readings come late: a slow Envoy, not a dead one, so availability stays online)."""
        self.poll_duration = round(seconds, 3)
        interval = self.polling.system_interval
        if seconds > interval and self.failures == 0 and not self._slow:  # slow answers, not failures
            self._slow = True
            self.log.warning(
                "envoy_slow",
                reason="a system poll took longer than the cadence",
                effect="polls are skipped and readings come late",
                poll_duration=round(seconds, 1),
                system_interval=interval,
                skipped_ticks=math.floor(seconds / interval),
            )
        elif self._slow and seconds <= interval / 2:
            self._slow = False
            self.log.info("envoy_in_time_again", poll_duration=round(seconds, 1))

    def counter_corrected(self, reason: str) -> None:
        """A counter guard correction: shown as `last_error` until the next failure replaces it."""
        self.last_error = reason[:200]
        self._error_is_correction = True

    def _set_available(self, available: bool) -> None:
        if available == self.available:
            return
        # the announcer can publish it only once the serial is known: until then nothing changes
        if self.on_availability is None or self.on_availability(available):
            self.available = available

    def ready(self) -> tuple[bool, str]:
        """Polled successfully within three system cadences."""
        last = self.last_success_monotonic.get("system")
        if last is None:
            return False, "no successful poll yet"
        age = self.clock.monotonic() - last
        if age > 3 * self.polling.system_interval:
            return False, f"last successful poll {age:.0f} s ago"
        return True, "ok"
