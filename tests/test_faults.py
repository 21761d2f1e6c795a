"""Surviving the real world: broker crashes, long Envoy outages, 401 storms, a dead Enphase cloud, a slow Envoy.

Two kinds of tests live here:

- Real processes: the daemon as a `python -m envoy2mqtt run` subprocess, a real mosquitto that is killed
  and restarted, the simulator over real HTTP/TLS (broker cycles, cloud down with a cached token, a
  30-second Envoy).
- Compressed time: one EnvoyPoller in this process on a ManualClock, against the simulator over real
  HTTP and a real Publisher on a real mosquitto (outage of ten minutes, a storm of 401s over hours, an
  expiring token while the cloud is down). Virtual time moves one step at a time and each step waits
  until the poller sleeps again, so "after three failed polls" and "once per backoff step" are exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import random
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from envoy2mqtt.clock import SYSTEM_CLOCK, ManualClock
from envoy2mqtt.config import (
    CloudSettings,
    EnvoySettings,
    MqttSettings,
    PollingSettings,
    Settings,
    TokenSettings,
)
from envoy2mqtt.envoy import endpoints
from envoy2mqtt.envoy.client import MAX_ATTEMPTS, EnvoyClient
from envoy2mqtt.metrics import Metrics
from envoy2mqtt.model import Payload
from envoy2mqtt.mqtt.publisher import Publisher, encode_payload
from envoy2mqtt.mqtt.topics import Topics
from envoy2mqtt.poller import BREAKER_CAP, EnvoyPoller
from envoy2mqtt.simulator import Simulator, SimulatorConfig
from tests.conftest import Mosquitto
from tests.e2e import Daemon, Watcher, envoy_table, write_config

pytestmark = [pytest.mark.timeout(240)]

BASE = "envoy2mqtt"
SYSTEM_INTERVAL = 10.0
# 2026-05-28 08:00 UTC: virtual runs of several hours stay within the sites' local day (no midnight resets)
MORNING = 1_779_955_200.0


# ---------------------------------------------------------------------------------------------- helpers


async def retained_on_broker(port: int) -> dict[str, bytes]:
    """Every retained message the broker holds now (a fresh subscriber gets them all at once).

    The broker sends a new subscription's retained messages before anything published after the
    SUBSCRIBE: a sentinel of our own that comes back marks the end of them, however loaded the machine.
    """
    seen: dict[str, bytes] = {}
    sentinel = f"sentinel/{uuid.uuid4().hex}"
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe("#", qos=1)
        await client.publish(sentinel, b"end", qos=1)
        async with asyncio.timeout(30):
            async for message in client.messages:
                topic = str(message.topic)
                if topic == sentinel:
                    break
                # a live publish arriving after the subscription replaces the retained copy at the
                # broker too: keep the latest of both (the bridge may still be sending)
                if isinstance(message.payload, bytes) and (message.retain or topic in seen):
                    if message.payload:
                        seen[topic] = message.payload
                    else:
                        seen.pop(topic, None)
    return seen


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def kill_broker(broker: Mosquitto, sig: signal.Signals) -> None:
    assert broker.proc is not None
    broker.proc.send_signal(sig)
    broker.proc.wait(10)
    broker.proc = None


class StepClock(ManualClock):
    """A ManualClock that tells how many sleeps are pending (how many tasks wait for virtual time)."""

    @property
    def sleepers(self) -> int:
        return len(self._waiters)


@dataclass(frozen=True, slots=True)
class Published:
    at: float  # virtual monotonic time
    topic: str
    payload: bytes
    failures: int  # the poller's failed polls in a row at that moment


class RecordingPublisher(Publisher):
    """The real publisher (real MQTT, real time), plus a log of what the poller handed it, in virtual time."""

    def __init__(self, settings: MqttSettings, topics: Topics, virtual: StepClock) -> None:
        super().__init__(settings, topics, clock=SYSTEM_CLOCK)
        self.virtual = virtual
        self.records: list[Published] = []
        self.failures: Callable[[], int] = lambda: 0

    def publish(self, topic: str, payload: Payload | str | bytes, retain: bool | None = None) -> None:
        self.records.append(
            Published(self.virtual.monotonic(), topic, encode_payload(payload), self.failures())
        )
        super().publish(topic, payload, retain)


@dataclass
class Harness:
    """One EnvoyPoller on virtual time against the simulator, publishing through mosquitto."""

    clock: StepClock
    sim: Simulator
    poller: EnvoyPoller
    publisher: RecordingPublisher
    sleepers: int = 2  # the system and the device cadence
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def serial(self) -> str:
        return self.sim.serial

    def topic(self, leaf: str) -> str:
        return f"{BASE}/{self.serial}/{leaf}"

    async def settle(self) -> None:
        """Wait (in real time) until every cadence sleeps on the virtual clock again."""
        await asyncio.sleep(0)
        deadline = time.monotonic() + 30
        while self.clock.sleepers < self.sleepers:
            for task in self._tasks:
                if task.done():
                    task.result()  # a crashed poller fails the test with its own traceback
                    raise AssertionError("the poller stopped")
            if time.monotonic() > deadline:
                raise AssertionError("the poller did not go back to sleep within 30 s of real time")
            await asyncio.sleep(0.002)

    async def advance(
        self, seconds: float, step: float = 1.0, until: Callable[[], bool] | None = None
    ) -> float:
        """Move virtual time forward in steps, settling after each; stop early once `until()` holds."""
        moved = 0.0
        while moved < seconds:
            if until is not None and until():
                break
            self.clock.advance(step)
            moved += step
            await self.settle()
        return moved

    def published(self, leaf: str, since: float = -math.inf) -> list[Published]:
        topic = self.topic(leaf)
        return [r for r in self.publisher.records if r.topic == topic and r.at >= since]

    def gateway(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.published("gateway")[-1].payload)
        return result


@contextlib.asynccontextmanager
async def harness(
    tmp_path: Path,
    broker: Mosquitto,
    sim_config: SimulatorConfig,
    *,
    token: TokenSettings | None = None,
    cloud_credentials: bool = True,
    device_interval: float = 86400,
) -> AsyncIterator[Harness]:
    clock = StepClock(start=MORNING)
    async with Simulator(sim_config, clock=clock) as sim:
        envoy = EnvoySettings(
            host=sim.url,
            enlighten_username=sim.enlighten_username if cloud_credentials else "",
            enlighten_password=SecretStr(sim.enlighten_password if cloud_credentials else ""),
        )
        settings = Settings(
            state_dir=tmp_path / "state",
            mqtt=MqttSettings(host="127.0.0.1", port=broker.port, base_topic=BASE),
            # By default a device cadence of a day: the system cadence alone drives what a test counts.
            polling=PollingSettings(system_interval=SYSTEM_INTERVAL, device_interval=device_interval),
            enphase_cloud=CloudSettings(
                login_url=sim.login_url, token_url=sim.token_url, ca_file=sim.ca_file, timeout=10
            ),
            token=token or TokenSettings(),
            envoy=[envoy],
        )
        topics = Topics(BASE, "homeassistant")
        publisher = RecordingPublisher(settings.mqtt, topics, clock)
        poller = EnvoyPoller(envoy, settings, publisher, topics, metrics=Metrics(), clock=clock)
        publisher.failures = lambda: poller.failures
        h = Harness(clock, sim, poller, publisher)
        h._tasks = [asyncio.create_task(publisher.run()), asyncio.create_task(poller.run())]
        try:
            await asyncio.wait_for(publisher.connected.wait(), 10)
            await h.settle()
            await h.advance(30)  # connected, probed, the first polls done
            assert poller.available is True, poller.last_error
            yield h
        finally:
            for task in h._tasks:
                task.cancel()
            for task in h._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await poller.close()


def bridge_lines(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the daemon would print at its default level (info): the poller's and the client's lines."""
    return [entry for entry in logs if "envoy" in entry and entry.get("log_level") != "debug"]


