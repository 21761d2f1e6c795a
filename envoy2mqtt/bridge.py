"""The bridge's own API on MQTT: `<base>/bridge/info` and `<base>/bridge/request/<command>`.

Modelled on zigbee2mqtt's bridge topics. A request is a JSON object (an empty payload counts as `{}`)
with an optional `transaction`; the answer goes to `<base>/bridge/response/<command>`, not retained:
`{"status": "ok"|"error", "data": ..., "error": null|"reason", "transaction": <as given>}`.

- `health_check`: MQTT and every Envoy: available, ready, last poll, last error.
- `poll`: `{"envoy": "<serial or name>" (default: all), "cadence": "system"|"devices" (default system)}`
  polls now. Refused, with `retry_after` seconds, when that Envoy's last poll of the cadence started less
  than the cadence's floor ago (10 s system, 60 s devices: the same floors as the configuration).
- `token/refresh`: `{"envoy": ...}` fetches a new token from Enlighten now (token Envoys with Enlighten
  credentials); answers with the token's type and expiry, never the token. At most one per Envoy every
  10 minutes (refused with `retry_after`): anyone on the broker must not make the bridge hammer Enlighten.
- `discovery/republish`: every discovery config and last state again.
- `log_level`: `{"level": "debug"|"info"|"warning"|"error"}` changes the level at run time.

Retained requests are ignored (a stale command must not run again after every reconnect). Unknown
commands and bad bodies get an error response. Every response passes through the log redactor, and its
error texts are our own short reasons: no response carries a secret.

The daemon side is behind `BridgeControl`, so routing and validation are tested without a daemon.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import structlog

import envoy2mqtt

from .clock import iso_utc
from .config import DEVICE_INTERVAL_FLOOR, SYSTEM_INTERVAL_FLOOR, Settings
from .logging import LOG_LEVELS, redact
from .model import Payload
from .mqtt.publisher import IncomingMessage, Publisher
from .mqtt.topics import Topics

log = structlog.get_logger(__name__)

Cadence = Literal["system", "devices"]
CADENCES: tuple[Cadence, ...] = ("system", "devices")
# The minimum gap between two polls of one cadence of one Envoy, requested or scheduled.
POLL_FLOORS: dict[Cadence, float] = {"system": SYSTEM_INTERVAL_FLOOR, "devices": DEVICE_INTERVAL_FLOOR}
# A token refresh logs in to Enlighten: at most one per Envoy in this many seconds, whoever asks.
TOKEN_REFRESH_FLOOR = 600.0
COMMANDS = ("health_check", "poll", "token/refresh", "discovery/republish", "log_level")
MAX_IN_FLIGHT = 16
_TRANSACTION_MAX = 200


class RequestError(Exception):
    """A request that cannot be served; the message is the response's `error` (never a secret)."""

    def __init__(self, message: str, data: Payload | None = None) -> None:
        super().__init__(message)
        self.data = data


@dataclass(frozen=True, slots=True)
class InverterTile:
    """One microinverter as the status page draws it."""

    serial: str
    power: float | None
    max_power: float | None
    relative_output: float | None
    underperforming: bool
    stale: bool
    last_report: str | None


