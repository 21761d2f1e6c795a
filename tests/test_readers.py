"""Readers and the read planner: recorded bodies in (no HTTP), per shared capture; then check vs daemon live.

- Every reader's body lands in the normalizer input field it declares, and the bodies the planner picks
  give the same readings as every recorded body would: the planner drops nothing a normalizer uses.
- Per capture: which endpoints each cadence reads, no endpoint twice in a cycle, no endpoint read by two
  cadences more often than its tightest freshness needs, nothing read that the probe did not find.
- `envoy2mqtt check` and the daemon build the same plan on the same Envoy, and `check` reads each data
  endpoint once.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from envoy2mqtt.check import check_envoy
from envoy2mqtt.clock import ManualClock
from envoy2mqtt.config import EnvoySettings, Settings
from envoy2mqtt.envoy import endpoints as ep
from envoy2mqtt.model import Features, RawDeviceData, RawSystemData
from envoy2mqtt.mqtt.publisher import Publisher
from envoy2mqtt.mqtt.topics import Topics
from envoy2mqtt.normalize import normalize_devices, normalize_meters, normalize_system
from envoy2mqtt.poller import EnvoyPoller
from envoy2mqtt.readers import (
    DEVICE,
    HELD,
    READERS,
    SYSTEM,
    BodyStore,
    CycleReader,
    Need,
    Planner,
    Reader,
    raw_device_data,
    raw_system_data,
)
from envoy2mqtt.simulator import Simulator, SimulatorConfig
from tests.conftest import capture_folders
from tests.test_fuzz_normalizers import Source, sources

INTERVALS = {SYSTEM: 60.0, DEVICE: 300.0}


def source_params() -> list[object]:
    return [pytest.param(s, id=s.name) for s in sources()]


def planned_bodies(source: Source, planner: Planner, consumer: str) -> dict[str, object]:
    return {step.path: source.bodies.get(step.path) for step in planner.steps(consumer)}


# ------------------------------------------------------------------------------------------ readers


def test_every_reader_feeds_a_field_of_the_normalizer_input() -> None:
    system_fields = {f.name for f in dataclasses.fields(RawSystemData)}
    device_fields = {f.name for f in dataclasses.fields(RawDeviceData)}
    assert len({r.path for r in READERS}) == len(READERS)
    for reader in READERS:
        assert reader.system_field or reader.device_field, reader.path
        assert reader.system_field is None or reader.system_field in system_fields
        assert reader.device_field is None or reader.device_field in device_fields
    # every field of the normalizers' input has a reader
    assert system_fields == {r.system_field for r in READERS if r.system_field}
    assert device_fields == {r.device_field for r in READERS if r.device_field}
    assert {r.path for r in READERS if r.probed} == set(ep.PROBE_ENDPOINTS)


@pytest.mark.parametrize("source", source_params())
def test_the_planned_bodies_give_the_same_readings_as_every_recorded_body(source: Source) -> None:
    planner = Planner(source.features, INTERVALS)
    system_bodies = planned_bodies(source, planner, SYSTEM)
    raw = raw_system_data(system_bodies)
    for step in planner.steps(SYSTEM):
        assert step.reader.system_field is not None
        assert getattr(raw, step.reader.system_field) is source.bodies.get(step.path)
    everything = raw_system_data(source.bodies)
    assert normalize_system(raw, source.info, source.features) == normalize_system(
        everything, source.info, source.features
    )
    assert normalize_meters(raw, source.features) == normalize_meters(everything, source.features)
    # the device cycle: its own bodies plus what it holds from the system cycle (production.json)
    device_bodies = {**planned_bodies(source, planner, DEVICE)}
    if ep.DEVICE_DATA in device_bodies and device_bodies[ep.DEVICE_DATA] is not None:
        fallback = [s for s in planner.steps(DEVICE) if s.need.fallback_for == ep.DEVICE_DATA]
        for step in fallback:  # device_data answered: its fallback is not read
            device_bodies[step.path] = None
    devices = normalize_devices(raw_device_data(device_bodies), source.features)
    all_devices = normalize_devices(raw_device_data(source.bodies), source.features)
    assert [r.serial for r in devices.inverters] == [r.serial for r in all_devices.inverters]
    assert devices.batteries == all_devices.batteries


# ------------------------------------------------------------------------------------------ planner


def allowed_per_hour(planner: Planner, reader: Reader, features: Features) -> float:
    """The most reads an hour an endpoint may cost: one per interval of its tightest need."""
    intervals = [
        planner.intervals[need.within] for need in reader.needs(features).values() if need.within != HELD
    ]
    return 3600 / min(intervals) if intervals else 0.0


@pytest.mark.parametrize("source", source_params())
def test_the_plan_reads_each_endpoint_once_per_its_tightest_need(source: Source) -> None:
    features = source.features
    planner = Planner(features, INTERVALS)
    per_hour = planner.requests_per_hour()
    for consumer in INTERVALS:
        paths = [step.path for step in planner.steps(consumer)]
        assert len(paths) == len(set(paths)), (consumer, paths)  # never twice in one cycle
        for step in planner.steps(consumer):
            if step.need.within != HELD:
                assert step.path in features.endpoints, step.path  # only what the probe found
    for reader in READERS:
        total = sum(per_hour[c].get(reader.path, 0.0) for c in INTERVALS)
        assert total <= allowed_per_hour(planner, reader, features), (reader.path, per_hour)
    # a system cycle always has a production source to read
    production = [s for s in planner.steps(SYSTEM) if s.reader.production and s.need.within != HELD]
    assert production, "no production source planned"


@pytest.mark.parametrize("source", source_params())
def test_what_each_cadence_reads(source: Source) -> None:
    """The plan per hardware: the rules the README's requests-per-hour table documents."""
    features = source.features
    planner = Planner(features, INTERVALS)
    system = {s.path for s in planner.steps(SYSTEM) if s.need.within != HELD}
    device = {s.path for s in planner.steps(DEVICE) if s.need.within != HELD}
    assert (ep.METERS_READINGS in system) == bool(features.ct_meters)
    if features.production_ct:
        assert ep.API_V1_PRODUCTION not in system
    if features.iq_batteries:
        assert ep.ENSEMBLE_INVENTORY in device
        if ep.ENSEMBLE_POWER in features.endpoints:
            assert ep.ENSEMBLE_POWER in system
    if features.detailed_inverters:
        assert ep.DEVICE_DATA in device
    if ep.PRODUCTION_HTML in features.endpoints:
        assert system == {ep.PRODUCTION_HTML}
    assert ep.METERS not in system | device  # the CT list comes from the probe
    per_hour = planner.requests_per_hour()
    cts = features.ct_meters or features.production_ct or features.consumption
    if not cts and not features.iq_batteries and not features.acb:
        # CT-less: no more than one request a minute in all (the firmware check adds one per 4 hours)
        assert sum(sum(c.values()) for c in per_hour.values()) <= 60, per_hour
        for step in planner.steps(SYSTEM):
            if step.path in (ep.PRODUCTION_JSON, ep.API_V1_PRODUCTION):
                assert step.need.within == DEVICE  # inverter data changes every 5 minutes


