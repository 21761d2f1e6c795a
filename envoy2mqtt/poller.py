"""One Envoy's life in the daemon: connect, probe, the 1-minute and 5-minute cadences, publishing.

Every request goes through the Envoy client's single queue; the two cadences tick at a fixed rate on
the monotonic clock and skip ticks instead of piling up. A failing endpoint is logged once and
skipped while the other readings still flow.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from .clock import SYSTEM_CLOCK, Clock, iso_utc
from .config import EnvoySettings, PollingSettings, Settings
from .counters import CounterGuard
from .entities import daily_keys, lifetime_keys
from .envoy import endpoints
from .envoy.client import AuthStatus, EnvoyClient
from .errors import (
    BadEnvoyData,
    EnvoyAuthError,
    EnvoyError,
    EnvoyHttpError,
    EnvoyNotFound,
    EnvoyUnreachable,
    TokenError,
)
from .metrics import Metrics, error_kind
from .model import EnvoyInfo, Features, Payload, RawDeviceData, RawSystemData
from .mqtt.discovery import GatewayDescription, battery_config, gateway_config, inverter_config
from .mqtt.publisher import Publisher
from .mqtt.topics import Topics
from .normalize import normalize_devices, normalize_meters, normalize_system
from .retry import RetryPolicy
from .state import StateFile

log = structlog.get_logger(__name__)

GATEWAY_REPUBLISH_INTERVAL = 300.0
CONNECT_BACKOFF_INITIAL = 5.0
CONNECT_BACKOFF_CAP = 300.0
_NUMBERS = re.compile(r"\d+")
BREAKER_CAP = 300.0  # while the Envoy keeps failing, try at most this rarely (its ~23:00 reset lasts minutes)


def short_error(exc: BaseException) -> str:
    """A one-line reason for `gateway.last_error`; messages of our own errors never carry secrets."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def build_gateway_payload(
    serial: str | None,
    info: EnvoyInfo | None,
    features: Features | None,
    status: AuthStatus,
    *,
    last_poll_ok: float | None,
    last_error: str | None,
    poll_duration: float | None,
) -> Payload:
    """The contract's `gateway` object (the daemon publishes it; `check --json` prints it). Never a secret."""
    payload: Payload = {
        "serial": serial,
        "part_number": info.part_number if info else None,
        "firmware": info.firmware if info else None,
        "metered": features.metered if features else None,
        "ct_meters": list(features.ct_meters) if features else [],
        "phase_count": features.phase_count if features else None,
        "auth_mode": info.auth_mode if info else None,
    }
    if info is not None and info.auth_mode == "token":
        payload["token_type"] = status.token_type
        payload["token_expires_at"] = (
            iso_utc(status.token_expires_at) if status.token_expires_at is not None else None
        )
    payload["last_poll_ok"] = iso_utc(last_poll_ok) if last_poll_ok is not None else None
    payload["last_error"] = last_error
    payload["poll_duration"] = poll_duration
    return payload


# A system cycle fails when none of these could be read (the battery endpoints alone are not enough).
_PRODUCTION_SOURCES = (
    endpoints.PRODUCTION_JSON,
    endpoints.API_V1_PRODUCTION,
    endpoints.PRODUCTION_HTML,
    endpoints.METERS_READINGS,
)


def system_endpoints(features: Features, *, production_json: bool = True) -> tuple[str, ...]:
    """What one system cycle reads, in order: the daemon's cadence and `check` share this choice.

    `production_json=False` leaves production.json to the device cadence (CT-less Envoys, see
    `EnvoyPoller._production_json_on_device_cadence`).
    """
    present = features.endpoints
    reads: list[str] = []
    if production_json and endpoints.PRODUCTION_JSON in present:
        reads.append(endpoints.PRODUCTION_JSON)
    if endpoints.API_V1_PRODUCTION in present and not features.production_ct:
        reads.append(endpoints.API_V1_PRODUCTION)
    if endpoints.PRODUCTION_HTML in present:
        reads.append(endpoints.PRODUCTION_HTML)
    if features.ct_meters:
        reads.append(endpoints.METERS_READINGS)  # answers whenever /ivp/meters does
    if features.iq_batteries:
        reads.extend(p for p in (endpoints.ENSEMBLE_POWER, endpoints.ENSEMBLE_SECCTRL) if p in present)
    return tuple(reads)