@dataclass(frozen=True, slots=True)
class EnvoyStatus:
    """What the bridge knows of one Envoy right now: `bridge/info`, `health_check` and the status page."""

    id: str  # the serial once known, else the configured label
    name: str
    serial: str | None
    firmware: str | None
    part_number: str | None
    auth_mode: str | None
    token_type: str | None
    token_expires_at: float | None
    available: bool | None
    ready: bool
    ready_reason: str
    last_poll_ok: float | None
    last_error: str | None
    system_interval: float
    device_interval: float
    production_power: float | None = None
    consumption_power: float | None = None
    net_power: float | None = None
    battery_soc: float | None = None
    on_grid: bool | None = None
    health: Payload = field(default_factory=dict)
    inverters: tuple[InverterTile, ...] = ()
    realtime: Payload = field(default_factory=dict)  # source, effective interval, state; {} when off

    def info(self) -> Payload:
        """The `bridge/info` entry: identity, authentication, availability, cadences and real-time state."""
        cadences: Payload = {"system": self.system_interval, "devices": self.device_interval}
        if self.realtime:
            cadences["realtime"] = self.realtime.get("realtime_interval")
        entry: Payload = {
            "serial": self.serial,
            "name": self.name,
            "firmware": self.firmware,
            "auth_mode": self.auth_mode,
            "token_type": self.token_type,
            "token_expires_at": _iso(self.token_expires_at),
            "available": self.available,
            "cadences": cadences,
        }
        if self.realtime:
            entry["realtime"] = {
                "source": self.realtime.get("realtime_source"),
                "state": self.realtime.get("realtime_state"),
            }
        return entry

    def health_entry(self) -> Payload:
        return {
            "available": self.available,
            "ready": self.ready,
            "reason": self.ready_reason,
            "last_poll_ok": _iso(self.last_poll_ok),
            "last_error": self.last_error,
        }


def _iso(value: float | None) -> str | None:
    return iso_utc(value) if value is not None else None


class BridgeControl(Protocol):
    """What the bridge API needs from the daemon."""

    def envoys(self) -> Sequence[EnvoyStatus]: ...

    def mqtt_connected(self) -> bool: ...

    def poll_age(self, envoy: str, cadence: Cadence) -> float | None:
        """Seconds since this Envoy's last poll of `cadence` started (None: never)."""
        ...

    async def poll_now(self, envoy: str, cadence: Cadence) -> None:
        """Run one poll now; raises with a short reason when it fails."""
        ...

    async def refresh_token(self, envoy: str) -> None: ...

    async def republish_discovery(self) -> int:
        """Send every discovery config and last state again; returns how many configs."""
        ...

    def set_log_level(self, level: str) -> str:
        """Returns the previous level."""
        ...


def config_summary(settings: Settings) -> Payload:
    """The configuration as `bridge/info` shows it: chosen keys only, never a secret or a host URL."""
    mqtt = settings.mqtt
    return {
        "mqtt": {
            "host": mqtt.host,
            "port": mqtt.port,
            "base_topic": mqtt.base_topic,
            "discovery": mqtt.discovery,
            "discovery_prefix": mqtt.discovery_prefix,
            "retain": mqtt.retain,
            "qos": mqtt.qos,
            "tls": mqtt.tls.enabled,
            "authenticated": bool(mqtt.username),
        },
        "polling": {
            "system_interval": settings.polling.system_interval,
            "device_interval": settings.polling.device_interval,
            "failures_before_offline": settings.polling.failures_before_offline,
        },
        "health": {
            "enabled": settings.health.enabled,
            "host": settings.health.host,
            "port": settings.health.port,
        },
        "fleet": settings.fleet.model_dump(),
        "logging": {"format": settings.logging.format},
        "envoys": len(settings.envoy),
    }


