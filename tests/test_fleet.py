"""Fleet health as a pure unit: device samples in, verdicts out, no clock.

The day-long scenarios run the simulator's own site model (the clear-sky arc, its passing clouds, an
injected shaded or failing microinverter, a cloudy day of scattered values) through the real device
normalizer, one report period at a time, exactly as the daemon's device cadence would see them.
"""

from __future__ import annotations

import json
import statistics
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from envoy2mqtt.clock import ManualClock
from envoy2mqtt.config import FleetSettings
from envoy2mqtt.envoy import endpoints
from envoy2mqtt.fleet import (
    DeviceSample,
    FleetAnalysis,
    OutputJudge,
    group_health,
    sample_of,
)
from envoy2mqtt.model import Features, RawDeviceData
from envoy2mqtt.normalize import normalize_devices
from envoy2mqtt.simulator.simtime import SimulatedTime
from envoy2mqtt.simulator.site import GeneratedSite

PERIOD = 300.0
SETTINGS = FleetSettings()


def _samples(ratios: dict[str, float], report: float, max_power: float = 300.0) -> list[DeviceSample]:
    return [
        DeviceSample(serial, last_report=report, power=ratio * max_power, max_power=max_power)
        for serial, ratio in ratios.items()
    ]


# ------------------------------------------------------------------------------ reporting / stale


def test_group_health_counts_and_names_the_stale_device_with_its_last_report() -> None:
    now = 1_780_000_000.0
    samples = [DeviceSample(f"s{i}", last_report=now - 20 * i, communicating=True) for i in range(6)]
    samples.append(DeviceSample("dead", last_report=now - 3 * PERIOD, communicating=False))
    health = group_health(samples, PERIOD)
    assert health.provisioned == 7
    assert health.communicating == 6
    assert health.reporting == 6
    assert [d.serial for d in health.stale] == ["dead"]
    assert health.stale[0].payload() == {"serial": "dead", "last_report": "2026-05-28T20:11:40Z"}


def test_nothing_is_stale_at_night_or_while_half_the_array_is_still_asleep_at_dawn() -> None:
    dusk = 1_780_000_000.0
    night = [DeviceSample(f"s{i}", last_report=dusk - 30 * i) for i in range(10)]
    assert group_health(night, PERIOD).stale == ()  # every unit asleep for hours: none stale
    # dawn: four of ten already report this morning, six still carry last evening's report
    morning = dusk + 10 * 3600
    dawn = [DeviceSample(f"s{i}", last_report=morning if i < 4 else dusk) for i in range(10)]
    assert group_health(dawn, PERIOD).stale == ()


def test_unknown_flags_stay_unknown_and_a_listed_device_counts_as_provisioned() -> None:
    health = group_health([DeviceSample("a"), DeviceSample("b")], PERIOD)
    assert (health.provisioned, health.communicating, health.reporting) == (2, None, None)
    health = group_health([DeviceSample("a", provisioned=True), DeviceSample("b", provisioned=False)], PERIOD)
    assert health.provisioned == 1


# ------------------------------------------------------------------------------ the judge, directly


def test_a_low_unit_is_flagged_after_n_consecutive_low_reports_and_cleared_after_n_good_ones() -> None:
    judge = OutputJudge(FleetSettings(window=1, consecutive=3))
    ratios = {f"s{i}": 0.8 for i in range(8)}
    flags = []
    for step in range(8):
        ratios["s0"] = 0.3 if step < 4 else 0.8
        verdicts = judge.judge(_samples(ratios, 1000.0 + step * PERIOD))
        assert verdicts.judged
        flags.append(verdicts.inverters["s0"].underperforming)
    assert flags == [False, False, True, True, True, True, False, False]
    assert verdicts.inverters["s0"].relative_output == 100.0


def test_the_same_report_seen_twice_counts_once() -> None:
    judge = OutputJudge(FleetSettings(window=1, consecutive=2))
    ratios = {f"s{i}": 0.8 for i in range(8)} | {"s0": 0.2}
    for _ in range(5):  # device cadence faster than the reports: the report time does not change
        verdicts = judge.judge(_samples(ratios, 1000.0))
    assert verdicts.inverters["s0"].relative_output == 25.0
    assert not verdicts.inverters["s0"].underperforming


