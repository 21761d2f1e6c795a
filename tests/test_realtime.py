"""The real-time units on their own: the live normalizers (captures and the simulator's bodies), the
source choice per capture, the adaptive interval, the maintenance window, the stream keeper."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from envoy2mqtt.config import load_settings
from envoy2mqtt.envoy import endpoints
from envoy2mqtt.errors import ConfigError
from envoy2mqtt.model import EnvoyInfo, Features
from envoy2mqtt.normalize import normalize_meters, normalize_system
from envoy2mqtt.normalize.live import live_from_livedata, live_from_meters, livedata_stream_state
from envoy2mqtt.realtime.adaptive import AdaptiveInterval, FailureBurst, p90
from envoy2mqtt.realtime.source import choose_source, livedata_candidate
from envoy2mqtt.realtime.stream import StreamKeeper
from envoy2mqtt.realtime.window import MaintenanceWindow
from envoy2mqtt.simulator.simtime import SimulatedTime
from envoy2mqtt.simulator.site import GeneratedSite
from tests.conftest import capture_params, require_capture
from tests.test_normalize_support import load_capture

# The example body of docs/envoy-local-api.md §4.8 (the only published shape), completed with the
# newer firmware's keys that the same section lists.
DOC_LIVEDATA: dict[str, Any] = {
    "connection": {
        "mqtt_state": "connected",
        "prov_state": "configured",
        "auth_state": "ok",
        "sc_stream": "enabled",
        "sc_debug": "disabled",
    },
    "meters": {
        "last_update": 1686081089,
        "soc": 0,
        "main_relay_state": 1,
        "gen_relay_state": 5,
        "backup_bat_mode": 1,
        "backup_soc": 0,
        "pv": {"agg_p_mw": 29212, "agg_s_mva": 248309},
        "storage": {"agg_p_mw": 0, "agg_s_mva": 0},
        "grid": {"agg_p_mw": 340582, "agg_s_mva": 400000},
        "load": {"agg_p_mw": 369794, "agg_s_mva": 500000},
        "generator": {"agg_p_mw": 0, "agg_s_mva": 0},
    },
}

INFO_8 = EnvoyInfo("122301234561", "800-00654-r08", "D8.2.4345", (8, 2, 4345), True, True)


# ------------------------------------------------------------------------------ meters readings


@pytest.mark.parametrize("folder", capture_params())
def test_live_from_meters_matches_the_ct_meters_of_every_capture(folder: Path) -> None:
    capture = load_capture(folder)
    if not capture.features.ct_meters:
        pytest.skip("no CTs: no meters source")
    live = live_from_meters(capture.system.meters_readings, capture.features)
    payload = live.payload()
    meters = {m.ct_type: m.payload() for m in normalize_meters(capture.system, capture.features)}
    kinds = set(capture.features.ct_meters)
    assert live.problems == ()
    assert payload["timestamp"] is not None
    if "production" in kinds:
        assert payload["production_power"] == meters["production"]["power"]
    if "net-consumption" in kinds:
        assert payload["grid_power"] == meters["net-consumption"]["power"]
    if "storage" in kinds:
        assert payload["battery_power"] == meters["storage"]["power"]
    else:
        assert "battery_power" not in payload
    assert "battery_soc" not in payload  # CTs do not measure charge: absent, not null
    if capture.features.phase_count > 1:
        assert set(payload["phases"]) == {f"l{i + 1}" for i in range(capture.features.phase_count)}


def test_consumption_is_production_plus_net_as_the_envoy_counts_it() -> None:
    """8.2.127 has a storage CT; the Envoy's own total consumption leaves it out (1843.831 W)."""
    capture = load_capture(require_capture("8.2.127_with_3cts_and_battery_split"))
    live = live_from_meters(capture.system.meters_readings, capture.features).payload()
    system = normalize_system(capture.system, capture.info, capture.features).payload()
    assert live["production_power"] == system["production_power"] == 1714.424
    assert live["grid_power"] == system["net_power"] == 129.407
    assert live["consumption_power"] == system["consumption_power"] == 1843.831
    assert live["battery_power"] == system["battery_power"] == -2579.823  # + discharging: charging
    assert live["phases"]["l1"] == {
        "production_power": 856.031,
        "grid_power": -201.39,
        "consumption_power": 654.641,
        "battery_power": -2114.856,
    }


