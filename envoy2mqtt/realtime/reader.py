"""The real-time cadence of one Envoy: read one fast endpoint every few seconds, publish `live`.

Never hurt the Envoy:
- one request at a time, through the Envoy's single request queue (the client's), one attempt each
  (no retries: retrying a struggling Envoy is what freezes it) with a short time limit; so the 1- and
  5-minute cycles wait behind at most one real-time request;
- the interval backs off when answers get slow or fail (`adaptive.AdaptiveInterval`) and creeps back;
- reads pause in the Envoy's nightly maintenance window and for a while after a burst of failures,
  and resume by themselves;
- a CT body it reads is handed to `share` so the minute cycle uses it instead of reading it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any, Protocol

import structlog

from envoy2mqtt.clock import Clock
from envoy2mqtt.config import REALTIME_INTERVAL_CAP, RealtimeSettings
from envoy2mqtt.envoy import endpoints
from envoy2mqtt.errors import EnvoyError, TokenError
from envoy2mqtt.metrics import Metrics
from envoy2mqtt.model import Features, LiveReading, Payload
from envoy2mqtt.normalize.live import live_from_livedata, live_from_meters, livedata_stream_state

from .adaptive import AdaptiveInterval, FailureBurst
from .source import RealtimeSource, SourceChoice
from .stream import ENABLE_BODY, STATUS_PATH, STREAM_PATH, StreamKeeper
from .window import MaintenanceWindow

log = structlog.get_logger(__name__)

MIN_TIME_LIMIT = 5.0  # seconds a real-time request may take before it counts as failed
MAX_TIME_LIMIT = 30.0
PAUSE_CHECK = 30.0  # while paused, look at the clock at least this often


class RealtimeClient(Protocol):
    """What the reader needs of `EnvoyClient` (the same queue the cadences use)."""

    async def get_json_once(self, path: str, time_limit: float) -> Any: ...

    async def write_json(self, method: str, path: str, document: Any) -> Any: ...


def short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


class RealtimeReader:
    """Owns one Envoy's real-time cadence; publishes through `publish(payload)`."""

    def __init__(
        self,
        *,
        label: str,
        client: RealtimeClient,
        features: Features,
        source: SourceChoice,
        settings: RealtimeSettings,
        publish: Callable[[Payload], None],
        clock: Clock,
        zone: Callable[[], tzinfo] = lambda: UTC,
        share: Callable[[str, Any, float], None] | None = None,
        on_change: Callable[[], None] | None = None,
        metrics: Metrics | None = None,
        metrics_label: str = "",
        stream: StreamKeeper | None = None,
    ) -> None:
        if source.source is None:
            raise ValueError("a real-time reader needs a source")
        self.source: RealtimeSource = source.source
        self.reason = source.reason
        self.features = features
        self.settings = settings
        self.client = client
        self.clock = clock
        self.zone = zone
        self.publish = publish
        self.share = share
        self.on_change = on_change
        self.metrics = metrics
        self.metrics_label = metrics_label
        self.log = log.bind(envoy=label)
        self.adaptive = AdaptiveInterval(
            settings.interval,
            cap=max(settings.interval, REALTIME_INTERVAL_CAP),
            calm_period=settings.calm_period,
            start=clock.monotonic(),
        )
        self.burst = FailureBurst(settings.failure_pause)
        window = settings.window
        self.window = MaintenanceWindow(*window) if window is not None else None
        self.stream = stream or StreamKeeper()
        self.state = "starting"
        self.last_reading: LiveReading | None = None
        self.last_payload: Payload | None = None
        self.reads = 0
        self.failures = 0
        self.published = 0
        self._failing: str | None = None
        self._problems: tuple[str, ...] = ()
        self._shape: tuple[str, ...] | None = None
        self._failure_pause_until = 0.0
        self._logged_interval = self.adaptive.interval

    # ------------------------------------------------------------------ what others read

    @property
    def interval(self) -> float:
        """The effective interval (the configured one, or more while backed off)."""
        return self.adaptive.interval

    def gateway_fields(self) -> Payload:
        """The gateway diagnostics: source, effective interval, state."""
        return {
            "realtime_source": self.source,
            "realtime_interval": self.interval,
            "realtime_state": self.state,
        }

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        self.log.info("realtime_started", source=self.source, interval=self.interval, reason=self.reason)
        self._metric_interval()
        while True:
            paused = self._pause_left()
            if paused > 0:
                await self.clock.sleep(min(paused, PAUSE_CHECK))
                continue
            started = self.clock.monotonic()
            try:
                await self.tick()
            except Exception as exc:  # a bug must not end the cadence (nor the daemon): log, back off
                self.log.exception("realtime_tick_crashed")
                self._failed(exc)
            wait = started + self.interval - self.clock.monotonic()
            await self.clock.sleep(max(0.0, wait))

    def _local_now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.time(), tz=self.zone())

    def _pause_left(self) -> float:
        """Seconds to stay paused (0: read now); logs entering and leaving each pause once."""
        now = self.clock.monotonic()
        if self.state == "paused-failures":
            if now < self._failure_pause_until:
                return self._failure_pause_until - now
            self.log.info("realtime_resumed", after="failure pause")
            self._set_state("running")
        if self.window is not None:
            left = self.window.seconds_left(self._local_now())
            if left > 0:
                if self.state != "paused-maintenance":
                    self.log.info(
                        "realtime_paused", reason="maintenance window", window=self.window.describe()
                    )
                    self._set_state("paused-maintenance")
                return left
            if self.state == "paused-maintenance":
                self.log.info("realtime_resumed", after="maintenance window")
                self._set_state("running")
        return 0.0

    async def tick(self) -> None:
        """One real-time read and publish; never raises for an Envoy problem."""
        try:
            reading = await (self._read_meters() if self.source == "meters" else self._read_livedata())
        except (EnvoyError, TokenError) as exc:
            self._failed(exc)
            return
        if reading is not None:
            self._publish(reading)

    def _time_limit(self) -> float:
        return min(MAX_TIME_LIMIT, max(MIN_TIME_LIMIT, 2 * self.interval))

    async def _timed(self, call: Callable[[], Any]) -> Any:
        """One request; its duration feeds the adaptive interval."""
        started = time.perf_counter()
        body = await call()
        elapsed = time.perf_counter() - started
        self.reads += 1
        if self.metrics is not None:
            self.metrics.realtime_reads.labels(envoy=self.metrics_label, result="ok").inc()
        self._interval_changed(self.adaptive.succeeded(self.clock.monotonic(), elapsed), "slow answers")
        return body

    async def _read_meters(self) -> LiveReading:
        path = endpoints.METERS_READINGS
        limit = self._time_limit()
        body = await self._timed(lambda: self.client.get_json_once(path, limit))
        self._recovered()
        if self.share is not None:
            self.share(path, body, self.clock.monotonic())
        return live_from_meters(body, self.features)

    async def _read_livedata(self) -> LiveReading | None:
        limit = self._time_limit()
        if self.stream.due(self.clock.monotonic()):
            await self._timed(lambda: self.client.write_json("POST", STREAM_PATH, ENABLE_BODY))
            self.stream.enabled(self.clock.monotonic())
            self.log.debug("livedata_stream_enabled", renewals=self.stream.renewals)
        body = await self._timed(lambda: self.client.get_json_once(STATUS_PATH, limit))
        self._recovered()
        if not self.stream.observed(livedata_stream_state(body)):
            # Frozen values: not published; the stream is enabled again before the next read.
            self.log.info(
                "livedata_stream_lapsed", action="enabling it again", state=livedata_stream_state(body)
            )
            return None
        return live_from_livedata(body, self.features)

    # ------------------------------------------------------------------ outcomes

    def _publish(self, reading: LiveReading) -> None:
        problems = reading.problems
        if problems != self._problems:
            for problem in set(problems) - set(self._problems):
                self.log.warning("realtime_data_problem", problem=problem)
            self._problems = problems
        payload = reading.payload()
        self.last_reading = reading
        self.last_payload = payload
        self.publish(payload)
        self.published += 1
        shape = tuple(payload) + tuple(
            f"{line}.{key}"
            for line, values in (payload.get("phases") or {}).items()
            for key in (values if isinstance(values, dict) else ())
        )
        if shape != self._shape:
            self._shape = shape
            if self.on_change is not None:
                self.on_change()  # the first reading (or new keys): announce the live entities
        if self.state == "starting":
            self._set_state("running")

    def _recovered(self) -> None:
        self.burst.succeeded()
        if self._failing is not None:
            self.log.info("realtime_reads_recovered", after=self._failing)
            self._failing = None

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        reason = short_reason(exc)
        if self.metrics is not None:
            self.metrics.realtime_reads.labels(envoy=self.metrics_label, result="failed").inc()
        if self._failing is None:
            self.log.warning("realtime_read_failed", reason=reason)
        self._failing = reason
        now = self.clock.monotonic()
        self._interval_changed(self.adaptive.failed(now), "a failed request")
        if self.burst.failed():
            self._failure_pause_until = now + self.burst.pause
            self.log.warning(
                "realtime_paused",
                reason=f"{self.burst.burst} failures in a row",
                seconds=self.burst.pause,
                last_error=reason,
            )
            self._set_state("paused-failures")

    def _interval_changed(self, interval: float | None, why: str) -> None:
        if interval is None:
            return
        backing_off = interval > self._logged_interval
        self._logged_interval = interval
        self.log.info(
            "realtime_interval_changed",
            interval=interval,
            configured=self.settings.interval,
            reason=why if backing_off else "calm again",
        )
        self._metric_interval()
        if self.on_change is not None:
            self.on_change()

    def _metric_interval(self) -> None:
        if self.metrics is not None:
            self.metrics.realtime_interval.labels(envoy=self.metrics_label).set(self.interval)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self.on_change is not None:
                self.on_change()