def raw_system_data(
    bodies: Mapping[str, Any], probe_bodies: Mapping[str, Any], ensemble_inventory: Any = None
) -> RawSystemData:
    """The normalizer's input from the bodies one system cycle read (path -> body, None = failed)."""
    return RawSystemData(
        production_json=bodies.get(endpoints.PRODUCTION_JSON),
        api_v1_production=bodies.get(endpoints.API_V1_PRODUCTION),
        production_html=bodies.get(endpoints.PRODUCTION_HTML),
        meters=probe_bodies.get(endpoints.METERS),
        meters_readings=bodies.get(endpoints.METERS_READINGS),
        ensemble_power=bodies.get(endpoints.ENSEMBLE_POWER),
        ensemble_secctrl=bodies.get(endpoints.ENSEMBLE_SECCTRL),
        ensemble_inventory=ensemble_inventory,
    )


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


def _payload_shape(payload: Payload | None) -> tuple[Any, ...] | None:
    """What discovery reads from a state payload: its keys, its phase keys, the battery kind."""
    if payload is None:
        return None
    phases = payload.get("phases")
    phase_keys = (
        tuple((line, tuple(values)) for line, values in phases.items() if isinstance(values, dict))
        if isinstance(phases, dict)
        else None
    )
    return (tuple(payload), str(payload.get("kind")), phase_keys)