def test_a_total_consumption_ct_gives_grid_as_total_minus_production() -> None:
    capture = load_capture(require_capture("8.3.5433_tot_is_net_cons"))
    live = live_from_meters(capture.system.meters_readings, capture.features).payload()
    assert live["consumption_power"] == 786.513
    assert live["grid_power"] == round(786.513 - 352.751, 3)


def test_a_missing_ct_reading_is_null_with_a_problem_never_a_crash() -> None:
    capture = load_capture(require_capture("7.6.175_with_cts"))
    live = live_from_meters([], capture.features)
    assert live.payload()["grid_power"] is None
    assert any("no reading for the net-consumption CT" in p for p in live.problems)
    for garbage in (None, {"error": "x"}, "text", [1, 2], [{"eid": "x"}]):
        assert live_from_meters(garbage, capture.features).payload()["production_power"] is None


# ------------------------------------------------------------------------------ livedata


def test_live_from_livedata_converts_milliwatts_with_the_contract_signs() -> None:
    features = Features(endpoints=frozenset(), metered=True, iq_batteries=True)
    payload = live_from_livedata(DOC_LIVEDATA, features).payload()
    assert payload == {
        "timestamp": "2023-06-06T19:51:29Z",
        "grid_power": 340.582,
        "production_power": 29.212,
        "consumption_power": 369.794,
        "battery_power": 0,
        "battery_soc": 0,
    }
    assert livedata_stream_state(DOC_LIVEDATA) == "enabled"


def test_livedata_without_a_battery_leaves_battery_keys_out() -> None:
    payload = live_from_livedata(DOC_LIVEDATA, Features(endpoints=frozenset(), metered=True)).payload()
    assert "battery_power" not in payload
    assert "battery_soc" not in payload


def test_livedata_of_the_generated_site_balances_per_phase() -> None:
    site = GeneratedSite("metered-3phase-iq", SimulatedTime(_FixedClock(), live=False))
    body = site._livedata(site._now())
    features = Features(endpoints=frozenset(), metered=True, phase_count=3, iq_batteries=True)
    payload = live_from_livedata(body, features).payload()
    assert set(payload["phases"]) == {"l1", "l2", "l3"}
    # the site's own balance: load = pv + grid + battery
    total = payload["production_power"] + payload["grid_power"] + payload["battery_power"]
    assert abs(payload["consumption_power"] - total) < 0.01
    assert 0 <= payload["battery_soc"] <= 100


def test_broken_livedata_bodies_give_nulls_and_problems() -> None:
    features = Features(endpoints=frozenset(), metered=True)
    for garbage in (None, [], "x", {"meters": "x"}, {"meters": {"pv": {"agg_p_mw": "NaN"}}}):
        live = live_from_livedata(garbage, features)
        assert live.payload()["production_power"] is None
    assert livedata_stream_state({"connection": {}}) is None
    assert livedata_stream_state(None) is None


class _FixedClock:
    def monotonic(self) -> float:
        return 1000.0

    def time(self) -> float:
        return 1_780_000_000.0

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - never awaited here
        return None


# ------------------------------------------------------------------------------ source choice

EXPECTED_AUTO = {
    # CTs, no battery hardware: meters
    "7.6.175_with_cts": "meters",
    "7.3.130_no_consumption": "meters",
    "8.3.5433_tot_is_net_cons": "meters",
    # IQ Batteries / System Controller on firmware 7+: livedata (when it answers)
    "8.2.127_with_3cts_and_battery_split": "livedata",
    "7.3.517": "livedata",
    "8.1.41": "livedata",
    # no CTs, no battery hardware: nothing faster than the 5-minute inverter reports
    "7.6.175_standard": None,
    "5.0.62": None,
    "3.9.36": None,
}