class BridgeApi:
    """Serves the request topics and keeps `bridge/info` current."""

    def __init__(
        self,
        settings: Settings,
        publisher: Publisher,
        topics: Topics,
        control: BridgeControl,
        *,
        started_at: float | None = None,
        log_level: Callable[[], str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monotonic = monotonic
        self._token_refreshed_at: dict[str, float] = {}
        self.settings = settings
        self.publisher = publisher
        self.topics = topics
        self.control = control
        self.started_at = time.time() if started_at is None else started_at
        self._log_level = log_level or (lambda: settings.logging.level)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._published_info: Payload | None = None
        self._handlers: dict[str, Callable[[Payload], Awaitable[Any]]] = {
            "health_check": self._health_check,
            "poll": self._poll,
            "token/refresh": self._token_refresh,
            "discovery/republish": self._republish,
            "log_level": self._set_log_level,
        }

    # ------------------------------------------------------------------ wiring

    def start(self) -> None:
        """Subscribe to the request topics (again after every reconnect, the publisher sees to it)."""
        self.publisher.subscribe(self.topics.bridge_requests, self.on_message)
        self.publish_info()

    def info(self) -> Payload:
        return {
            "version": envoy2mqtt.__version__,
            "started_at": iso_utc(self.started_at),
            "log_level": self._log_level(),
            "commands": list(COMMANDS),
            "envoys": {status.id: status.info() for status in self.control.envoys()},
            "config": config_summary(self.settings),
        }

    def publish_info(self, force: bool = False) -> bool:
        """Publish `bridge/info` (retained) when it changed; True when published."""
        info = redact(self.info())
        if not force and info == self._published_info:
            return False
        self.publisher.publish(self.topics.bridge_info, info, retain=True)
        self._published_info = info
        return True

    def on_message(self, message: IncomingMessage) -> None:
        """The publisher's handler: never blocks, the work runs in a task of its own."""
        prefix = self.topics.bridge_request("")
        if not message.topic.startswith(prefix):
            return
        command = message.topic[len(prefix) :]
        if message.retain:
            log.info("bridge_request_ignored", reason="retained", command=command)
            return
        if len(self._tasks) >= MAX_IN_FLIGHT:
            self._respond(command, None, "busy: too many requests in flight, try again", None)
            return
        task = asyncio.get_running_loop().create_task(self.handle(command, message.payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def in_flight(self) -> int:
        """Requests being served right now."""
        return len(self._tasks)

    async def close(self) -> None:
        self.publisher.unsubscribe(self.topics.bridge_requests)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ requests

    async def handle(self, command: str, payload: bytes) -> Payload:
        """Serve one request and publish its response; returns the response (tests)."""
        transaction: Any = None
        try:
            body = _body(payload)
            transaction = _transaction(body)
            handler = self._handlers.get(command)
            if handler is None:
                raise RequestError(f"unknown command {command!r}; known: {', '.join(COMMANDS)}")
            data = await handler(body)
        except RequestError as exc:
            log.info("bridge_request_refused", command=command, reason=str(exc))
            return self._respond(command, exc.data, str(exc), transaction)
        except Exception as exc:  # the daemon's own failure: a short reason, never a traceback
            log.warning("bridge_request_failed", command=command, reason=_short(exc))
            return self._respond(command, None, _short(exc), transaction)
        log.debug("bridge_request_served", command=command, transaction=transaction)
        return self._respond(command, data, None, transaction)

    def _respond(self, command: str, data: Any, error: str | None, transaction: Any) -> Payload:
        response = redact(
            {
                "status": "error" if error is not None else "ok",
                "data": data if data is not None else {},
                "error": error,
                "transaction": transaction,
            }
        )
        if not self.publisher.send_once(self.topics.bridge_response(command), response):
            log.info("bridge_response_dropped", reason="mqtt not connected", command=command)
        return response  # type: ignore[no-any-return]

    def _envoys(self, body: Payload) -> list[EnvoyStatus]:
        """The Envoys a request names (`envoy`: serial or name), all of them when it names none."""
        statuses = list(self.control.envoys())
        wanted = body.get("envoy")
        if wanted is None:
            return statuses
        if not isinstance(wanted, str) or not wanted:
            raise RequestError("envoy must be an Envoy's serial or name")
        chosen = [s for s in statuses if wanted in (s.id, s.serial, s.name)]
        if not chosen:
            known = ", ".join(s.id for s in statuses)
            raise RequestError(f"no Envoy {wanted!r}; known: {known}")
        return chosen

    async def _health_check(self, body: Payload) -> Payload:
        _only(body, ())
        statuses = self.control.envoys()
        mqtt = self.control.mqtt_connected()
        return {
            "healthy": mqtt and all(s.ready for s in statuses),
            "mqtt": "connected" if mqtt else "disconnected",
            "envoys": {s.id: s.health_entry() for s in statuses},
        }

    async def _poll(self, body: Payload) -> Payload:
        _only(body, ("envoy", "cadence"))
        cadence = body.get("cadence", "system")
        if cadence not in CADENCES:
            raise RequestError("cadence must be 'system' or 'devices'")
        envoys = self._envoys(body)
        floor = POLL_FLOORS[cadence]
        waits = {}
        for status in envoys:
            age = self.control.poll_age(status.id, cadence)
            if age is not None and age < floor:
                waits[status.id] = max(1, round(floor - age + 0.5))
        if waits:
            wait = max(waits.values())
            names = ", ".join(sorted(waits))
            raise RequestError(
                f"refused: the last {cadence} poll of {names} started less than {floor:g} s ago; "
                f"try again in {wait} s",
                {"retry_after": wait, "cadence": cadence},
            )
        failures: dict[str, str] = {}
        for status in envoys:
            try:
                await self.control.poll_now(status.id, cadence)
            except Exception as exc:
                failures[status.id] = _short(exc)
        if failures:
            reasons = "; ".join(f"{envoy}: {reason}" for envoy, reason in sorted(failures.items()))
            raise RequestError(f"poll failed: {reasons}", {"cadence": cadence, "failed": sorted(failures)})
        return {"cadence": cadence, "polled": [s.id for s in envoys]}

    async def _token_refresh(self, body: Payload) -> Payload:
        _only(body, ("envoy",))
        envoys = [s for s in self._envoys(body) if s.auth_mode == "token"]
        if not envoys:
            raise RequestError("no Envoy here uses token authentication (firmware 7 and later)")
        now = self._monotonic()
        waits = {
            s.id: max(1, round(TOKEN_REFRESH_FLOOR - (now - self._token_refreshed_at[s.id]) + 0.5))
            for s in envoys
            if now - self._token_refreshed_at.get(s.id, -math.inf) < TOKEN_REFRESH_FLOOR
        }
        if waits:
            wait = max(waits.values())
            raise RequestError(
                f"refused: a token was requested for {', '.join(sorted(waits))} less than "
                f"{TOKEN_REFRESH_FLOOR:g} s ago; try again in {wait} s",
                {"retry_after": wait},
            )
        for status in envoys:
            self._token_refreshed_at[status.id] = now
        refreshed: dict[str, Payload] = {}
        failures: dict[str, str] = {}
        for status in envoys:
            try:
                await self.control.refresh_token(status.id)
            except Exception as exc:
                failures[status.id] = _short(exc)
        for status in self.control.envoys():
            if status.id in {s.id for s in envoys} and status.id not in failures:
                refreshed[status.id] = {
                    "token_type": status.token_type,
                    "token_expires_at": _iso(status.token_expires_at),
                }
        self.publish_info()
        if failures:
            reasons = "; ".join(f"{envoy}: {reason}" for envoy, reason in sorted(failures.items()))
            raise RequestError(f"token refresh failed: {reasons}", {"refreshed": refreshed})
        return {"refreshed": refreshed}

    async def _republish(self, body: Payload) -> Payload:
        _only(body, ())
        configs = await self.control.republish_discovery()
        self.publish_info(force=True)
        return {"configs": configs}

    async def _set_log_level(self, body: Payload) -> Payload:
        _only(body, ("level",))
        level = body.get("level")
        if not isinstance(level, str) or level.lower() not in LOG_LEVELS:
            raise RequestError(f"level must be one of {', '.join(LOG_LEVELS)}")
        previous = self.control.set_log_level(level.lower())
        self.publish_info()
        return {"level": level.lower(), "previous": previous}


def _body(payload: bytes) -> Payload:
    if not payload.strip():
        return {}
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise RequestError("the request body must be a JSON object (it is not JSON)") from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


def _transaction(body: Mapping[str, Any]) -> Any:
    transaction = body.get("transaction")
    if transaction is None:
        return None
    if isinstance(transaction, bool) or not isinstance(transaction, str | int | float):
        raise RequestError("transaction must be a string or a number")
    if isinstance(transaction, str) and len(transaction) > _TRANSACTION_MAX:
        raise RequestError(f"transaction is longer than {_TRANSACTION_MAX} characters")
    return transaction


def _only(body: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - {"transaction", *allowed})
    if unknown:
        accepted = ", ".join(allowed) if allowed else "nothing but transaction"
        raise RequestError(f"unknown key {unknown[0]!r} (this command takes {accepted})")


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