def test_below_the_site_output_floor_or_with_too_few_siblings_nothing_is_judged() -> None:
    judge = OutputJudge(FleetSettings(window=1, consecutive=1))
    dim = {f"s{i}": 0.05 for i in range(8)} | {"s0": 0.0}  # 4 % of capacity
    verdicts = judge.judge(_samples(dim, 1000.0))
    assert not verdicts.judged
    assert verdicts.inverters["s0"] == verdicts.inverters["s1"]
    assert verdicts.inverters["s0"].relative_output is None
    few = {"a": 0.8, "b": 0.8, "c": 0.1}
    assert not OutputJudge(FleetSettings(consecutive=1)).judge(_samples(few, 1000.0)).judged


def test_a_stale_unit_is_neither_judged_nor_part_of_the_siblings() -> None:
    judge = OutputJudge(FleetSettings(window=1, consecutive=1))
    ratios = {f"s{i}": 0.8 for i in range(8)} | {"s0": 0.0}
    verdicts = judge.judge(_samples(ratios, 1000.0), stale={"s0"})
    assert verdicts.inverters["s0"].relative_output is None
    assert not verdicts.inverters["s0"].underperforming


def test_mixed_ratings_are_compared_as_ratios() -> None:
    judge = OutputJudge(FleetSettings(window=1, consecutive=1))
    samples = [DeviceSample(f"a{i}", 1000.0, power=240.0, max_power=300.0) for i in range(4)]
    samples += [DeviceSample(f"b{i}", 1000.0, power=320.0, max_power=400.0) for i in range(4)]
    verdicts = judge.judge(samples)
    assert {v.relative_output for v in verdicts.inverters.values()} == {100.0}


def test_fleet_verdict_payload_and_inverter_keys() -> None:
    analysis = FleetAnalysis(FleetSettings(window=1, consecutive=1))
    inverters = _samples({f"s{i}": 0.8 for i in range(6)} | {"s0": 0.2}, 1000.0)
    batteries = [DeviceSample("b1", last_report=990.0, communicating=True)]
    verdict = analysis.update(inverters, batteries)
    payload = verdict.payload()
    assert payload["inverters_provisioned"] == 6
    assert payload["inverters_underperforming"] == 1
    assert payload["underperforming_serials"] == ["s0"]
    assert payload["site_output"] == pytest.approx(70.0)
    assert payload["batteries_reporting"] == 1
    assert verdict.inverter_keys("s0") == {"relative_output": 25.0, "underperforming": True}
    disabled = FleetAnalysis(FleetSettings(enabled=False)).update(inverters, [])
    assert disabled.inverter_keys("s0") == {}
    assert "inverters_underperforming" not in disabled.payload()
    assert "batteries_provisioned" not in disabled.payload()


# ------------------------------------------------------------------------------ a day on the simulator


FEATURES = Features(endpoints=frozenset({endpoints.API_V1_INVERTERS}), metered=False)


def _day(
    *,
    shade: dict[int, float] | None = None,
    cloudy: bool = False,
    profile: str = "metered-3phase-iq",
    start_hour: float = 0.0,
    hours: float = 24.0,
    settings: FleetSettings = SETTINGS,
) -> tuple[list[str], dict[str, list[bool]], list[bool], list[float | None]]:
    """Run a simulated day report period by report period; (serials, flags per serial, judged, site %)."""
    clock = ManualClock()
    tz = ZoneInfo("Europe/Amsterdam")
    # 90 s into each report period: every unit has made its report of the period (offsets 0-59 s)
    midnight = datetime(2026, 6, 21, tzinfo=tz).timestamp() + start_hour * 3600 + 90
    time = SimulatedTime(clock, live=True, start=midnight)
    site = GeneratedSite(profile, time)
    serials = [inv.serial for inv in site.model.inverters]
    for index, output in (shade or {}).items():
        site.model.set_inverter(serials[index], output=output)
    site.model.cloudy = cloudy
    analysis = FleetAnalysis(settings)
    flags: dict[str, list[bool]] = {s: [] for s in serials}
    judged: list[bool] = []
    site_output: list[float | None] = []
    for _ in range(int(hours * 3600 / PERIOD)):
        clock.advance(PERIOD)
        body = site.respond("/api/v1/production/inverters", "").body
        readings = normalize_devices(RawDeviceData(inverters=json.loads(body)), FEATURES)
        verdict = analysis.update([sample_of(r) for r in readings.inverters], [])
        assert verdict.output is not None
        judged.append(verdict.output.judged)
        site_output.append(verdict.output.site_output)
        for serial in serials:
            flags[serial].append(verdict.output.inverters[serial].underperforming)
    return serials, flags, judged, site_output


