"""CounterGuard: replayed counter sequences and the series Home Assistant would receive."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from envoy2mqtt.counters import Correction, CounterGuard
from envoy2mqtt.state import StateFile
from tests.conftest import require_capture

WRAP_WH = 2**32 / 3600  # the unmetered inverter counter counts watt-seconds in 32 bits
LIFE = "production_energy_lifetime"
TODAY = "production_energy_today"
T0 = 1_780_000_000.0


def make_guard(tmp_path: Path, timezone: str | None = None) -> CounterGuard:
    return CounterGuard(StateFile(tmp_path / "state" / "counters.json"), timezone)


def replay_lifetime(
    guard: CounterGuard,
    values: Sequence[float | None],
    *,
    key: str = LIFE,
    device: str = "system",
    start: float = T0,
    step: float = 60.0,
) -> tuple[list[Any], list[list[Correction]]]:
    published: list[Any] = []
    corrections: list[list[Correction]] = []
    for index, value in enumerate(values):
        out, found = guard.guard(
            device, {key: value}, lifetime_keys=(key,), daily_keys=(), now=start + index * step
        )
        published.append(out[key])
        corrections.append(found)
    return published, corrections


def assert_never_down(series: Sequence[Any]) -> None:
    numbers = [v for v in series if v is not None]
    assert all(b >= a for a, b in itertools.pairwise(numbers)), series
    assert all(v >= 0 for v in numbers)


# -- lifetime ----------------------------------------------------------------------------------------


def test_noise_dips_are_held_and_reported_once_per_episode(tmp_path: Path) -> None:
    guard = make_guard(tmp_path)
    published, corrections = replay_lifetime(guard, [1000, 1005, 998, 1003, 1004, 1010, 1001, 1012])
    assert published == [1000, 1005, 1005, 1005, 1005, 1010, 1010, 1012]
    counts = [len(c) for c in corrections]
    assert counts == [0, 0, 1, 0, 0, 0, 1, 0]  # two episodes, one report each
    first = corrections[2][0]
    assert first.key == LIFE
    assert first.device == "system"
    assert first.reason.startswith(f"{LIFE}: counter dipped from 1005 to 998 Wh; held at 1005")


def test_unmetered_wrap_from_real_capture(tmp_path: Path) -> None:
    folder = require_capture("7.6.175_standard")
    production = json.loads((folder / "production.json").read_text())
    wrapped = next(p for p in production["production"] if p["type"] == "inverters")["whLifetime"]
    full = json.loads((folder / "api_v1_production").read_text())["wattHoursLifetime"]
    # The capture itself proves the modulus: the full counter is the wrapped one plus whole wraps.
    wraps = round((full - wrapped) / WRAP_WH)
    assert wraps >= 1
    assert abs(full - wrapped - wraps * WRAP_WH) < 1.0

    guard = make_guard(tmp_path)
    before = [int(WRAP_WH) - 5000, int(WRAP_WH) - 3000, int(WRAP_WH) - 1000]
    after = [1200, 40_000, 120_000, wrapped]
    published, corrections = replay_lifetime(
        guard, before + after, key="energy_lifetime", device="inverter/1"
    )
    assert_never_down(published)
    offset = int(WRAP_WH) - 1000
    assert published[3:] == [offset + v for v in after]
    reasons = [c.reason for found in corrections for c in found]
    assert reasons == [
        f"energy_lifetime: counter went back from {offset} to 1200 Wh (reset or wrap); "
        f"continued with offset {offset}"
    ]
    # Firmware 8.x reports the unwrapped total again: the offset must not be counted twice.
    published, corrections = replay_lifetime(
        guard, [full, full + 500], key="energy_lifetime", device="inverter/1", start=T0 + 3600
    )
    assert published == [full, full + 500]
    assert "offset" in corrections[0][0].reason


def test_synthetic_wrap_and_repeated_wraps(tmp_path: Path) -> None:
    """Works without the captures, and keeps detecting wraps when the offset dwarfs the raw counter."""
    guard = make_guard(tmp_path)
    values: list[float] = []
    raw = 0.0
    for _ in range(12):  # 12 wraps: the offset grows to ~14 MWh, each wrap is < 10 % of the total
        while raw + 150_000 < WRAP_WH:
            raw += 150_000
            values.append(raw)
        raw = raw + 150_000 - WRAP_WH
        values.append(raw)
    published, corrections = replay_lifetime(guard, values)
    assert_never_down(published)
    assert sum(len(c) for c in corrections) == 12
    # Each wrap loses only the energy between the last poll and the wrap point (< one step).
    true_total = len(values) * 150_000
    assert true_total - 12 * 150_000 <= published[-1] <= true_total


def test_reset_to_zero_after_firmware_update(tmp_path: Path) -> None:
    guard = make_guard(tmp_path)
    published, corrections = replay_lifetime(guard, [5_000_000, 5_000_100, 0, 50, 400])
    assert published == [5_000_000, 5_000_100, 5_000_100, 5_000_150, 5_000_500]
    assert [len(c) for c in corrections] == [0, 0, 1, 0, 0]


def test_glitch_to_zero_that_recovers_is_not_counted_twice(tmp_path: Path) -> None:
    guard = make_guard(tmp_path)
    published, _ = replay_lifetime(guard, [1_000_000, 0, 300, 1_000_100, 1_000_200])
    assert published == [1_000_000, 1_000_000, 1_000_300, 1_000_300, 1_000_300]
    published, _ = replay_lifetime(guard, [1_000_400], start=T0 + 600)
    assert published == [1_000_400]


def test_upward_spike_passes(tmp_path: Path) -> None:
    guard = make_guard(tmp_path)
    published, corrections = replay_lifetime(guard, [1000, 900_000, 900_010])
    assert published == [1000, 900_000, 900_010]
    assert corrections == [[], [], []]


def test_none_passes_and_does_not_disturb(tmp_path: Path) -> None:
    guard = make_guard(tmp_path)
    published, corrections = replay_lifetime(guard, [None, 1000, None, None, 990, 1010])
    assert published == [None, 1000, None, None, 1000, 1010]
    assert [len(c) for c in corrections] == [0, 0, 0, 0, 1, 0]


def test_impossible_values_become_unknown_once(tmp_path: Path) -> None:
    guard = make_guard(tmp_path)
    published, corrections = replay_lifetime(guard, [1000, -5, -6, float("nan"), 1001, -1])
    assert published == [1000, None, None, None, 1001, None]
    assert [len(c) for c in corrections] == [0, 1, 0, 0, 0, 1]


def test_payload_is_copied_and_other_keys_untouched(tmp_path: Path) -> None:
    guard = make_guard(tmp_path)
    guard.guard("system", {LIFE: 1000}, lifetime_keys=(LIFE,), daily_keys=(), now=T0)
    payload = {LIFE: 900, "production_power": 12.5, "phases": {"l1": {}}, "label": "x"}
    out, _ = guard.guard(
        "system", payload, lifetime_keys=(LIFE, "missing_lifetime"), daily_keys=("missing"), now=T0 + 60
    )
    assert payload[LIFE] == 900  # the caller's dict is not modified
    assert out == {LIFE: 1000, "production_power": 12.5, "phases": {"l1": {}}, "label": "x"}


def test_devices_and_keys_are_independent(tmp_path: Path) -> None:
    guard = make_guard(tmp_path)
    keys = ("energy_delivered_lifetime", "energy_received_lifetime")
    guard.guard(
        "meter/net-consumption",
        {keys[0]: 5000, keys[1]: 100},
        lifetime_keys=keys,
        daily_keys=(),
        now=T0,
    )
    out, found = guard.guard(
        "meter/net-consumption",
        {keys[0]: 10, keys[1]: 110},
        lifetime_keys=keys,
        daily_keys=(),
        now=T0 + 60,
    )
    assert out == {keys[0]: 5010, keys[1]: 110}
    assert [c.key for c in found] == [keys[0]]
    other, _ = guard.guard("meter/production", {keys[0]: 10}, lifetime_keys=keys, daily_keys=(), now=T0 + 60)
    assert other == {keys[0]: 10}


# -- persistence -------------------------------------------------------------------------------------


def test_restart_keeps_the_offset(tmp_path: Path) -> None:
    guard = make_guard(tmp_path)
    published, _ = replay_lifetime(guard, [1_189_000, 1200, 5000])
    assert published == [1_189_000, 1_190_200, 1_194_000]
    guard.flush()
    again = make_guard(tmp_path)
    published, corrections = replay_lifetime(again, [5100, 5050, 0], start=T0 + 3600)
    assert published == [1_194_100, 1_194_100, 1_194_100]
    assert [len(c) for c in corrections] == [0, 1, 1]
    again.flush()
    third = make_guard(tmp_path)
    published, _ = replay_lifetime(third, [10], start=T0 + 7200)
    assert published == [1_194_110]


def test_saves_are_throttled_to_one_a_minute(tmp_path: Path) -> None:
    path = tmp_path / "state" / "counters.json"
    guard = CounterGuard(StateFile(path))

    def stored() -> Any:
        return json.loads(path.read_text())["counters"]["lifetime"]["system"][LIFE]["published"]

    guard.guard("system", {LIFE: 100}, lifetime_keys=(LIFE,), daily_keys=(), now=T0)
    assert stored() == 100  # the first change is saved at once
    guard.guard("system", {LIFE: 200}, lifetime_keys=(LIFE,), daily_keys=(), now=T0 + 30)
    guard.guard("system", {LIFE: 300}, lifetime_keys=(LIFE,), daily_keys=(), now=T0 + 59)
    assert stored() == 100
    guard.guard("system", {LIFE: 400}, lifetime_keys=(LIFE,), daily_keys=(), now=T0 + 60)
    assert stored() == 400
    guard.guard("system", {LIFE: 500}, lifetime_keys=(LIFE,), daily_keys=(), now=T0 + 70)
    assert stored() == 400
    guard.flush()
    assert stored() == 500


def test_other_sections_of_the_state_file_survive(tmp_path: Path) -> None:
    path = tmp_path / "state" / "counters.json"
    StateFile(path).save({"something_else": {"keep": True}})
    guard = CounterGuard(StateFile(path))
    guard.guard("system", {LIFE: 1}, lifetime_keys=(LIFE,), daily_keys=(), now=T0)
    guard.flush()
    assert json.loads(path.read_text())["something_else"] == {"keep": True}


def test_corrupt_state_file_starts_empty_and_keeps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "counters.json"
    path.parent.mkdir()
    path.write_text('{"counters": {"lifetime": {"system": {')
    with capture_logs() as logs:
        guard = CounterGuard(StateFile(path))
    assert any(entry["log_level"] == "error" for entry in logs)
    published, _ = replay_lifetime(guard, [500, 600])
    assert published == [500, 600]
    assert [p.name for p in path.parent.iterdir() if ".corrupt-" in p.name]


def test_malformed_entries_are_skipped_and_good_ones_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "counters.json"
    good = {"offset": 1000.0, "raw": 10.0, "published": 1010.0, "time": T0, "holding": False}
    StateFile(path).save(
        {
            "counters": {
                "version": 1,
                "lifetime": {
                    "system": {LIFE: good, "consumption_energy_lifetime": {"offset": "lots"}},
                    "inverter/1": "nonsense",
                },
                "daily": {"system": {TODAY: {"published": 1, "raw": 1, "date": "yesterday"}}},
            }
        }
    )
    with capture_logs() as logs:
        guard = CounterGuard(StateFile(path))
    assert [entry["count"] for entry in logs if entry["log_level"] == "warning"] == [2]
    published, _ = replay_lifetime(guard, [20], start=T0 + 60)
    assert published == [1020]


def test_failed_save_does_not_stop_the_guard(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    guard = CounterGuard(StateFile(blocker / "counters.json"))
    with capture_logs() as logs:
        published, _ = replay_lifetime(guard, [1, 2, 3], step=120)
        guard.flush()
    assert published == [1, 2, 3]
    assert [entry["log_level"] for entry in logs] == ["error"]  # said once, not on every retry


def test_invalid_tolerance_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        CounterGuard(StateFile(tmp_path / "s.json"), dip_tolerance=1.5)


# -- daily -------------------------------------------------------------------------------------------


def local(zone: str, *args: int) -> float:
    return datetime(*args, tzinfo=ZoneInfo(zone)).timestamp()  # type: ignore[misc]


def daily_step(
    guard: CounterGuard,
    now: float,
    today: float | None,
    lifetime: float | None = None,
    *,
    device: str = "system",
) -> tuple[Any, list[Correction]]:
    payload: dict[str, Any] = {TODAY: today}
    if lifetime is not None:
        payload[LIFE] = lifetime
    out, found = guard.guard(device, payload, lifetime_keys=(LIFE,), daily_keys=(TODAY,), now=now)
    return out[TODAY], found


def test_drop_within_the_same_day_is_held(tmp_path: Path) -> None:
    guard = make_guard(tmp_path, "Europe/Paris")
    noon = local("Europe/Paris", 2026, 6, 10, 12, 0)
    series = [daily_step(guard, noon + i * 600, v) for i, v in enumerate([3000, 3100, 2500, 0, 3050, 3200])]
    assert [v for v, _ in series] == [3000, 3100, 3100, 3100, 3100, 3200]
    assert [len(c) for _, c in series] == [0, 0, 1, 0, 0, 0]
    assert "before local midnight" in series[2][1][0].reason


def test_on_time_reset_and_non_zero_reset(tmp_path: Path) -> None:
    guard = make_guard(tmp_path, "America/New_York")
    evening = local("America/New_York", 2026, 6, 10, 23, 50)
    midnight = local("America/New_York", 2026, 6, 11, 0, 0)
    assert daily_step(guard, evening, 24_000)[0] == 24_000
    value, found = daily_step(guard, midnight + 60, 0)
    assert (value, found) == (0, [])
    # Next night the Envoy resets to a non-zero value: accepted as the new day's first value.
    assert daily_step(guard, midnight + 86_400 - 600, 20_000)[0] == 20_000
    assert daily_step(guard, midnight + 86_400 + 300, 750)[0] == 750
    assert daily_step(guard, midnight + 86_400 + 900, 800)[0] == 800


def test_timezone_decides_the_midnight(tmp_path: Path) -> None:
    """23:30 UTC is already the next day in Paris: the same drop is a new day there, held in UTC."""
    before = datetime(2026, 6, 10, 23, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    after = before + 45 * 60
    utc = make_guard(tmp_path / "utc")
    paris = make_guard(tmp_path / "paris", "Europe/Paris")
    daily_step(utc, before - 7200, 9000)
    daily_step(paris, before - 7200, 9000)
    assert daily_step(utc, after, 0)[0] == 9000
    assert daily_step(paris, after, 0)[0] == 0
    paris.set_timezone(None)  # back to UTC
    assert daily_step(paris, after + 60, 10)[0] == 10


def test_unknown_timezone_falls_back_to_utc(tmp_path: Path) -> None:
    with capture_logs() as logs:
        guard = make_guard(tmp_path, "Mars/Olympus_Mons")
    assert [entry["log_level"] for entry in logs] == ["warning"]
    midnight = datetime(2026, 6, 11, tzinfo=ZoneInfo("UTC")).timestamp()
    daily_step(guard, midnight - 60, 5000)
    assert daily_step(guard, midnight + 60, 0)[0] == 0


def test_late_reset_is_derived_from_lifetime(tmp_path: Path) -> None:
    """HA core#161892 / pyenphase known issue: whToday still holds yesterday's total after midnight."""
    zone = "Europe/Paris"
    guard = make_guard(tmp_path, zone)
    start = local(zone, 2026, 6, 10, 23, 45)
    midnight = local(zone, 2026, 6, 11, 0, 0)
    rate = 12.0  # Wh per minute of consumption, steady through the night
    lifetime0 = 3_000_000.0

    def lifetime(t: float) -> float:
        return lifetime0 + rate * (t - start) / 60

    today_true_at = {t: max(0.0, rate * (t - midnight) / 60) for t in [start + i * 600 for i in range(8)]}
    polls = sorted(today_true_at)
    # The Envoy keeps yesterday's count until 00:20 local, then restarts from 0 (20 minutes late).
    late_reset = midnight + 20 * 60
    envoy_today = [
        8000 + rate * (t - start) / 60 if t < late_reset else rate * (t - late_reset) / 60 for t in polls
    ]
    published = []
    corrections = []
    for t, raw in zip(polls, envoy_today, strict=True):
        value, found = daily_step(guard, t, raw, lifetime(t))
        published.append(value)
        corrections.extend(found)
    # 23:45 and 23:55: yesterday's values pass; from 00:05 on: energy since local midnight.
    assert published[:2] == envoy_today[:2]
    for t, value in zip(polls[2:], published[2:], strict=True):
        assert value == pytest.approx(today_true_at[t], abs=1e-6)
    assert len(corrections) == 1
    assert "late reset" in corrections[0].reason