@pytest.mark.parametrize(("name", "expected"), sorted(EXPECTED_AUTO.items()))
def test_auto_picks_per_envoy_from_the_probe(name: str, expected: str | None) -> None:
    capture = load_capture(require_capture(name))
    inventory = capture.bodies.get(endpoints.ENSEMBLE_INVENTORY)
    choice = choose_source("auto", capture.info, capture.features, inventory, livedata_answers=True)
    assert choice.source == expected, choice.reason
    assert choice.reason
    if expected is None:
        assert "5 minutes" in choice.reason


def test_livedata_that_does_not_answer_falls_back_to_the_cts() -> None:
    capture = load_capture(require_capture("8.2.127_with_3cts_and_battery_split"))
    inventory = capture.bodies.get(endpoints.ENSEMBLE_INVENTORY)
    assert livedata_candidate(capture.info, capture.features, inventory)
    choice = choose_source("auto", capture.info, capture.features, inventory, livedata_answers=False)
    assert choice.source == "meters"
    forced = choose_source("livedata", capture.info, capture.features, inventory, livedata_answers=False)
    assert forced.source is None
    assert "did not answer" in forced.reason


def test_explicit_sources_refuse_with_a_reason() -> None:
    legacy = load_capture(require_capture("5.0.62"))
    choice = choose_source("livedata", legacy.info, legacy.features, None, livedata_answers=False)
    assert choice.source is None
    assert "firmware 7" in choice.reason
    no_cts = load_capture(require_capture("7.6.175_standard"))
    meters = choose_source("meters", no_cts.info, no_cts.features, None, livedata_answers=False)
    assert meters.source is None
    assert "no CTs" in meters.reason


# ------------------------------------------------------------------------------ adaptive interval


def test_failures_double_the_interval_up_to_the_cap() -> None:
    adaptive = AdaptiveInterval(1, cap=60, calm_period=120, start=0)
    seen = [adaptive.failed(float(t)) for t in range(8)]
    assert seen == [2, 4, 8, 16, 32, 60, None, None]
    assert adaptive.interval == 60


def test_slow_answers_double_the_interval() -> None:
    adaptive = AdaptiveInterval(2, cap=60, calm_period=120, start=0)
    # fast answers: nothing changes
    assert all(adaptive.succeeded(t, 0.3) is None for t in range(0, 40, 2))
    # the p90 above half the interval (1 s) after three samples: doubles
    changes = [adaptive.succeeded(40 + t, 1.4) for t in range(0, 6, 2)]
    assert changes == [None, None, 4]
    # one answer longer than the interval itself is enough
    assert adaptive.succeeded(60, 4.5) == 8


def test_calm_period_halves_back_down_to_the_configured_interval() -> None:
    adaptive = AdaptiveInterval(1, cap=60, calm_period=30, start=0)
    for t in range(4):
        adaptive.failed(t)
    assert adaptive.interval == 16
    now = 3.0
    changes = []
    while now < 400:
        now += adaptive.interval
        change = adaptive.succeeded(now, 0.05)
        if change is not None:
            changes.append((round(now), change))
    assert [c for _, c in changes] == [8, 4, 2, 1]
    gaps = [b - a for (a, _), (b, _) in zip([(3, 16), *changes], changes, strict=False)]
    assert all(gap >= 30 for gap in gaps)


def test_no_step_down_while_answers_would_be_slow_at_the_smaller_interval() -> None:
    adaptive = AdaptiveInterval(1, cap=60, calm_period=10, start=0)
    adaptive.failed(0)
    adaptive.failed(0)  # 4 s
    # 1.5 s answers are fine at 4 s (below 2 s) but would not be at 2 s (above 1 s): stays at 4
    assert all(adaptive.succeeded(t, 1.5) is None for t in range(4, 200, 4))
    assert adaptive.interval == 4


def test_p90_is_the_nearest_rank() -> None:
    assert p90([]) == 0
    assert p90([1.0]) == 1.0
    assert p90([float(i) for i in range(1, 11)]) == 9.0