def availability_changes(h: Harness, since: float = -math.inf) -> list[Published]:
    return h.published("availability", since)


# ------------------------------------------------------------------------------------- Envoy outage


SYSTEM_ENDPOINTS = 4  # what one system poll of metered-3phase-iq reads: production.json, readings, 2 ensemble


@pytest.mark.parametrize("kind", ["refused", "server_error", "drop"])
async def test_ten_minute_envoy_outage(kind: str, mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Ten minutes without a working Envoy: few requests, few log lines, availability exact, recovery alone."""
    async with harness(tmp_path, mosquitto, SimulatorConfig(profile="metered-3phase-iq")) as h:
        threshold = h.poller.polling.failures_before_offline
        requests_before = sum(h.sim.requests.values())
        down_at = h.clock.monotonic()
        with capture_logs() as logs:
            if kind == "refused":
                h.sim.faults.offline()  # connections refused (the Envoy reboots or lost its network)
            elif kind == "server_error":
                h.sim.faults.server_error(10**9, 503)  # the Envoy answers, with 503s only
            else:
                h.sim.faults.drop(10**9)  # connections accepted, then closed without an answer
            await h.advance(600)
            outage_lines = bridge_lines(logs)
            requests_during = sum(h.sim.requests.values()) - requests_before
            failed_polls = h.poller.failures

            # availability: offline exactly when the threshold-th poll in a row failed, not before, once
            changes = availability_changes(h, down_at)
            assert [c.payload for c in changes] == [b"offline"]
            assert changes[0].failures == threshold
            assert h.gateway()["last_error"]
            assert h.poller.last_error is not None
            assert "Authorization" not in h.poller.last_error

            # bounded: the circuit breaker spaces the trials out (naively 60 polls in ten minutes)
            assert threshold <= failed_polls <= 10, failed_polls
            if kind != "refused":  # a refused connection never reaches the simulator's counters
                assert 0 < requests_during <= failed_polls * SYSTEM_ENDPOINTS * MAX_ATTEMPTS
            # bounded: each distinct problem once, not once per poll or per retry
            assert len(outage_lines) <= 2 + SYSTEM_ENDPOINTS, [e["event"] for e in outage_lines]
            assert sum(1 for e in outage_lines if e["event"] == "envoy_availability") == 1

            # the Envoy returns: online on the first successful poll, without any help
            h.sim.faults.clear()
            await h.sim.start_envoy()
            back_at = h.clock.monotonic()
            failures_at_return = h.poller.failures
            await h.advance(BREAKER_CAP + 2 * SYSTEM_INTERVAL, until=lambda: h.poller.available is True)
        assert h.poller.available is True
        online = availability_changes(h, back_at)
        assert [c.payload for c in online] == [b"online"]
        systems = h.published("system", back_at)
        assert systems
        assert systems[0].at == online[0].at  # the same poll: its first success after the return
        assert h.poller.failures == 0
        assert failures_at_return == failed_polls  # no failed poll between the return and the recovery
        await h.advance(2 * SYSTEM_INTERVAL)
        assert h.gateway()["last_error"] is None
        assert len(h.published("system", back_at)) >= 2  # regular polling again

        # and the broker holds the same truth
        retained = await retained_on_broker(mosquitto.port)
        assert retained[h.topic("availability")] == b"online"
        assert json.loads(retained[h.topic("gateway")])["last_error"] is None


# ------------------------------------------------------------------------------------- 401 storm

STORM = 3 * 3600.0


async def test_storm_of_401s_one_revalidation_and_one_refresh_per_backoff_step(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Every request answers 401 for hours: per token backoff step one data request, one check_jwt of the
    current token, one token from the cloud (and its check_jwt); nothing at all between the steps."""
    token_settings = TokenSettings(max_backoff=960)
    async with harness(
        tmp_path, mosquitto, SimulatorConfig(profile="metered-3phase-iq"), token=token_settings
    ) as h:
        sim = h.sim
        data = endpoints.METERS_READINGS  # read every system cycle (production.json every 5 minutes)

        def counts() -> tuple[int, int, int]:
            return sim.requests[data], sim.requests[endpoints.CHECK_JWT], sim.cloud_calls["tokens"]

        start = counts()
        storm_at = h.clock.monotonic()
        sim.faults.unauthorized(10**9)  # everything answers 401: data, check_jwt, even /info
        steps: list[tuple[float, tuple[int, int, int]]] = []  # (virtual time, deltas) whenever counts moved
        previous = start
        with capture_logs() as logs:
            while h.clock.monotonic() - storm_at < STORM:
                await h.advance(1)
                now = counts()
                if now != previous:
                    steps.append(
                        (
                            h.clock.monotonic() - storm_at,
                            tuple(b - a for a, b in zip(previous, now, strict=True)),
                        )
                    )
                    previous = now
        # each backoff step: exactly one data request, two check_jwt (current token, new token), one refresh
        assert steps, "no request at all during the storm"
        assert all(deltas == (1, 2, 1) for _, deltas in steps), steps
        # the steps follow the doubling backoff (60 s, 120 s, ... capped at max_backoff), not the 10 s cadence
        times = [at for at, _ in steps]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        for i, gap in enumerate(gaps, start=1):
            assert gap >= min(60 * 2 ** (i - 1), token_settings.max_backoff), (i, gaps)
        assert len(steps) <= 2 + math.ceil(STORM / token_settings.max_backoff) + 5, len(steps)
        assert sim.requests[endpoints.INFO] <= 1 + len(steps) * 3 * MAX_ATTEMPTS + 60
        assert h.poller.available is False
        assert [c.payload for c in availability_changes(h, storm_at)] == [b"offline"]
        reason = h.gateway()["last_error"]
        assert reason
        assert "refuse" in reason or "not authenticated" in reason, reason
        # log lines: the token manager's three per backoff step, the rest once per problem
        lines = [e["event"] for e in bridge_lines(logs)]
        per_step = {"token_rejected_by_envoy", "token_fetch_failed", "envoy_unauthenticated"}
        assert sum(1 for e in lines if e in per_step) <= 3 * len(steps), lines
        assert len([e for e in lines if e not in per_step]) <= 6, lines

        # the Envoy accepts our token again: the next backoff step recovers, without a new token
        sim.faults.clear()
        back_at = h.clock.monotonic()
        tokens_before = sim.cloud_calls["tokens"]
        await h.advance(2 * token_settings.max_backoff, until=lambda: h.poller.available is True)
        assert h.poller.available is True
        assert sim.cloud_calls["tokens"] - tokens_before <= 1
        assert [c.payload for c in availability_changes(h, back_at)] == [b"online"]
        await h.advance(SYSTEM_INTERVAL)
        assert h.gateway()["last_error"] is None
        assert h.poller.client.auth_status.ok


# ------------------------------------------------------------------------ a cancel lost by wait_for


class AckingClient:
    """Stands in for aiomqtt.Client in one call only: `publish` waits for the broker's acknowledgement with
    `asyncio.wait_for`, as aiomqtt 2.x does, and the test decides when that acknowledgement arrives."""

    def __init__(self) -> None:
        self.acks: list[asyncio.Future[None]] = []

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        await asyncio.wait_for(ack, timeout=10)


async def test_a_cancel_that_lands_with_the_acknowledgement_still_stops_the_sender() -> None:
    """On Python 3.11 `wait_for` returns the result instead of raising when the cancel and the PUBACK land
    together; the sender then ran on and waited for work forever, and so did whoever cancelled it (a
    reconnect, shutdown, SIGTERM). Found as a rare hang of the 401-storm test's teardown."""
    publisher = Publisher(MqttSettings(host="127.0.0.1"), Topics(BASE, "homeassistant"))
    client = AckingClient()
    publisher.connected.set()
    publisher.publish(f"{BASE}/x/system", {"production_power": 1})
    sender = asyncio.create_task(publisher._send(client))  # type: ignore[arg-type]
    while not client.acks:
        await asyncio.sleep(0)
    client.acks[0].set_result(None)
    sender.cancel()  # the same loop iteration as the acknowledgement
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(sender, 5)


# ------------------------------------------------------------------------------------- cloud down


async def test_cloud_down_while_the_token_expires(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """An installer token (two hours) and a dead Enphase cloud: polling goes on while the token is valid,
    then a clear offline state that says why, a few spaced cloud attempts, and recovery with the cloud."""
    lifetime = 2 * 3600.0
    token_settings = TokenSettings(max_backoff=600)
    config = SimulatorConfig(profile="metered-3phase-iq", token_type="installer", token_lifetime=lifetime)
    async with harness(tmp_path, mosquitto, config, token=token_settings, device_interval=300) as h:
        sim = h.sim
        expires_at = h.poller.client.auth_status.token_expires_at
        assert expires_at is not None
        down_at = h.clock.monotonic()
        logins_before = sim.cloud_calls["login"]
        sim.cloud.down = True
        with capture_logs() as logs:
            # until a minute before expiry: no interruption, although the renewal (due in the last hour) fails
            valid_for = expires_at - h.clock.time()
            await h.advance(valid_for - 60)
            assert availability_changes(h, down_at) == []
            assert h.poller.available is True
            assert len(h.published("system", down_at)) >= (valid_for - 60) / SYSTEM_INTERVAL - 2
            assert h.gateway()["last_error"] is None
            # the renewal attempts follow the cloud backoff (60 s doubling to 600 s), not the 5-minute cadence
            renewals = sim.cloud_calls["login"] - logins_before
            assert 1 <= renewals <= 3600 / token_settings.max_backoff + 5, renewals

            # the token expires: offline after the threshold of failed polls, and the gateway says why
            expired_at = h.clock.monotonic()
            logins_at_expiry = sim.cloud_calls["login"]
            await h.advance(1800)
            changes = availability_changes(h, expired_at)
            assert [c.payload for c in changes] == [b"offline"]
            assert changes[0].failures == h.poller.polling.failures_before_offline
            reason = h.gateway()["last_error"]
            assert reason.startswith("the token expired at "), reason
            assert "503" in reason
            assert not h.poller.client.auth_status.ok
            # spaced cloud attempts while it stays down (the system cadence would try 180 times)
            assert sim.cloud_calls["login"] - logins_at_expiry <= 1800 / token_settings.max_backoff + 2
            assert sim.cloud_calls["tokens"] == 1  # the login never succeeded
            events = [e["event"] for e in bridge_lines(logs)]
            assert events.count("poll_failed") <= 3, events
            assert events.count("envoy_availability") == 1

        # the cloud returns: a new token at the next backoff step, online, the error cleared
        sim.cloud.down = False
        back_at = h.clock.monotonic()
        await h.advance(2 * token_settings.max_backoff, until=lambda: h.poller.available is True)
        assert h.poller.available is True
        assert [c.payload for c in availability_changes(h, back_at)] == [b"online"]
        assert sim.cloud_calls["tokens"] == 2
        await h.advance(SYSTEM_INTERVAL)
        gateway = h.gateway()
        assert gateway["last_error"] is None
        status = h.poller.client.auth_status
        assert status.ok
        assert status.token_expires_at is not None
        assert status.token_expires_at > h.clock.time() + lifetime - 120


# ------------------------------------------------------------------ real processes: broker crashes


def contract_complete(watcher: Watcher, serial: str, inverters: int) -> bool:
    latest = watcher.latest
    prefix = f"{BASE}/{serial}"
    return (
        latest.get(f"{BASE}/bridge/availability") == b"online"
        and latest.get(f"{prefix}/availability") == b"online"
        and f"{prefix}/system" in latest
        and f"{prefix}/gateway" in latest
        and sum(1 for t in latest if t.startswith(f"{prefix}/inverter/")) == inverters
        and sum(1 for t in latest if t.startswith("homeassistant/device/")) == inverters + 1
    )


def comparable(topic: str, payload: bytes) -> Any:
    """What must not change across broker crashes: configs, availability and gateway facts exactly, the
    readings' keys (their values move: the simulated site is live)."""
    if not payload.startswith(b"{"):
        return payload
    value = json.loads(payload)
    if topic.endswith("/gateway"):
        value.pop("last_poll_ok", None)
        value.pop("poll_duration", None)
        return value
    if topic.startswith(f"{BASE}/"):
        return sorted(value)
    return value


@pytest.mark.slow
async def test_twenty_broker_crashes(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Kill mosquitto 20 times (SIGKILL or SIGTERM, random short down times) under a running daemon."""
    rng = random.Random(20)
    async with Simulator(SimulatorConfig(profile="legacy-unmetered", live=True, time_scale=60)) as sim:
        config = write_config(tmp_path, mosquitto.port, envoy_table(sim), sim=sim, system_interval=10)
        daemon = Daemon(config, tmp_path / "daemon.log")
        await daemon.start()
        assert daemon.proc is not None
        pid = daemon.proc.pid
        expected_inverters = len(await _inverter_serials(sim, tmp_path / "probe"))
        try:
            async with Watcher(mosquitto.port) as watcher:
                await watcher.wait_for(
                    lambda: contract_complete(watcher, sim.serial, expected_inverters),
                    40,
                    "every contract topic",
                )
            before = await retained_on_broker(mosquitto.port)
            first_system = json.loads(before[f"{BASE}/{sim.serial}/system"])
            rss: dict[int, int] = {}
            for cycle in range(1, 21):
                kill_broker(mosquitto, signal.SIGKILL if cycle % 2 else signal.SIGTERM)
                await asyncio.sleep(rng.uniform(0.05, 1.5))
                mosquitto.start()
                # the daemon is back once the broker holds its bridge availability again
                deadline = time.monotonic() + 30
                while True:
                    retained = await retained_on_broker(mosquitto.port)
                    if retained.get(f"{BASE}/bridge/availability") == b"online":
                        break
                    assert time.monotonic() < deadline, f"cycle {cycle}: no reconnection"
                assert daemon.running, daemon.log_text()[-3000:]
                if cycle in (5, 20):
                    await asyncio.sleep(1)  # let the replay finish before measuring
                    rss[cycle] = rss_kib(pid)

            # after the last restart: the very same retained set, the same values, fresh readings
            deadline = time.monotonic() + 30
            after: dict[str, bytes] = {}
            while time.monotonic() < deadline:
                after = await retained_on_broker(mosquitto.port)
                if set(after) == set(before):
                    break
                await asyncio.sleep(0.5)
            assert set(after) == set(before), (
                sorted(set(before) - set(after)),
                sorted(set(after) - set(before)),
            )
            for topic, payload in before.items():
                assert comparable(topic, after[topic]) == comparable(topic, payload), topic
            # fresh: the retained reading comes from a poll after the last restart (the site is live)
            system_topic = f"{BASE}/{sim.serial}/system"
            last_before_restart = json.loads(after[system_topic])
            # a CT-less Envoy's production is read once per device interval (60 s here): the 5-minute
            # inverter reports are all it has
            deadline = time.monotonic() + 90
            while json.loads(after[system_topic])["timestamp"] <= last_before_restart["timestamp"]:
                assert time.monotonic() < deadline, "no reading after the last restart"
                await asyncio.sleep(1)
                after = await retained_on_broker(mosquitto.port)
            system = json.loads(after[system_topic])
            assert system["timestamp"] > first_system["timestamp"]
            assert system["production_energy_lifetime"] >= first_system["production_energy_lifetime"]
            assert daemon.running
            # the daemon saw every crash and came back each time (20 reconnections at least)
            connects = [line for line in daemon.log_lines() if line.get("event") == "mqtt_connected"]
            assert len(connects) >= 21
            # no leak: memory after cycle 20 within noise of memory after cycle 5
            assert rss[20] <= rss[5] * 1.10 + 4096, rss
            errors = [line for line in daemon.log_lines() if line.get("level") in ("error", "critical")]
            assert errors == []
        finally:
            code, _ = await daemon.terminate()
        assert code == 0, daemon.log_text()[-3000:]


async def _inverter_serials(sim: Simulator, state_dir: Path) -> list[str]:
    """The inverters the simulated Envoy lists (digest-protected on legacy firmware: ask via our client)."""
    async with EnvoyClient(
        EnvoySettings(host=sim.url), CloudSettings(), TokenSettings(), state_dir
    ) as client:
        await client.connect()
        rows = await client.get_json(endpoints.API_V1_INVERTERS)
    return [str(row["serialNumber"]) for row in rows]


# ------------------------------------------------------- real processes: cached token, slow Envoy


@pytest.mark.slow
async def test_cloud_down_with_a_cached_token_publishing_goes_on(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A restart while the Enphase cloud is down: the stored token serves, nothing asks the cloud."""
    async with (
        Simulator(SimulatorConfig(profile="metered-3phase-iq")) as sim,
        Watcher(mosquitto.port) as watcher,
    ):
        config = write_config(tmp_path, mosquitto.port, envoy_table(sim), sim=sim, system_interval=10)
        system_topic = f"{BASE}/{sim.serial}/system"
        availability = f"{BASE}/{sim.serial}/availability"
        first = Daemon(config, tmp_path / "first.log")
        await first.start()
        await watcher.wait_for(lambda: system_topic in watcher.latest, 30, "the first daemon's reading")
        code, _ = await first.terminate()
        assert code == 0
        assert sim.cloud_calls["tokens"] == 1

        sim.cloud.down = True
        calls = dict(sim.cloud_calls)
        restarted = time.monotonic()
        second = Daemon(config, tmp_path / "second.log")
        await second.start()
        try:
            await watcher.wait_for(
                lambda: sum(1 for e in watcher.since(restarted) if e.topic == system_topic) >= 2,
                40,
                "two readings from the restarted daemon",
            )
            assert watcher.latest[availability] == b"online"
            assert watcher.json(f"{BASE}/{sim.serial}/gateway")["last_error"] is None
            assert not any(
                e.topic == availability and e.payload == b"offline" for e in watcher.since(restarted)[1:]
            )
            assert dict(sim.cloud_calls) == calls  # not a single call to the dead cloud
        finally:
            code, _ = await second.terminate()
        assert code == 0
        assert "token_fetch" not in second.log_text()


@pytest.mark.slow
async def test_a_thirty_second_envoy_does_not_stall_the_other_or_mqtt(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """One Envoy answers every request after 30 s: the other publishes on its cadence and the MQTT
    keep-alive (5 s) is never missed."""
    # CTs: the system cadence asks this Envoy every cycle (a CT-less one only once per device interval)
    slow_config = SimulatorConfig(profile="metered-1phase-acb")
    async with (
        Simulator(SimulatorConfig(profile="metered-1phase-acb")) as fast,
        Simulator(slow_config) as slow,
        Watcher(mosquitto.port) as watcher,
    ):
        envoys = envoy_table(fast, name="Fast") + envoy_table(slow, name="Slow")
        config = write_config(tmp_path, mosquitto.port, envoys, sim=fast, system_interval=10)
        config.write_text(config.read_text().replace("[mqtt]\n", "[mqtt]\nkeepalive = 5\n", 1))
        daemon = Daemon(config, tmp_path / "daemon.log")
        await daemon.start()
        try:
            fast_system = f"{BASE}/{fast.serial}/system"
            slow_system = f"{BASE}/{slow.serial}/system"
            await watcher.wait_for(
                lambda: fast_system in watcher.latest and slow_system in watcher.latest, 40, "both Envoys"
            )
            slow.faults.slow(30)  # every request from now on
            stalled = time.monotonic()
            slow_requests = sum(slow.requests.values())
            await watcher.wait_for(
                lambda: sum(1 for e in watcher.since(stalled) if e.topic == fast_system) >= 4,
                50,
                "four readings of the fast Envoy while the slow one takes 30 s per request",
            )
            assert sum(slow.requests.values()) > slow_requests  # the slow Envoy was being asked meanwhile
            assert daemon.running
            connects = [line for line in daemon.log_lines() if line.get("event") == "mqtt_connected"]
            assert len(connects) == 1, connects  # never lost the broker
            broker_log = mosquitto.log.read_text(errors="replace")
            assert "exceeded timeout" not in broker_log, broker_log[-2000:]
            # the broker logs connections (so it would log a timeout), and ours ran with a 5 s keep-alive
            assert re.search(r"New client connected .* as envoy2mqtt-\S+ \(p\d, c\d, k5\)", broker_log), (
                broker_log
            )
        finally:
            slow.faults.clear()
            code, _ = await daemon.terminate()
        assert code == 0