def test_uniform_site_raises_no_alarm_over_a_whole_day() -> None:
    _serials, flags, judged, _ = _day()
    assert any(judged), "a June day must be judged at midday"
    assert not any(any(f) for f in flags.values())


@pytest.mark.parametrize("output", [0.5, 0.0])
def test_a_shaded_or_failed_unit_is_flagged_within_the_morning_and_only_that_one(output: float) -> None:
    serials, flags, judged, _ = _day(shade={5: output})
    shaded = serials[5]
    first_judged = judged.index(True)
    first_flag = flags[shaded].index(True)
    # the window fills, then N judged reports in a row below the threshold, no more
    assert first_flag - first_judged == SETTINGS.window + SETTINGS.consecutive - 2
    assert all(flags[shaded][first_flag : len(judged) - judged[::-1].index(True)])
    assert flags[shaded][-1], "the flag holds through the evening and night"
    assert not any(any(f) for serial, f in flags.items() if serial != shaded)


def test_no_false_alarm_at_dawn_the_site_is_not_judged_below_its_floor() -> None:
    _, flags, judged, site_output = _day(start_hour=3.0, hours=5.0)
    for was_judged, output in zip(judged, site_output, strict=True):
        if output is None or output < SETTINGS.min_site_output:
            assert not was_judged
    assert not any(any(f) for f in flags.values())


def test_no_false_alarm_on_a_cloudy_day_of_scattered_values() -> None:
    _serials, flags, judged, _site_output = _day(cloudy=True)
    assert sum(judged) > 50, "a cloudy June day still has hours above the floor"
    assert not any(any(f) for f in flags.values())


def test_cloudy_day_single_reports_would_look_low_without_the_window() -> None:
    """The same cloudy day judged report by report (window 1, flag on the first low report) does flag:
    the window is what keeps scattered values from raising an alarm."""
    _, flags, _, _ = _day(cloudy=True, settings=FleetSettings(window=1, consecutive=1))
    assert sum(any(f) for f in flags.values()) > 5


def test_a_shaded_unit_on_a_cloudy_day_is_still_found() -> None:
    serials, flags, _, _ = _day(cloudy=True, shade={3: 0.4})
    assert any(flags[serials[3]])
    assert not any(any(f) for serial, f in flags.items() if serial != serials[3])


def test_relative_output_of_the_shaded_unit_is_its_share_of_the_siblings() -> None:
    clock = ManualClock()
    time = SimulatedTime(clock, live=False, start=datetime(2026, 6, 21, tzinfo=ZoneInfo("UTC")).timestamp())
    site = GeneratedSite("metered-1phase-acb", time)
    serial = site.model.inverters[2].serial
    site.model.set_inverter(serial, output=0.6)
    body = json.loads(site.respond("/api/v1/production/inverters", "").body)
    readings = normalize_devices(RawDeviceData(inverters=body), FEATURES)
    verdict = FleetAnalysis(FleetSettings(window=1, consecutive=1)).update(
        [sample_of(r) for r in readings.inverters], []
    )
    others = [
        verdict.inverter_keys(r.serial)["relative_output"] for r in readings.inverters if r.serial != serial
    ]
    assert verdict.inverter_keys(serial)["relative_output"] == pytest.approx(60, abs=1.5)
    assert statistics.median(others) == pytest.approx(100, abs=1)