def test_a_burst_of_failures_in_a_row() -> None:
    burst = FailureBurst(pause=300, burst=3)
    assert [burst.failed(), burst.failed()] == [False, False]
    burst.succeeded()
    assert [burst.failed(), burst.failed(), burst.failed()] == [False, False, True]
    assert burst.in_a_row == 0


# ------------------------------------------------------------------------------ maintenance window


def _at(hour: int, minute: int, second: int = 0, tz: str = "Europe/Amsterdam") -> datetime:
    return datetime(2026, 6, 1, hour, minute, second, tzinfo=ZoneInfo(tz))


def test_the_default_window_covers_the_nightly_maintenance() -> None:
    window = MaintenanceWindow(22 * 60 + 55, 23 * 60 + 10)
    assert not window.contains(_at(22, 54, 59))
    assert window.contains(_at(22, 55))
    assert window.contains(_at(23, 9, 59))
    assert not window.contains(_at(23, 10))
    assert window.seconds_left(_at(23, 0, 30)) == 9 * 60 + 30
    assert window.seconds_left(_at(12, 0)) == 0
    assert window.describe() == "22:55-23:10"


def test_a_window_across_midnight() -> None:
    window = MaintenanceWindow(23 * 60 + 50, 10)
    assert window.contains(_at(23, 55))
    assert window.contains(_at(0, 5))
    assert not window.contains(_at(0, 10))
    assert window.seconds_left(_at(23, 55)) == 15 * 60


# ------------------------------------------------------------------------------ stream keeper


def test_the_stream_is_renewed_before_its_expiry_and_at_once_when_it_lapsed() -> None:
    keeper = StreamKeeper(renew_after=600)
    assert keeper.due(0)
    keeper.enabled(0)
    assert not keeper.due(599)
    assert keeper.due(600)  # well before the Envoy's ~900 s
    keeper.enabled(600)
    assert keeper.observed("enabled")
    assert not keeper.observed("disabled")  # frozen values: not published...
    assert keeper.due(601)  # ...and enabled again before the next read
    assert keeper.renewals == 2
    keeper.enabled(700)
    assert keeper.observed(None)  # no sc_stream key at all: taken as live, renewed on schedule
    assert not keeper.due(701)


# ------------------------------------------------------------------------------ configuration


def _settings(tmp_path: Path, realtime: str, envoy_extra: str = "") -> Any:
    path = tmp_path / "config.toml"
    path.write_text(f'[realtime]\n{realtime}\n[[envoy]]\nhost = "192.0.2.1"\n{envoy_extra}\n')
    return load_settings(path)


def test_realtime_is_off_by_default_with_safe_defaults(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "")
    assert settings.realtime.enabled is False
    assert settings.realtime.interval == 5
    assert settings.realtime.source == "auto"
    assert settings.realtime.window == (22 * 60 + 55, 23 * 60 + 10)
    assert settings.envoy[0].realtime is True


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("interval = 0.5", "realtime.interval: must be at least 1 second"),
        ("interval = 120", "realtime.interval: must be at most 60 seconds"),
        ('source = "stream"', "realtime.source"),
        ('maintenance_window = "23:00"', 'realtime.maintenance_window: must be "HH:MM-HH:MM"'),
        ('maintenance_window = "25:00-26:00"', "realtime.maintenance_window"),
        ('maintenance_window = "23:00-23:00"', "the same time"),
        ("calm_period = 1", "realtime.calm_period"),
    ],
)
def test_a_wrong_realtime_setting_names_the_key_and_the_fix(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _settings(tmp_path, line)
    assert message in str(info.value)
    assert "ENVOY2MQTT_REALTIME__" in str(info.value)


def test_realtime_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVOY2MQTT_REALTIME__ENABLED", "true")
    monkeypatch.setenv("ENVOY2MQTT_REALTIME__INTERVAL", "2")
    monkeypatch.setenv("ENVOY2MQTT_REALTIME__MAINTENANCE_WINDOW", "")
    settings = _settings(tmp_path, "", "realtime = false")
    assert settings.realtime.enabled is True
    assert settings.realtime.interval == 2
    assert settings.realtime.window is None
    assert settings.envoy[0].realtime is False