def test_a_body_fresh_enough_is_reused_and_an_old_one_read_again() -> None:
    features = Features(
        endpoints=frozenset({ep.PRODUCTION_JSON, ep.ENSEMBLE_POWER, ep.ENSEMBLE_INVENTORY}),
        metered=True,
        iq_batteries=True,
        production_ct=True,
    )
    planner = Planner(features, INTERVALS)
    store = BodyStore()
    power = next(s for s in planner.steps(DEVICE) if s.path == ep.ENSEMBLE_POWER)
    assert power.need == Need(SYSTEM)
    assert planner.due(power, store, 0.0, {})  # nothing held
    store.put(ep.ENSEMBLE_POWER, {"devices:": []}, 100.0)
    assert not planner.due(power, store, 100.0 + 53, {})  # read by the system cycle moments ago
    assert planner.due(power, store, 100.0 + 61, {})  # older than one system interval
    inventory = next(s for s in planner.steps(SYSTEM) if s.path == ep.ENSEMBLE_INVENTORY)
    assert inventory.max_age == math.inf
    assert not planner.due(inventory, store, 1e9, {})  # held: never read by the system cycle


async def test_a_cycle_reads_through_fetch_and_skips_a_failing_endpoint() -> None:
    from envoy2mqtt.errors import EnvoyNotFound

    features = Features(
        endpoints=frozenset({ep.PRODUCTION_JSON, ep.METERS, ep.METERS_READINGS}),
        metered=True,
        ct_meters=("production",),
        production_ct=True,
    )
    planner = Planner(features, INTERVALS)
    store = BodyStore()
    store.put(ep.METERS, [{"eid": 1}], -math.inf)
    clock = ManualClock()
    fetched: list[str] = []

    async def fetch(path: str) -> object:
        fetched.append(path)
        if path == ep.METERS_READINGS:
            raise EnvoyNotFound("gone", 404)
        return {"production": []}

    errors: list[str] = []
    reads = CycleReader(planner, store, fetch, clock.monotonic, on_error=lambda p, e: errors.append(p))
    cycle = await reads.run(SYSTEM)
    assert fetched == [ep.PRODUCTION_JSON, ep.METERS_READINGS]
    assert cycle.read == (ep.PRODUCTION_JSON, ep.METERS_READINGS)
    assert cycle.bodies[ep.METERS] == [{"eid": 1}]  # held from the probe
    assert cycle.bodies[ep.METERS_READINGS] is None
    assert errors == [ep.METERS_READINGS]
    assert cycle.production_read()
    # moments later: production.json is reused, the failed endpoint is tried again
    fetched.clear()
    clock.advance(1)
    cycle = await reads.run(SYSTEM)
    assert fetched == [ep.METERS_READINGS]
    assert ep.PRODUCTION_JSON in cycle.fresh