def test_late_reset_survives_a_restart_at_midnight(tmp_path: Path) -> None:
    zone = "Europe/Paris"
    midnight = local(zone, 2026, 6, 11, 0, 0)
    first = make_guard(tmp_path, zone)
    daily_step(first, midnight - 300, 7000, 100_000)
    first.flush()
    second = make_guard(tmp_path, zone)
    value, _found = daily_step(second, midnight + 300, 7010, 100_010)
    assert value == pytest.approx(5)  # half of the 10 Wh between the polls fell after midnight
    second.flush()
    third = make_guard(tmp_path, zone)
    assert daily_step(third, midnight + 900, 7030, 100_030)[0] == pytest.approx(25)
    # The Envoy finally resets: counting continues from what today already showed.
    assert daily_step(third, midnight + 1500, 10, 100_050)[0] == pytest.approx(45)
    assert daily_step(third, midnight + 2100, 30, 100_070)[0] == pytest.approx(65)


def test_late_reset_without_lifetime_uses_the_daily_counter_itself(tmp_path: Path) -> None:
    guard = make_guard(tmp_path)
    midnight = datetime(2026, 6, 11, tzinfo=ZoneInfo("UTC")).timestamp()
    steps = [(-300, 5000), (300, 5000), (900, 5040), (1500, 20), (2100, 50)]
    published = [daily_step(guard, midnight + dt, raw)[0] for dt, raw in steps]
    assert published == [5000, 0, 40, 60, 90]