def _config_shape(description: GatewayDescription, payload: Payload) -> tuple[Any, ...]:
    """Everything a child's discovery config is built from: the gateway and its payload's shape."""
    return (description, _payload_shape(payload))


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
    """Owns one Envoy: its client, its counters, its availability and everything it publishes."""

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
        self.publisher = publisher
        self.topics = topics
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
        self.envoy_id: str | None = envoy.serial or None
        self.info: EnvoyInfo | None = None
        self.features: Features | None = None
        self.guard: CounterGuard | None = None
        self.failures = 0
        self.available: bool | None = None
        self.last_error: str | None = None
        self.last_poll_ok: float | None = None
        self.last_success_monotonic: dict[str, float] = {}
        self.poll_duration: float | None = None
        self.system_payload: Payload | None = None
        self.meter_payloads: dict[str, Payload] = {}
        self.inverter_payloads: dict[str, Payload] = {}
        self.battery_payloads: dict[str, Payload] = {}
        self._last_production_json: Any = None
        self._last_ensemble_inventory: Any = None
        # The system cycle's last /ivp/ensemble/power body and when it was read (monotonic)
        self._system_ensemble_power: tuple[Any, float] | None = None
        self._gateway_published: Payload | None = None
        self._gateway_published_at = -math.inf
        self._announced_gateway: Payload | None = None
        self._gateway_shape: tuple[Any, ...] | None = None  # what the announced gateway config was built from
        self._announced_children: dict[str, Payload] = {}
        self._child_shapes: dict[str, tuple[Any, ...]] = {}  # what each announced config was built from
        self._problems = {"system": _Once(), "devices": _Once(), "firmware": _Once()}
        self._failing_endpoints: dict[str, str] = {}  # path -> the problem logged for it
        self._failure_problems: set[str] = set()  # poll failures logged since the last success
        self._error_is_correction = False
        self._last_failure_at: float | None = None
        # Ticks skipped while the Envoy keeps failing: one system interval, doubling up to BREAKER_CAP
        # (exact: the ticks themselves already carry the cadence's jitter).
        self._breaker = RetryPolicy(
            initial=self.polling.system_interval,
            cap=max(BREAKER_CAP, self.polling.system_interval),
            jitter=(1.0, 1.0),
            clock=clock,
        )

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
            async with asyncio.TaskGroup() as group:
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

    async def close(self) -> None:
        await self.client.close()

    async def _connect_with_backoff(self) -> None:
        policy = RetryPolicy(initial=CONNECT_BACKOFF_INITIAL, cap=CONNECT_BACKOFF_CAP, clock=self.clock)
        while True:
            try:
                await self._connect()
                return
            except (EnvoyError, TokenError) as exc:
                if self.info is None and self.client.info is not None:
                    # /info answered but authentication failed: publish the reason under the serial
                    self._adopt_info(self.client.info)
                self._record_failure(exc, "connect")
                wait = policy.failed()
                self.log.warning(
                    "envoy not ready, retrying", reason=short_error(exc), retry_in=round(wait, 1)
                )
                await self.clock.sleep(wait)

    async def _connect(self) -> None:
        info = await self.client.connect()
        self._adopt_info(info)
        self.features = await self.client.probe()
        self._last_ensemble_inventory = self.client.probe_bodies.get(endpoints.ENSEMBLE_INVENTORY)
        self._last_production_json = self.client.probe_bodies.get(endpoints.PRODUCTION_JSON)
        self.log.info(
            "envoy ready",
            serial=info.serial,
            firmware=info.firmware,
            auth=info.auth_mode,
            ct_meters=list(self.features.ct_meters),
            phases=self.features.phase_count,
            detailed_inverters=self.features.detailed_inverters,
        )
        await self._adopt_timezone()

    def _adopt_info(self, info: EnvoyInfo) -> None:
        self.info = info
        if self.envoy_id is None:
            self.envoy_id = info.serial
        if self.guard is None:
            self.guard = CounterGuard(
                StateFile(self.settings.state_dir / f"counters-{self.envoy_id}.json"),
                self.envoy.timezone or None,
            )
            self.log = self.log.bind(serial=self.envoy_id)

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

    # ------------------------------------------------------------------ cadences

    async def _fetch(self, path: str, cadence: str) -> Any:
        """One endpoint; None when it failed (logged once). Auth/unreachable errors propagate."""
        started = time.perf_counter()
        try:
            body = await self.client.get_body(path)
        except (EnvoyAuthError, TokenError, EnvoyUnreachable):
            raise
        except (EnvoyNotFound, BadEnvoyData, EnvoyHttpError) as exc:
            if self.metrics is not None:
                self.metrics.record_error(self.envoy_id or self.envoy.label, error_kind(exc))
            # Once per endpoint and reason: several endpoints failing in turn must not log every cycle.
            problem = f"{path}: {short_error(exc)}"
            if self._failing_endpoints.get(path) != problem:
                self._failing_endpoints[path] = problem
                self.log.warning("endpoint skipped", cadence=cadence, problem=problem)
            return None
        finally:
            if self.metrics is not None:
                self.metrics.poll_duration.labels(envoy=self.envoy_id or "", endpoint=path).observe(
                    time.perf_counter() - started
                )
        self._failing_endpoints.pop(path, None)
        return body

    async def _maybe_refresh_firmware(self) -> None:
        try:
            changed = await self.client.refresh_firmware_if_due()
        except EnvoyHttpError as exc:
            # /info answered, just not with the document (a 401 storm, a 5xx): the check stays due, and
            # the data requests still run so that the token's re-validation and backoff steps go on.
            for problem in self._problems["firmware"].new([short_error(exc)]):
                self.log.warning("firmware check failed", problem=problem)
            return
        self._problems["firmware"].new([])
        if changed:
            assert self.client.info is not None
            self._adopt_info(self.client.info)
            self.features = await self.client.probe()
            self._announced_gateway = None
            self.log.info("firmware changed; probed again", firmware=self.client.info.firmware)

    def _breaker_open(self) -> bool:
        """After `failures_before_offline` failures in a row, back off: skip ticks, doubling the wait.

        A dead or rebooting Envoy then sees a few requests per hour instead of a burst every tick, and the
        log gets no line per tick; the first tick after the wait is the half-open trial.
        """
        excess = self.failures - self.polling.failures_before_offline
        if excess < 0 or self._last_failure_at is None:
            return False
        wait = self._breaker.ceiling(excess)
        return self.clock.monotonic() - self._last_failure_at < wait

    async def _system_tick(self) -> None:
        if self._breaker_open():
            return
        started = self.clock.monotonic()
        try:
            await self._maybe_refresh_firmware()
            await self.poll_system()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._record_failure(exc, "system")
        else:
            self._record_success("system")
        self.poll_duration = round(self.clock.monotonic() - started, 3)
        self._publish_gateway()

    async def _device_tick(self) -> None:
        if self._breaker_open() or self.failures >= self.polling.failures_before_offline:
            return  # the system cadence does the trials while the Envoy is failing
        try:
            await self._refresh_token_if_due()
            await self.poll_devices()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._record_failure(exc, "device")
        else:
            self._record_success("device")
        self._publish_gateway(force=True)

    async def _refresh_token_if_due(self) -> None:
        manager = self.client.token_manager
        if manager is None:
            return
        try:
            await manager.refresh_if_due()
        except TokenError as exc:
            # the current token still works until it expires: not a poll failure
            self.log.warning("token refresh failed", reason=short_error(exc))

    def _recent_ensemble_power(self) -> Any:
        """The system cycle's ensemble/power body when it is at most one system interval old: a device
        cycle every 5 minutes needs no fresher battery power, and the Envoy is spared 12 requests an hour."""
        if self._system_ensemble_power is None:
            return None
        body, read_at = self._system_ensemble_power
        if self.clock.monotonic() - read_at > self.polling.system_interval:
            return None
        return body

    def _production_json_on_device_cadence(self) -> bool:
        """Without a production CT, `/api/v1/production` carries every production value each minute;
        what `production.json` adds then (the inverter count, the inverters' reading time) changes only
        with the 5-minute inverter reports, so it is read on the device cadence: one request a minute
        fewer for every Envoy without CTs (the Envoys that suffer most from polling)."""
        features = self.features
        if features is None:
            return False
        return (
            endpoints.API_V1_PRODUCTION in features.endpoints
            and not features.production_ct
            and not features.consumption
            and not features.acb
        )

    async def poll_system(self) -> None:
        info, features = self.info, self.features
        if info is None or features is None or self.envoy_id is None:
            raise EnvoyUnreachable("not connected")
        on_device_cadence = self._production_json_on_device_cadence()
        bodies: dict[str, Any] = {}
        for path in system_endpoints(features, production_json=not on_device_cadence):
            bodies[path] = await self._fetch(path, "system")
        if not any(bodies.get(p) is not None for p in _PRODUCTION_SOURCES):
            raise BadEnvoyData("no production data could be read this cycle")
        if bodies.get(endpoints.PRODUCTION_JSON) is not None:
            self._last_production_json = bodies[endpoints.PRODUCTION_JSON]
        elif on_device_cadence:
            bodies[endpoints.PRODUCTION_JSON] = self._last_production_json
        if bodies.get(endpoints.ENSEMBLE_POWER) is not None:
            self._system_ensemble_power = (bodies[endpoints.ENSEMBLE_POWER], self.clock.monotonic())
        raw = raw_system_data(bodies, self.client.probe_bodies, self._last_ensemble_inventory)
        reading = normalize_system(raw, info, features)
        self._log_problems("system", reading.problems)
        now = self.clock.time()
        system = self._guard("system", reading.payload(), "system", now)
        self.system_payload = system
        self.publisher.publish(self.topics.system(self.envoy_id), system)
        meters: dict[str, Payload] = {}
        for meter in normalize_meters(raw, features):
            self._log_problems("system", meter.problems)
            meters[meter.serial] = self._guard(f"meter/{meter.serial}", meter.payload(), "meter", now)
            self.publisher.publish(self.topics.meter(self.envoy_id, meter.serial), meters[meter.serial])
        self.meter_payloads = meters
        self._announce_gateway()

    async def poll_devices(self) -> None:
        features = self.features
        if features is None or self.envoy_id is None:
            raise EnvoyUnreachable("not connected")
        present = features.endpoints
        inverters = device_data = inventory = ensemble_inventory = power = None
        if features.detailed_inverters:
            device_data = await self._fetch(endpoints.DEVICE_DATA, "device")
        if (device_data is None or features.acb) and endpoints.API_V1_INVERTERS in present:
            inverters = await self._fetch(endpoints.API_V1_INVERTERS, "device")
        if features.inventory:
            inventory = await self._fetch(endpoints.INVENTORY, "device")
        if self._production_json_on_device_cadence() and endpoints.PRODUCTION_JSON in present:
            production_json = await self._fetch(endpoints.PRODUCTION_JSON, "device")
            if production_json is not None:
                self._last_production_json = production_json
        if features.iq_batteries:
            ensemble_inventory = await self._fetch(endpoints.ENSEMBLE_INVENTORY, "device")
            if ensemble_inventory is not None:
                self._last_ensemble_inventory = ensemble_inventory
            if endpoints.ENSEMBLE_POWER in present:
                power = self._recent_ensemble_power()
                if power is None:
                    power = await self._fetch(endpoints.ENSEMBLE_POWER, "device")
        if all(x is None for x in (inverters, device_data, inventory, ensemble_inventory)):
            if not (present & {endpoints.API_V1_INVERTERS, endpoints.DEVICE_DATA, endpoints.INVENTORY}):
                return  # this Envoy has no per-device data at all
            raise BadEnvoyData("no device data could be read this cycle")
        raw = RawDeviceData(
            inverters=inverters,
            device_data=device_data,
            inventory=inventory,
            ensemble_inventory=ensemble_inventory,
            ensemble_power=power,
            production_json=self._last_production_json,
        )
        readings = normalize_devices(raw, features)
        problems = list(readings.problems)
        for item in (*readings.inverters, *readings.batteries):
            problems.extend(item.problems)
        self._log_problems("devices", problems)
        now = self.clock.time()
        envoy_id = self.envoy_id
        inverter_payloads = {
            r.serial: self._guard(f"inverter/{r.serial}", r.payload(), "inverter", now)
            for r in readings.inverters
        }
        battery_payloads = {
            r.serial: self._guard(f"battery/{r.serial}", r.payload(), "battery", now)
            for r in readings.batteries
        }
        for serial, payload in inverter_payloads.items():
            self.publisher.publish(self.topics.inverter(envoy_id, serial), payload)
        for serial, payload in battery_payloads.items():
            self.publisher.publish(self.topics.battery(envoy_id, serial), payload)
        # A device is gone only when every source that lists it was read this cycle: one failed
        # endpoint must not wipe Home Assistant's devices.
        inverter_sources_read = (device_data is not None or not features.detailed_inverters) and (
            inverters is not None or endpoints.API_V1_INVERTERS not in present or device_data is not None
        )
        battery_sources_read = (ensemble_inventory is not None or not features.iq_batteries) and (
            inventory is not None or not features.inventory
        )
        if inverter_sources_read:
            self._forget_gone(self.inverter_payloads, inverter_payloads, self.topics.inverter)
        else:
            inverter_payloads = {**self.inverter_payloads, **inverter_payloads}
        if battery_sources_read:
            self._forget_gone(self.battery_payloads, battery_payloads, self.topics.battery)
        else:
            battery_payloads = {**self.battery_payloads, **battery_payloads}
        self.inverter_payloads = inverter_payloads
        self.battery_payloads = battery_payloads
        self._announce_children()

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
        )
        for correction in corrections:
            self.log.warning("counter corrected", device=device, reason=correction.reason)
            self.last_error = correction.reason[:200]
            self._error_is_correction = True
        return guarded

    def _log_problems(self, scope: str, problems: Iterable[str]) -> None:
        for problem in self._problems[scope].new(problems):
            self.log.warning("envoy data problem", scope=scope, problem=problem)

    def _forget_gone(
        self,
        before: dict[str, Payload],
        after: dict[str, Payload],
        topic_of: Callable[[str, str], str],
    ) -> None:
        """A device that disappeared: clear its retained config and state topics."""
        assert self.envoy_id is not None
        for serial in set(before) - set(after):
            self.log.info("device disappeared; clearing its topics", device=serial)
            self.publisher.clear(topic_of(self.envoy_id, serial))
            self._child_shapes.pop(serial, None)
            if serial in self._announced_children:
                del self._announced_children[serial]
                if self.settings.mqtt.discovery:
                    from .mqtt.discovery import device_id

                    self.publisher.clear(self.topics.device_config(device_id(serial)))

    def _description(self) -> GatewayDescription:
        assert self.envoy_id is not None
        info = self.info
        host = self.envoy.host
        url = host if "://" in host else f"https://{host}"
        return GatewayDescription(
            serial=self.envoy_id,
            name=self.envoy.name or f"Envoy {self.envoy_id}",
            firmware=info.firmware if info else None,
            part_number=info.part_number if info else None,
            configuration_url=url if url.startswith(("http://", "https://")) else None,
        )

    def _announce_gateway(self) -> None:
        if not self.settings.mqtt.discovery or self.envoy_id is None:
            return
        description, gateway = self._description(), self.gateway_payload()
        # Rebuilt only when what it is built from changed, not every system cycle (bench/cpu.py).
        shape = (
            description,
            _payload_shape(self.system_payload),
            _payload_shape(gateway),
            tuple((ct, _payload_shape(p)) for ct, p in sorted(self.meter_payloads.items())),
        )
        if shape == self._gateway_shape and self._announced_gateway is not None:
            return
        self._gateway_shape = shape
        config = gateway_config(
            self.topics,
            description,
            self.system_payload,
            gateway,
            self.meter_payloads,
            self.polling.system_interval,
            self.polling.device_interval,
        )
        if config != self._announced_gateway:
            from .mqtt.discovery import device_id

            self.publisher.set_config(self.topics.device_config(device_id(self.envoy_id)), config)
            self._announced_gateway = config

    def _announce_children(self) -> None:
        if not self.settings.mqtt.discovery or self.envoy_id is None:
            return
        from .mqtt.discovery import device_id

        description = self._description()
        for builder, payloads in (
            (inverter_config, self.inverter_payloads),
            (battery_config, self.battery_payloads),
        ):
            for serial, payload in payloads.items():
                # A child's config depends only on the gateway description and on which keys its payload
                # has: skip rebuilding 300 unchanged configs every device cycle (bench/cpu.py).
                shape = _config_shape(description, payload)
                if self._child_shapes.get(serial) == shape and serial in self._announced_children:
                    continue
                config = builder(self.topics, description, serial, payload, self.polling.device_interval)
                if self._announced_children.get(serial) != config:
                    self.publisher.set_config(self.topics.device_config(device_id(serial)), config)
                    self._announced_children[serial] = config
                self._child_shapes[serial] = shape

    def gateway_payload(self) -> Payload:
        return build_gateway_payload(
            self.envoy_id,
            self.info,
            self.features,
            self.client.auth_status,
            last_poll_ok=self.last_poll_ok,
            last_error=self.last_error,
            poll_duration=self.poll_duration,
        )

    def _publish_gateway(self, force: bool = False) -> None:
        if self.envoy_id is None:
            return
        payload = self.gateway_payload()
        now = self.clock.monotonic()
        due = now - self._gateway_published_at >= GATEWAY_REPUBLISH_INTERVAL
        comparable = {k: v for k, v in payload.items() if k not in ("last_poll_ok", "poll_duration")}
        previous = self._gateway_published
        changed = previous is None or comparable != {
            k: v for k, v in previous.items() if k not in ("last_poll_ok", "poll_duration")
        }
        if changed or due or force:
            self.publisher.publish(self.topics.gateway(self.envoy_id), payload)
            self._gateway_published = payload
            self._gateway_published_at = now
        if self.metrics is not None and self.client.auth_status.token_expires_at is not None:
            self.metrics.token_expiry_seconds.labels(envoy=self.envoy_id).set(
                self.client.auth_status.token_expires_at - self.clock.time()
            )

    def _set_available(self, available: bool) -> None:
        if self.envoy_id is None or available == self.available:
            return
        self.available = available
        self.publisher.publish(
            self.topics.envoy_availability(self.envoy_id), "online" if available else "offline"
        )
        self.log.info("envoy availability", available=available)

    def _record_success(self, cadence: str) -> None:
        self.failures = 0
        self._failure_problems.clear()
        self.last_poll_ok = self.clock.time()
        self.last_success_monotonic[cadence] = self.clock.monotonic()
        if self.last_error and not self._error_is_correction:
            self.last_error = None
        self._set_available(True)
        if self.metrics is not None and self.envoy_id is not None:
            self.metrics.last_successful_poll.labels(envoy=self.envoy_id, cadence=cadence).set(
                self.last_poll_ok
            )

    def _record_failure(self, exc: BaseException, cadence: str) -> None:
        self.failures += 1
        self._last_failure_at = self.clock.monotonic()
        self._error_is_correction = False
        reason = short_error(exc)
        # Once per distinct problem while the Envoy keeps failing; numbers (a countdown such as "next
        # attempt in 63 s", a port) do not make a problem new, else a 401 storm logs every poll.
        problem = _NUMBERS.sub("#", reason)
        if problem not in self._failure_problems:
            self._failure_problems.add(problem)
            self.log.warning("poll failed", cadence=cadence, kind=error_kind(exc), reason=reason)
        self.last_error = reason
        if self.metrics is not None:
            self.metrics.record_error(self.envoy_id or self.envoy.label, error_kind(exc))
        if self.failures >= self.polling.failures_before_offline:
            self._set_available(False)
        if self.envoy_id is not None and cadence == "connect":
            self._publish_gateway()

    def ready(self) -> tuple[bool, str]:
        """Polled successfully within three system cadences."""
        last = self.last_success_monotonic.get("system")
        if last is None:
            return False, "no successful poll yet"
        age = self.clock.monotonic() - last
        if age > 3 * self.polling.system_interval:
            return False, f"last successful poll {age:.0f} s ago"
        return True, "ok"
