"""The asyncio supervisor: owns the MQTT publisher, one poller per Envoy and the health listener.

A task that raises is logged with its context and restarted with backoff; it never takes the daemon
down silently. The only fatal failure is an MQTT side that cannot be restored (the broker refuses our
credentials): the process then exits non-zero so Docker or systemd restarts it.
SIGTERM / SIGINT publish `offline` on every availability topic and exit 0 within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from .bridge import BridgeApi
from .bridge_control import PollerControl
from .clock import SYSTEM_CLOCK, Clock
from .config import Settings
from .controls.service import EnvoyControls, retire_controls
from .errors import ConfigError, MqttError
from .health import HealthServer
from .logging import log_level
from .metrics import Metrics
from .mqtt.publisher import Publisher
from .mqtt.topics import Topics
from .poller import EnvoyPoller
from .retry import RetryPolicy
from .state import prepare_state_dir

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_MQTT = 5
SHUTDOWN_TIMEOUT = 4.0
TASK_RESTART_CAP = 300.0


async def supervise(
    name: str,
    factory: Callable[[], Awaitable[None]],
    clock: Clock,
    *,
    fatal: tuple[type[BaseException], ...] = (),
) -> None:
    """Run `factory()` forever: log and restart it with capped, jittered backoff when it raises."""
    policy = RetryPolicy(initial=1.0, cap=TASK_RESTART_CAP, clock=clock)
    while True:
        policy.started()
        try:
            await factory()
            log.warning("task_ended", action="restarting", task=name)
        except asyncio.CancelledError:
            raise
        except fatal:
            raise
        except Exception:
            log.exception("task_crashed", action="restarting", task=name, retry_in=round(policy.ceiling(), 1))
        policy.reset_after_stable(10 * policy.ceiling())  # it ran fine for a while: start over
        await clock.sleep(policy.failed())


class Daemon:
    def __init__(self, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self.clock = clock
        self.topics = Topics(settings.mqtt.base_topic, settings.mqtt.discovery_prefix)
        self.metrics = Metrics()
        self.publisher = Publisher(settings.mqtt, self.topics, clock=clock)
        count = len(settings.envoy)
        self.pollers = [
            EnvoyPoller(
                envoy,
                settings,
                self.publisher,
                self.topics,
                metrics=self.metrics,
                clock=clock,
                stagger=index / count,
            )
            for index, envoy in enumerate(settings.envoy)
        ]
        self.controls = {
            poller.envoy.label: EnvoyControls(
                poller.envoy,
                settings.controls,
                poller.client,
                self.publisher,
                self.topics,
                clock,
                announce=poller.announcer.controls,
            )
            for poller in self.pollers
            if poller.envoy.controls
        }
        self.bridge_control = PollerControl(self.pollers, self.publisher)
        self.bridge = BridgeApi(
            settings,
            self.publisher,
            self.topics,
            self.bridge_control,
            started_at=clock.time(),
            log_level=log_level,
        )
        self.health: HealthServer | None = (
            HealthServer(settings.health, self.metrics, self.readiness, status=self.bridge_control.envoys)
            if settings.health.enabled
            else None
        )
        self._stop = asyncio.Event()
        self._reconnects_seen = 0

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        parts: dict[str, Any] = {"mqtt": "connected" if self.publisher.connected.is_set() else "disconnected"}
        ready = self.publisher.connected.is_set()
        if ready and self.publisher.refusal is not None:
            parts["mqtt"] = f"refused: {self.publisher.refusal}"
            ready = False
        envoys: dict[str, str] = {}
        for poller in self.pollers:
            ok, why = poller.ready()
            envoys[poller.serial or poller.envoy.label] = why
            ready = ready and ok
        parts["envoys"] = envoys
        parts["ready"] = ready
        return ready, parts

    def request_stop(self) -> None:
        self._stop.set()

    def _sync_metrics(self) -> None:
        self.metrics.sync_published(self.publisher.messages_published)
        reconnects = self.publisher.reconnects
        self.metrics.mqtt_reconnects.inc(max(0, reconnects - self._reconnects_seen))
        self._reconnects_seen = reconnects

    async def _metrics_loop(self) -> None:
        while True:
            self._sync_metrics()
            self.bridge.publish_info()  # when it changed: firmware, token, availability, log level
            await self.clock.sleep(5)

    async def _controls(self, poller: EnvoyPoller) -> None:
        """Once the Envoy is connected and probed: its controls (README "Controls"), offered anew after a
        new probe (a firmware change); with controls off, the removal of what an earlier run announced."""
        controls = self.controls.get(poller.envoy.label)
        while True:
            while poller.features is None or poller.serial is None or poller.info is None:
                await self.clock.sleep(0.5)
            serial, features, info = poller.serial, poller.features, poller.info
            if controls is None:
                retire_controls(self.publisher, self.topics, serial)
                poller.announcer.controls(())
                return

            run_controls = functools.partial(
                controls.run,
                serial,
                features,
                auth_mode=info.auth_mode,
                token_type=poller.client.auth_status.token_type,
            )
            task = asyncio.create_task(supervise(f"controls {poller.envoy.label}", run_controls, self.clock))
            try:
                while poller.features is features:
                    await self.clock.sleep(1.0)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            log.info("controls_redecided", reason="envoy probed again", envoy=poller.envoy.label)

    async def _prepare(self) -> None:
        """What must hold before anything runs; a ConfigError names the key (exit 2, no traceback)."""
        state_dir = self.settings.state_dir
        try:
            prepare_state_dir(state_dir)
        except (NotADirectoryError, FileExistsError):
            raise ConfigError(
                f"invalid configuration:\n  - state_dir: {state_dir} is a file or lies under one; "
                "give a directory (environment: ENVOY2MQTT_STATE_DIR)"
            ) from None
        if self.health is not None:
            health = self.settings.health
            try:
                await self.health.start()
            except socket.gaierror as exc:
                raise ConfigError(
                    f"invalid configuration:\n  - health.host: cannot listen on {health.host} "
                    f"({exc.strerror or exc}): give an address of this machine, e.g. 127.0.0.1 or 0.0.0.0 "
                    "(environment: ENVOY2MQTT_HEALTH__HOST)"
                ) from None
            except OSError as exc:
                raise ConfigError(
                    f"invalid configuration:\n  - health.port: cannot listen on {health.host}:{health.port} "
                    f"({exc.strerror or exc}): choose a free port or another health.host "
                    "(environment: ENVOY2MQTT_HEALTH__PORT)"
                ) from None

    async def run(self) -> int:
        try:
            await self._prepare()
        except ConfigError:
            with contextlib.suppress(Exception):
                await self.bridge.close()
            await self._close_pollers()
            raise
        exit_code = EXIT_OK
        self.bridge.start()
        try:
            async with asyncio.TaskGroup() as group:
                mqtt_task = group.create_task(self.publisher.run(), name="mqtt")
                for poller in self.pollers:
                    group.create_task(
                        supervise(f"envoy {poller.envoy.label}", poller.run, self.clock),
                        name=f"envoy {poller.envoy.label}",
                    )
                for poller in self.pollers:
                    group.create_task(self._controls(poller), name=f"controls {poller.envoy.label}")
                group.create_task(supervise("metrics", self._metrics_loop, self.clock))
                stop_task = group.create_task(self._stop.wait(), name="stop")
                done, _ = await asyncio.wait({mqtt_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                if mqtt_task in done and not mqtt_task.cancelled() and mqtt_task.exception() is not None:
                    raise mqtt_task.exception()  # type: ignore[misc]
                await self._shutdown()
                raise _Stopped
        except* _Stopped:
            pass
        except* MqttError as group_error:
            for exc in group_error.exceptions:
                log.error(
                    "mqtt_unrecoverable", action="exiting so the service manager restarts us", reason=str(exc)
                )
            exit_code = EXIT_MQTT
        finally:
            await self.bridge.close()
            await self._close_pollers()
            if self.health is not None:
                await self.health.stop()
        return exit_code

    async def _close_pollers(self) -> None:
        for poller in self.pollers:
            with contextlib.suppress(Exception):
                await poller.close()

    async def _shutdown(self) -> None:
        offline = [self.topics.envoy_availability(p.serial) for p in self.pollers if p.serial]
        log.info("stopping", action="publishing offline")
        try:
            await asyncio.wait_for(self.publisher.shutdown(offline), SHUTDOWN_TIMEOUT)
        except TimeoutError:
            log.warning("offline_publish_unacknowledged")


class _Stopped(Exception):
    """Raised inside the task group to cancel every task on a clean stop."""


async def run_daemon(
    settings: Settings,
    clock: Clock = SYSTEM_CLOCK,
    *,
    reload: Callable[[], Settings] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT. SIGHUP (`systemctl reload`) reads the configuration again with
    `reload`: a valid one restarts the bridge in-process with it (a clean stop first, as on SIGTERM);
    an invalid one is logged and the running configuration kept. Without `reload`, SIGHUP stops."""
    loop = asyncio.get_running_loop()
    while True:
        daemon = Daemon(settings, clock)
        reloaded: list[Settings] = []

        def on_hangup(daemon: Daemon = daemon, reloaded: list[Settings] = reloaded) -> None:
            if reload is None:
                log.info("sighup_received", action="stopping")
                daemon.request_stop()
                return
            try:
                new_settings = reload()
            except ConfigError as exc:
                log.error(
                    "config_reload_failed",
                    signal="SIGHUP",
                    action="kept running configuration",
                    reason=str(exc),
                )
                return
            log.info("config_reloading", signal="SIGHUP")
            reloaded.append(new_settings)
            daemon.request_stop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, daemon.request_stop)
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, on_hangup)
        log.info(
            "envoy2mqtt_starting",
            envoys=[e.label for e in settings.envoy],
            broker=f"{settings.mqtt.host}:{settings.mqtt.port}",
            base_topic=settings.mqtt.base_topic,
            discovery=settings.mqtt.discovery,
        )
        code = await daemon.run()
        if code == EXIT_OK and reloaded:
            settings = reloaded[-1]
            log.info("envoy2mqtt_restarting", reason="configuration reloaded")
            continue
        log.info("envoy2mqtt_stopped", exit_code=code)
        return code