def test_counter_that_never_resets_is_derived_every_day(tmp_path: Path) -> None:
    """8.3.5286 (HA core#161892): whToday keeps accumulating day after day."""
    guard = make_guard(tmp_path)
    midnight = datetime(2026, 6, 11, tzinfo=ZoneInfo("UTC")).timestamp()
    lifetime = 50_000.0
    raw = 1000.0
    for hour in range(72):
        lifetime += 100
        raw += 100
        value, _ = daily_step(guard, midnight + hour * 3600 + 1800, raw, lifetime)
        if hour >= 24:
            hours_today = hour % 24
            assert value == pytest.approx(100 * hours_today + 50)


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("Europe/Paris", (2026, 3, 29), 23),
        ("Europe/Paris", (2026, 10, 25), 25),
        ("America/New_York", (2026, 3, 8), 23),
        ("America/New_York", (2026, 11, 1), 25),
    ],
)
def test_dst_days_draw_midnight_right(
    tmp_path: Path, zone: str, day: tuple[int, int, int], hours: int
) -> None:
    tz = ZoneInfo(zone)
    start = datetime(*day, tzinfo=tz)
    end = datetime.combine(start.date() + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    assert end.timestamp() - start.timestamp() == hours * 3600  # the test really covers a DST day
    midnight = end.timestamp()

    # An Envoy that resets one hour early (its DST offset is wrong): the drop is held until midnight.
    early = make_guard(tmp_path / "early", zone)
    t = start.timestamp() + 600
    raw = 0.0
    while t < midnight - 3600:
        raw += 50
        value, _ = daily_step(early, t, raw)
        assert value == raw
        t += 900
    held = raw
    raw = 0.0
    while t < midnight:
        raw += 5
        assert daily_step(early, t, raw)[0] == held
        t += 900
    # First poll after the real local midnight: a new day; the Envoy already restarted an hour ago, so
    # today's value is what it counted since the last poll before midnight.
    assert daily_step(early, t, raw + 5)[0] == 5
    assert daily_step(early, t + 900, raw + 15)[0] == 15

    # An Envoy that resets one hour late: after midnight the value is derived from the lifetime.
    late = make_guard(tmp_path / "late", zone)
    lifetime = 1_000_000.0
    t = start.timestamp() + 600
    today = 0.0
    while t < midnight + 3600:
        before_midnight = t < midnight
        lifetime += 10
        today += 10  # the Envoy has not reset yet
        value, _ = daily_step(late, t, today, lifetime)
        if before_midnight:
            assert value == today
        else:
            assert value <= 10 * 4 + 1e-6  # at most the hour since midnight, never yesterday's total
        t += 900


# -- property-based ----------------------------------------------------------------------------------

step = st.one_of(
    st.tuples(st.just("up"), st.floats(0, 5000, allow_nan=False)),
    st.tuples(st.just("dip"), st.floats(0, 0.1, allow_nan=False)),
    st.tuples(st.just("drop"), st.floats(0, 1, allow_nan=False)),
    st.tuples(st.just("none"), st.just(0.0)),
    st.tuples(st.just("restart"), st.just(0.0)),
)


@settings(max_examples=150, deadline=None)
@given(start=st.floats(0, 5_000_000, allow_nan=False), steps=st.lists(step, max_size=40))
def test_published_lifetime_never_decreases(
    tmp_path_factory: pytest.TempPathFactory, start: float, steps: list[tuple[str, float]]
) -> None:
    path = tmp_path_factory.mktemp("prop") / "counters.json"
    guard = CounterGuard(StateFile(path))
    raw = start
    last: float | None = None
    now = T0
    for kind, amount in [("up", 0.0), *steps]:
        now += 60
        if kind == "restart":
            guard.flush()
            guard = CounterGuard(StateFile(path))
            continue
        value: float | None
        if kind == "none":
            value = None
        elif kind == "up":
            raw += amount
            value = raw
        elif kind == "dip":
            value = raw * (1 - amount)
        else:
            raw = raw * amount
            value = raw
        out, _ = guard.guard("system", {LIFE: value}, lifetime_keys=(LIFE,), daily_keys=(), now=now)
        published = out[LIFE]
        if value is None:
            assert published is None
            continue
        assert published >= 0
        if last is not None:
            assert published >= last
        track = guard._lifetimes[("system", LIFE)]
        if not track.holding:
            assert published == pytest.approx(value + track.offset)
        last = published


# -- issue 14: a lost state file, a host clock that jumps ---------------------------------------------


def test_recovered_values_continue_without_going_back_or_counting_twice(tmp_path: Path) -> None:
    guard = make_guard(tmp_path)
    assert guard.needs_recovery  # no state file: the daemon reads the broker's retained states
    assert guard.recover({("system", LIFE): 10_284_087.0}) == 1
    assert not guard.needs_recovery
    out, corrections = guard.guard("system", {LIFE: 5_000}, lifetime_keys=[LIFE], daily_keys=[], now=T0)
    assert out[LIFE] == 10_284_087  # not 5 000 (backwards), not 10 289 087 (counted twice)
    assert [c.key for c in corrections] == [LIFE]
    out, _ = guard.guard("system", {LIFE: 5_100}, lifetime_keys=[LIFE], daily_keys=[], now=T0 + 60)
    assert out[LIFE] == 10_284_187
    guard.flush()
    again = make_guard(tmp_path)
    assert not again.needs_recovery
    out, _ = again.guard("system", {LIFE: 5_200}, lifetime_keys=[LIFE], daily_keys=[], now=T0 + 120)
    assert out[LIFE] == 10_284_287


def test_recovered_value_below_the_envoys_counter_is_just_superseded(tmp_path: Path) -> None:
    guard = make_guard(tmp_path)
    guard.recover({("system", LIFE): 4_000.0})
    out, corrections = guard.guard("system", {LIFE: 5_000}, lifetime_keys=[LIFE], daily_keys=[], now=T0)
    assert out[LIFE] == 5_000
    assert corrections == []


@pytest.mark.parametrize("jump", [86_400.0, -86_400.0, 3 * 3600.0])
def test_a_wall_clock_jump_is_not_a_midnight(tmp_path: Path, jump: float) -> None:
    guard = make_guard(tmp_path, "Europe/Paris")
    noon = datetime(2026, 6, 1, 12, 0, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    if jump == 3 * 3600.0:
        noon += 10 * 3600  # 22:00: three hours later is tomorrow
    keys = {"lifetime_keys": [LIFE], "daily_keys": [TODAY]}
    out, _ = guard.guard("system", {LIFE: 1_000_000, TODAY: 5_220}, now=noon, monotonic=100.0, **keys)
    assert out[TODAY] == 5_220
    with capture_logs() as logs:
        out, corrections = guard.guard(
            "system", {LIFE: 1_000_010, TODAY: 5_230}, now=noon + 60 + jump, monotonic=160.0, **keys
        )
    assert out[TODAY] == 5_230  # not the ~10 Wh "since midnight" of a fake new day
    assert corrections == []
    assert any(line["event"] == "host_clock_jumped" for line in logs)


def test_a_real_midnight_still_resets_the_daily_counter(tmp_path: Path) -> None:
    guard = make_guard(tmp_path, "Europe/Paris")
    late = datetime(2026, 6, 1, 23, 59, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    keys = {"lifetime_keys": [LIFE], "daily_keys": [TODAY]}
    guard.guard("system", {LIFE: 1_000_000, TODAY: 9_000}, now=late, monotonic=100.0, **keys)
    out, _ = guard.guard("system", {LIFE: 1_000_005, TODAY: 5}, now=late + 120, monotonic=220.0, **keys)
    assert out[TODAY] == 5
