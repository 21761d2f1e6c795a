"""One Envoy's schedule in the daemon: connect, probe, then the system and device cadences.

The poller only schedules and wires the units that do the work:

- `readers` (planner + `CycleReader`): what each cycle reads from the Envoy, reusing bodies that are
  fresh enough (every request goes through the client's single queue);
- `normalize`: bodies → typed readings; `counters.CounterGuard`: statistics-safe energy counters;
- `announcer.Announcer`: states, discovery, availability and vanished devices on MQTT;
- `poll_health.PollHealth`: failures, breaker, `last_error`, availability, readiness.

`poll_system()` and `poll_devices()` run one cycle each (tests call them directly); `run()` connects
with backoff, then ticks both cadences at a fixed rate on the monotonic clock, skipping ticks instead of
piling up. A failing endpoint is logged once and skipped while the other readings still flow.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC

import structlog

from .announcer import Announcer
from .carry import SystemCarry
from .clock import SYSTEM_CLOCK, Clock
from .config import EnvoySettings, PollingSettings, Settings
from .counters import CounterGuard
from .derived_daily import TODAY, DerivedDaily, derives_daily
from .entities import daily_keys, lifetime_keys
from .envoy import endpoints
from .envoy.client import EnvoyClient
from .errors import BadEnvoyData, EnvoyError, EnvoyHttpError, EnvoyUnreachable, TokenError, short_error
from .fleet import FleetAnalysis, FleetVerdict, sample_of
from .gateway import build_gateway_payload
from .metrics import Metrics, error_kind
from .model import EnvoyInfo, Features, Payload
from .mqtt.discovery import describe_gateway
from .mqtt.publisher import Publisher
from .mqtt.topics import Topics
from .normalize import normalize_devices, normalize_meters, normalize_system
from .poll_health import BREAKER_CAP, PollHealth
from .readers import (
    DEVICE,
    SYSTEM,
    BodyStore,
    Cycle,
    CycleReader,
    Planner,
    probe,
    raw_device_data,
    raw_system_data,
)
from .realtime.plan import cadence_intervals, realtime_readers
from .realtime.reader import RealtimeReader
from .realtime.source import SourceChoice, probe_source
from .recovery import recover_counters
from .retry import RetryPolicy
from .state import StateFile

__all__ = ["BREAKER_CAP", "EnvoyPoller", "run_at_fixed_rate"]

log = structlog.get_logger(__name__)

CONNECT_BACKOFF_INITIAL = 5.0
CONNECT_BACKOFF_CAP = 300.0


async def run_at_fixed_rate(
    interval: float,
    tick: Callable[[], Awaitable[None]],
    clock: Clock,
    *,
    jitter: float = 0.0,
    first_delay: float = 0.0,
) -> None:
    """Call `tick` at start + n × interval; a slow tick skips the ticks it overran."""
    start = clock.monotonic() + first_delay + (random.uniform(0, jitter) if jitter > 0 else 0.0)
    n = 0
    while True:
        await clock.sleep(start + n * interval - clock.monotonic())
        await tick()
        elapsed_ticks = math.floor((clock.monotonic() - start) / interval)
        n = max(n + 1, elapsed_ticks + 1)


@dataclass
class _Once:
    """Log each distinct problem once, until it goes away and comes back."""

    seen: set[str] = field(default_factory=set)

    def new(self, problems: Iterable[str]) -> list[str]:
        current = set(problems)
        fresh = sorted(current - self.seen)
        self.seen = current
        return fresh


class EnvoyPoller:
    """Schedules one Envoy's cycles; reading, publishing and health are delegated (see the module doc)."""

    def __init__(
        self,
        envoy: EnvoySettings,
        settings: Settings,
        publisher: Publisher,
        topics: Topics,
        metrics: Metrics | None = None,
        clock: Clock = SYSTEM_CLOCK,
        client: EnvoyClient | None = None,
        stagger: float = 0.0,
    ) -> None:
        self.envoy = envoy
        # Where this Envoy's cadences sit in their interval, 0 to 1: a daemon with many Envoys spreads
        # them evenly instead of polling them all in the same second (bench/scale.py).
        self.stagger = stagger
        self.settings = settings
        self.polling: PollingSettings = settings.polling
        self.metrics = metrics
        self.clock = clock
        self.client = client or EnvoyClient(
            envoy,
            settings.enphase_cloud,
            settings.token,
            settings.state_dir,
            clock=clock,
            firmware_check_interval=settings.polling.firmware_check_interval,
        )
        self.log = log.bind(envoy=envoy.label)
        self.serial: str | None = envoy.serial or None
        self.info: EnvoyInfo | None = None
        self.features: Features | None = None
        self.guard: CounterGuard | None = None
        self.store = BodyStore()
        self.planner: Planner | None = None
        self.reads: CycleReader | None = None
        self.carry: SystemCarry | None = None  # production.json / secctrl values between their reads
        self._timezone: str | None = envoy.timezone or None
        self.derived: DerivedDaily | None = None  # today's production where the Envoy reports none
        self.announcer = Announcer(
            publisher,
            topics,
            clock,
            discovery=settings.mqtt.discovery,
            system_interval=self.polling.system_interval,
            device_interval=self.polling.device_interval,
            label=envoy.label,
            live_interval=settings.realtime.interval,
        )
        self.health = PollHealth(
            self.polling,
            clock,
            label=self.serial or envoy.label,
            metrics=metrics,
            on_availability=self.announcer.availability,
        )
        self._problems = {"system": _Once(), "devices": _Once(), "firmware": _Once()}
        self.fleet = FleetAnalysis(settings.fleet)
        self.fleet_verdict: FleetVerdict | None = None
        # When each cadence's last poll started (monotonic): the bridge's `poll` request keeps its floor.
        self.poll_started: dict[str, float] = {}
        self._cycle_locks = {"system": asyncio.Lock(), "devices": asyncio.Lock()}
        # The real-time cadence ([realtime]): its source, chosen at each probe, and its reader once started.
        self.realtime_choice: SourceChoice | None = None
        self.realtime: RealtimeReader | None = None

    # ------------------------------------------------------------------ views for the daemon and tests

    @property
    def failures(self) -> int:
        return self.health.failures

    @property
    def available(self) -> bool | None:
        return self.health.available

    @property
    def last_error(self) -> str | None:
        return self.health.last_error

    @property
    def system_payload(self) -> Payload | None:
        return self.announcer.system_payload

    @property
    def inverter_payloads(self) -> dict[str, Payload]:
        return self.announcer.inverter_payloads

    @property
    def battery_payloads(self) -> dict[str, Payload]:
        return self.announcer.battery_payloads

    @property
    def health_payload(self) -> Payload | None:
        return self.announcer.health_payload

    def ready(self) -> tuple[bool, str]:
        return self.health.ready()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Connect (with backoff), probe, then run both cadences until cancelled."""
        try:
            await self._connect_with_backoff()
            # The first polls right away (system, gateway and availability within moments of the Envoy
            # answering, bench/latency.py; then the devices); the cadences then keep their phase: the
            # Envoy's stagger in the interval plus a little jitter.
            await self._system_tick()
            await self._device_tick()
            self.realtime = self._realtime_reader()
            async with asyncio.TaskGroup() as group:
                if self.realtime is not None:
                    group.create_task(self.realtime.run())
                for interval, tick in (
                    (self.polling.system_interval, self._system_tick),
                    (self.polling.device_interval, self._device_tick),
                ):
                    group.create_task(
                        run_at_fixed_rate(
                            interval,
                            tick,
                            self.clock,
                            jitter=min(5.0, interval / 10),
                            first_delay=interval * (1.0 + self.stagger),
                        )
                    )
        finally:
            if self.guard is not None:
                self.guard.flush()
            if self.derived is not None:
                self.derived.flush()

    async def close(self) -> None:
        await self.client.close()

    async def _connect_with_backoff(self) -> None:
        policy = RetryPolicy(initial=CONNECT_BACKOFF_INITIAL, cap=CONNECT_BACKOFF_CAP, clock=self.clock)
        while True:
            try:
                await self.connect()
                return
            except (EnvoyError, TokenError) as exc:
                if self.info is None and self.client.info is not None:
                    # /info answered but authentication failed: publish the reason under the serial
                    self._adopt_info(self.client.info)
                self.health.failed(exc, "connect")
                self._publish_gateway()
                wait = policy.failed()
                self.log.warning(
                    "envoy_not_ready", action="retrying", reason=short_error(exc), retry_in=round(wait, 1)
                )
                await self.clock.sleep(wait)

    async def connect(self) -> None:
        """Read /info, authenticate, probe the features, learn the timezone."""
        info = await self.client.connect()
        self._adopt_info(info)
        recovery: asyncio.Task[int] | None = None
        if self.guard is not None and self.serial is not None and self.guard.needs_recovery:
            # a lost counter state file: read the broker's retained states while the probe runs
            recovery = asyncio.create_task(
                recover_counters(
                    self.guard, self.settings.mqtt, self.announcer.topics, self.serial, envoy=self.envoy.label
                )
            )
        try:
            features = await self._probe()
        except BaseException:
            if recovery is not None:
                recovery.cancel()
            raise
        if recovery is not None:
            await recovery  # before anything is published
        self.log.info(
            "envoy_ready",
            serial=info.serial,
            firmware=info.firmware,
            auth=info.auth_mode,
            ct_meters=list(features.ct_meters),
            phases=features.phase_count,
            detailed_inverters=features.detailed_inverters,
        )
        await self._adopt_timezone()

    async def _probe(self) -> Features:
        result = await probe(self.client, label=self.envoy.label)
        self.features = result.features
        self.store.clear()
        for path, body in result.bodies.items():
            self.store.put(path, body, self.clock.monotonic())
        choice = self.realtime_choice = await self._choose_realtime(result.features)
        source = choice.source if choice is not None else None
        intervals = cadence_intervals(
            self.polling.system_interval,
            self.polling.device_interval,
            source,
            self.settings.realtime.interval,
        )
        self.planner = Planner(result.features, intervals, readers=realtime_readers(source))
        self.carry = SystemCarry(result.features, self._timezone)
        if self.derived is not None:
            self.derived.flush()
        self.derived = (
            DerivedDaily(StateFile(self.settings.state_dir / f"daily-{self.serial}.json"), self._timezone)
            if derives_daily(result.features)
            else None
        )
        self.reads = CycleReader(
            self.planner,
            self.store,
            self.client.get_body,
            self.clock.monotonic,
            label=self.envoy.label,
            on_error=self._endpoint_error,
            on_duration=self._endpoint_duration,
        )
        return result.features

    async def _choose_realtime(self, features: Features) -> SourceChoice | None:
        """The real-time source when [realtime] is on for this Envoy; an Envoy without one is named once."""
        settings = self.settings.realtime
        if not settings.enabled or not self.envoy.realtime or self.info is None:
            return None
        inventory = self.store.body(endpoints.ENSEMBLE_INVENTORY)
        choice = await probe_source(self.client, settings.source, self.info, features, inventory)
        if choice.source is None and choice != self.realtime_choice:
            self.log.warning("realtime_unavailable", reason=choice.reason, cadences="unchanged")
        return choice

    def _realtime_reader(self) -> RealtimeReader | None:
        choice, features, guard = self.realtime_choice, self.features, self.guard
        if choice is None or choice.source is None or features is None or self.serial is None:
            return None
        return RealtimeReader(
            label=self.envoy.label,
            client=self.client,
            features=features,
            source=choice,
            settings=self.settings.realtime,
            publish=self.announcer.live,
            clock=self.clock,
            zone=(lambda: guard.zone) if guard is not None else (lambda: UTC),
            share=self.store.put,  # a CT body read here serves the system cycle too (the planner reuses it)
            on_change=self._realtime_changed,
            metrics=self.metrics,
            metrics_label=self.serial,
        )

    def _realtime_changed(self) -> None:
        """The real-time state, interval or keys changed: the gateway object and discovery follow."""
        self._publish_gateway()
        self.announcer.refresh_gateway(self.gateway_payload())

    def _adopt_info(self, info: EnvoyInfo) -> None:
        self.info = info
        if self.serial is None:
            self.serial = info.serial
        self.health.label = self.serial
        self.announcer.describe(describe_gateway(self.envoy, self.serial, info))
        if self.guard is None:
            self.guard = CounterGuard(
                StateFile(self.settings.state_dir / f"counters-{self.serial}.json"),
                self.envoy.timezone or None,
            )
            self.log = self.log.bind(serial=self.serial)

    async def _adopt_timezone(self) -> None:
        if self.envoy.timezone or self.guard is None:
            return
        try:
            home = await self.client.get_json(endpoints.HOME)
        except EnvoyError:
            return
        timezone = home.get("timezone") if isinstance(home, dict) else None
        if isinstance(timezone, str) and timezone:
            self.guard.set_timezone(timezone)
            self._timezone = timezone
            if self.carry is not None:
                self.carry.set_timezone(timezone)
            if self.derived is not None:
                self.derived.set_timezone(timezone)

    # ------------------------------------------------------------------ the cadences' ticks

    async def poll_now(self, cadence: str) -> None:
        """One poll of `cadence` ("system" or "devices") now, as the bridge's `poll` request asks.

        It runs as a scheduled tick would (the breaker aside) and raises the poll's failure, so that the
        request can answer with it; the cadence's lock keeps it from overlapping a scheduled tick.
        """
        if self.info is None or self.features is None:
            raise EnvoyUnreachable("the Envoy is not connected yet")
        failures = self.health.failures
        if cadence == "system":
            await self._system_tick(requested=True)
        else:
            await self._device_tick(requested=True)
        if self.health.failures > failures and self.health.last_error:
            raise EnvoyError(self.health.last_error)

    def refresh_gateway(self) -> None:
        """Publish the gateway object now (after a token refresh the bridge API asked for)."""
        self._publish_gateway(force=True)

    async def _system_tick(self, requested: bool = False) -> None:
        if self.health.breaker_open() and not requested:
            return
        async with self._cycle_locks["system"]:
            await self._system_cycle()

    async def _system_cycle(self) -> None:
        started = self.poll_started["system"] = self.clock.monotonic()
        try:
            await self._maybe_refresh_firmware()
            await self.poll_system()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.health.failed(exc, "system")
        else:
            self.health.succeeded("system")
        self.health.system_poll_took(self.clock.monotonic() - started)
        self._publish_gateway()

    async def _device_tick(self, requested: bool = False) -> None:
        if not requested and (self.health.breaker_open() or self.health.failing):
            return  # the system cadence does the trials while the Envoy is failing
        async with self._cycle_locks["devices"]:
            await self._device_cycle()

    async def _device_cycle(self) -> None:
        self.poll_started["devices"] = self.clock.monotonic()
        try:
            await self._refresh_token_if_due()
            await self.poll_devices()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.health.failed(exc, "device")
        else:
            self.health.succeeded("device")
        self._publish_gateway(force=True)

    async def _maybe_refresh_firmware(self) -> None:
        try:
            changed = await self.client.refresh_firmware_if_due()
        except EnvoyHttpError as exc:
            # /info answered, just not with the document (a 401 storm, a 5xx): the check stays due, and
            # the data requests still run so that the token's re-validation and backoff steps go on.
            for problem in self._problems["firmware"].new([short_error(exc)]):
                self.log.warning("firmware_check_failed", problem=problem)
            return
        self._problems["firmware"].new([])
        if changed:
            assert self.client.info is not None
            self._adopt_info(self.client.info)
            await self._probe()
            self.log.info("envoy_reprobed", reason="firmware changed", firmware=self.client.info.firmware)

    async def _refresh_token_if_due(self) -> None:
        manager = self.client.token_manager
        if manager is None:
            return
        try:
            await manager.refresh_if_due()
        except TokenError as exc:
            # the current token still works until it expires: not a poll failure
            self.log.warning("token_refresh_failed", reason=short_error(exc))

    # ------------------------------------------------------------------ one cycle each

    def _connected(self) -> tuple[EnvoyInfo, Features, CycleReader, str]:
        if self.info is None or self.features is None or self.reads is None or self.serial is None:
            raise EnvoyUnreachable("not connected")
        return self.info, self.features, self.reads, self.serial

    async def poll_system(self) -> None:
        """One system cycle: read what is due, normalize, guard the counters, announce."""
        info, features, reads, _ = self._connected()
        now = self.clock.time()
        carry = self.carry
        for path in carry.needs_read(now) if carry is not None else ():
            self.store.forget(path)  # nothing to carry from yet, or a new local day
        cycle = await reads.run(SYSTEM)
        if not cycle.production_read():
            raise BadEnvoyData("no production data could be read this cycle")
        raw = raw_system_data(cycle.bodies)
        reading = normalize_system(raw, info, features)
        self._log_problems("system", reading.problems)
        payload = reading.payload()
        if carry is not None:
            read = frozenset(p for p in cycle.read if cycle.bodies.get(p) is not None)
            fresh = frozenset(p for p in cycle.fresh if cycle.bodies.get(p) is not None)
            payload = carry.system(payload, raw, read, fresh, now)
        system = self._guard("system", payload, "system", now)
        if self.derived is not None:
            system = self.derived.apply(system, now)
        meters: dict[str, Payload] = {}
        for meter in normalize_meters(raw, features):
            self._log_problems("system", meter.problems)
            meters[meter.ct_type] = self._guard(f"meter/{meter.ct_type}", meter.payload(), "meter", now)
        self.announcer.system(system, meters, self.gateway_payload())

    async def poll_devices(self) -> None:
        """One device cycle: inverters and batteries, and which of them disappeared."""
        _, features, reads, _ = self._connected()
        cycle = await reads.run(DEVICE)
        if not _device_data_read(cycle):
            if not (features.endpoints & _DEVICE_SOURCES):
                return  # this Envoy has no per-device data at all
            raise BadEnvoyData("no device data could be read this cycle")
        readings = normalize_devices(raw_device_data(cycle.bodies), features)
        problems = list(readings.problems)
        for item in (*readings.inverters, *readings.batteries):
            problems.extend(item.problems)
        self._log_problems("devices", problems)
        now = self.clock.time()
        inverters = {
            r.serial: self._guard(f"inverter/{r.serial}", r.payload(), "inverter", now)
            for r in readings.inverters
        }
        batteries = {
            r.serial: self._guard(f"battery/{r.serial}", r.payload(), "battery", now)
            for r in readings.batteries
        }
        inverters_complete = _inverter_sources_read(cycle, features)
        # Fleet health needs every inverter source read: a partial cycle keeps the last verdict.
        if inverters_complete or self.fleet_verdict is None:
            self.fleet_verdict = self.fleet.update(
                [sample_of(r) for r in readings.inverters], [sample_of(b) for b in readings.batteries]
            )
        for device, payload in inverters.items():
            payload.update(self.fleet_verdict.inverter_keys(device))
        self.announcer.devices(
            inverters,
            batteries,
            inverters_complete=inverters_complete,
            batteries_complete=_battery_sources_read(cycle, features),
        )
        health = self.fleet_verdict.payload()
        if health:
            self.announcer.health(health, self.gateway_payload())

    # ------------------------------------------------------------------ helpers

    def _guard(self, device: str, payload: Payload, component: str, now: float) -> Payload:
        if self.guard is None:
            return payload
        guarded, corrections = self.guard.guard(
            device,
            payload,
            lifetime_keys=lifetime_keys(component),
            daily_keys=daily_keys(component),
            now=now,
            monotonic=self.clock.monotonic(),
        )
        for correction in corrections:
            self.log.warning("counter_corrected", device=device, reason=correction.reason)
            self.health.counter_corrected(correction.reason)
        return guarded

    def _log_problems(self, scope: str, problems: Iterable[str]) -> None:
        for problem in self._problems[scope].new(problems):
            self.log.warning("envoy_data_problem", scope=scope, problem=problem)

    def _endpoint_error(self, path: str, exc: BaseException) -> None:
        if self.metrics is not None:
            self.metrics.record_error(self.serial or self.envoy.label, error_kind(exc))

    def _endpoint_duration(self, path: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.poll_duration.labels(envoy=self.serial or "", endpoint=path).observe(seconds)

    def gateway_payload(self) -> Payload:
        health = self.health
        return build_gateway_payload(
            self.serial,
            self.info,
            self.features,
            self.client.auth_status,
            last_poll_ok=health.last_poll_ok,
            last_error=health.last_error,
            poll_duration=health.poll_duration,
            realtime=self.realtime.gateway_fields() if self.realtime is not None else None,
            derived_daily=(TODAY,) if self.derived is not None and self.derived.active else (),
        )

    def _publish_gateway(self, force: bool = False) -> None:
        if self.serial is None:
            return
        self.announcer.gateway(self.gateway_payload(), force=force)
        expires_at = self.client.auth_status.token_expires_at
        if self.metrics is not None and expires_at is not None:
            self.metrics.token_expiry_seconds.labels(envoy=self.serial).set(expires_at - self.clock.time())


_DEVICE_SOURCES = frozenset({endpoints.API_V1_INVERTERS, endpoints.DEVICE_DATA, endpoints.INVENTORY})


def _device_data_read(cycle: Cycle) -> bool:
    """At least one per-device source gave a body young enough for this cycle."""
    return any(
        cycle.bodies.get(path) is not None and path in cycle.fresh
        for path in (*_DEVICE_SOURCES, endpoints.ENSEMBLE_INVENTORY)
    )


def _inverter_sources_read(cycle: Cycle, features: Features) -> bool:
    """Every source listing inverters answered: an inverter missing from them is gone."""
    bodies = cycle.bodies
    device_data = bodies.get(endpoints.DEVICE_DATA)
    return (device_data is not None or not features.detailed_inverters) and (
        bodies.get(endpoints.API_V1_INVERTERS) is not None
        or endpoints.API_V1_INVERTERS not in features.endpoints
        or device_data is not None
    )


def _battery_sources_read(cycle: Cycle, features: Features) -> bool:
    """Every source listing batteries answered: a battery missing from them is gone."""
    bodies = cycle.bodies
    return (bodies.get(endpoints.ENSEMBLE_INVENTORY) is not None or not features.iq_batteries) and (
        bodies.get(endpoints.INVENTORY) is not None or not features.inventory
    )