# ------------------------------------------------------------------------------------------ live


def live_params() -> list[object]:
    names = [f"profile:{p}" for p in ("metered-3phase-iq", "legacy-unmetered")]
    names += [folder.name for folder in capture_folders()]
    return [pytest.param(n, id=n) for n in names]


def simulator_config(name: str) -> SimulatorConfig:
    if name.startswith("profile:"):
        return SimulatorConfig(profile=name.removeprefix("profile:"))
    return SimulatorConfig(capture_dir=next(f for f in capture_folders() if f.name == name))


@pytest.mark.parametrize("name", live_params())
async def test_check_and_the_daemon_agree_on_the_plan(name: str, tmp_path: Path) -> None:
    async with Simulator(simulator_config(name)) as sim:
        envoy = EnvoySettings(host=sim.url, token=sim.issue_token() if sim.token_auth else "")
        settings = Settings(state_dir=tmp_path, envoy=[envoy])
        try:
            result = await check_envoy(envoy, settings)
        except Exception as exc:  # a capture the bridge cannot read at all is not about the plan
            pytest.skip(f"check fails on this capture: {exc}")
        checked = dict(sim.requests)
        topics = Topics(settings.mqtt.base_topic, settings.mqtt.discovery_prefix)
        clock = ManualClock()
        poller = EnvoyPoller(envoy, settings, Publisher(settings.mqtt, topics), topics, clock=clock)
        try:
            await poller.connect()
            assert poller.planner is not None
            for consumer in INTERVALS:
                planned = [s.path for s in poller.planner.steps(consumer)]
                assert list(result["plan"]["cadences"][consumer]["endpoints"]) == planned
            # the daemon's steady state reads what the plan says, each endpoint once per cycle
            clock.advance(settings.polling.device_interval)
            sim.requests.clear()
            await poller.poll_system()
            await poller.poll_devices()
            system = {s.path for s in poller.planner.steps(SYSTEM) if s.need.within != HELD}
            read = {p for p in sim.requests if p not in (ep.INFO, ep.CHECK_JWT)}
            assert system <= read
        finally:
            await poller.close()
        if sim.token_auth:
            # check reads each data endpoint once: the probe's bodies serve its cycles
            data = {p: n for p, n in checked.items() if p not in (ep.INFO, ep.CHECK_JWT, ep.HOME)}
            assert all(n == 1 for n in data.values()), data
