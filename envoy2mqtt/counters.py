"""Statistics-safe energy counters.

Home Assistant reads any drop of a ``total_increasing`` value by more than 10 % as a meter reset and a
smaller dip as noise; both corrupt long-term statistics. Envoy firmware produces both: lifetime counters
that wrap at 2^32 watt-seconds (about 1.19 MWh) on unmetered firmware, counters restarting at 0 after a
firmware update, the one-off step of the 8.3.5433 consumption repair, daily counters that reset late, at
a non-zero value, or an hour off around DST. `CounterGuard` sits between the normalizer and the publisher
and rewrites those values so that:

* a published lifetime value never goes down: a small dip is held at the last published value; a large
  drop (reset or wrap) is continued with an offset equal to the last published value, so the series
  keeps rising from where it was; when the Envoy's counter later comes back to the full value by itself
  (a glitch that recovers, the 8.x firmware that reports the unwrapped total again), the offset is
  dropped instead of being counted twice;
* a daily value drops only when the Envoy's local date changes (local midnight, DST-correct); when the
  Envoy still reports yesterday's total after midnight, today's value is derived from the lifetime
  counter (lifetime now minus lifetime at local midnight) until the Envoy resets its own counter.

Offsets and last values are kept per device and key in a `StateFile`, saved at most every 60 s of
``now`` and on `flush`, so they survive restarts. The hot path does no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog

from envoy2mqtt.model import Payload
from envoy2mqtt.state import StateFile

log = structlog.get_logger(__name__)

SAVE_INTERVAL = 60.0  # seconds of `now` between two routine saves
# The wall clock moved this much more (or less) than the monotonic clock between two readings: the host
# clock was set (NTP after a boot without a clock chip, a manual change), not a day that passed.
CLOCK_JUMP = 120.0
STATE_SECTION = "counters"
STATE_VERSION = 1

# A daily counter and the lifetime counter of the same quantity, in the same payload.
DAILY_TO_LIFETIME: dict[str, str] = {
    "production_energy_today": "production_energy_lifetime",
    "consumption_energy_today": "consumption_energy_lifetime",
    "energy_today": "energy_lifetime",
}

DailyMode = Literal["raw", "derived"]


@dataclass(frozen=True, slots=True)
class Correction:
    """One rejected or rewritten reading, reported once per episode."""

    key: str  # the contract key, e.g. "production_energy_lifetime"
    reason: str  # starts with the key: "production_energy_lifetime: counter went back from ..."
    device: str = ""  # the `device` given to `CounterGuard.guard`, e.g. "inverter/122107032918"


class _LifetimeTrack:
    """What the guard remembers about one lifetime counter."""

    __slots__ = ("holding", "offset", "published", "raw", "recovered", "rejecting", "time")

    def __init__(self) -> None:
        self.offset = 0.0  # added to the raw value; grows by the last published value at each reset
        self.raw: float | None = None  # last raw value accepted (not rejected)
        self.published: float | None = None  # last published value (None: nothing published yet)
        self.time: float | None = None  # `now` of the last published value
        self.holding = False  # inside a small-dip episode
        self.rejecting = False  # inside an impossible-value episode
        # `published` came from the broker's retained state (the state file was lost): the offset is
        # unknown until the first raw value shows how far below it the Envoy's counter is.
        self.recovered = False


class _DailyTrack:
    """What the guard remembers about one daily counter."""

    __slots__ = (
        "base_lifetime",
        "base_raw",
        "carry",
        "date",
        "holding",
        "mode",
        "published",
        "raw",
        "rejecting",
    )

    def __init__(self) -> None:
        self.published: float | None = None
        self.raw: float | None = None
        self.date = ""  # the Envoy's local date (ISO) of the last published value
        self.mode: DailyMode = "raw"
        self.carry = 0.0  # added to the raw value after a late reset, so the day keeps rising
        self.base_lifetime: float | None = None  # lifetime at local midnight, in derived mode
        self.base_raw = 0.0  # the raw daily value at local midnight (fallback without a lifetime)
        self.holding = False
        self.rejecting = False


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _format(value: float) -> str:
    """Watt-hours for a human: integers stay integers, otherwise three decimals at most."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _like(raw: int | float, value: float) -> int | float:
    """Keep integers integers in the payload when the arithmetic did not add a fraction."""
    if isinstance(raw, int) and value.is_integer():
        return int(value)
    return value


def _zone(name: str | None) -> tzinfo:
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("timezone_unknown", action="daily counters use UTC midnight", timezone=name)
        return UTC


class CounterGuard:
    """Keeps lifetime counters rising and daily counters dropping only at the Envoy's local midnight."""

    def __init__(self, state: StateFile, timezone: str | None = None, *, dip_tolerance: float = 0.10) -> None:
        if not 0.0 <= dip_tolerance < 1.0:
            raise ValueError("dip_tolerance must be in [0, 1)")
        self._state = state
        self._tolerance = dip_tolerance
        self._zone: tzinfo = _zone(timezone)
        self._date_cache: tuple[float, date] | None = None
        self._lifetimes: dict[tuple[str, str], _LifetimeTrack] = {}
        self._dailies: dict[tuple[str, str], _DailyTrack] = {}
        self._other: dict[str, Any] = {}  # other sections of the same file, written back untouched
        self._dirty = False
        self._last_save: float | None = None
        self._save_failed = False
        self._needs_recovery = False
        self._clock_ref: tuple[float, float] | None = None  # (now, monotonic) of the last guard call
        self._jumped: set[tuple[str, str]] = set()  # daily counters whose date a clock jump changed
        self._load()
        self._needs_recovery = not self._lifetimes

    @property
    def zone(self) -> tzinfo:
        """The Envoy's local timezone as the counters use it (UTC until known)."""
        return self._zone

    def set_timezone(self, timezone: str | None) -> None:
        """The Envoy's local timezone (from /home); UTC when None or empty."""
        self._zone = _zone(timezone)
        self._date_cache = None

    def guard(
        self,
        device: str,
        payload: Payload,
        *,
        lifetime_keys: Iterable[str],
        daily_keys: Iterable[str],
        now: float,
        monotonic: float | None = None,
    ) -> tuple[Payload, list[Correction]]:
        """A copy of ``payload`` with safe counters, and the corrections that start an episode now.

        ``monotonic`` (the host's monotonic clock) lets the guard tell a wall-clock jump from time that
        passed: a jump moves the daily counters' date along without it counting as a local midnight.
        """
        if monotonic is not None:
            self._follow_clock(now, monotonic)
        out = dict(payload)
        corrections: list[Correction] = []
        # For each lifetime key guarded now: (published now, published before, its time) for daily derivation.
        lifetimes: dict[str, tuple[float | None, float | None, float | None]] = {}
        for key in lifetime_keys:
            if key not in payload:
                continue
            track = self._lifetimes.get((device, key))
            if track is None:
                track = self._lifetimes[(device, key)] = _LifetimeTrack()
            before, before_time = track.published, track.time
            out[key] = self._guard_lifetime(track, device, key, payload[key], now, corrections)
            after = out[key] if _number(out[key]) else None
            lifetimes[key] = (after, before, before_time)
        today: date | None = None
        for key in daily_keys:
            if key not in payload:
                continue
            if today is None:
                today = self._local_date(now)
            track_daily = self._dailies.get((device, key))
            if track_daily is None:
                track_daily = self._dailies[(device, key)] = _DailyTrack()
            lifetime = lifetimes.get(DAILY_TO_LIFETIME.get(key, ""))
            out[key] = self._guard_daily(
                track_daily, device, key, payload[key], now, today, lifetime, corrections
            )
        if self._dirty and (
            self._last_save is None or now - self._last_save >= SAVE_INTERVAL or now < self._last_save
        ):
            self._save(now)
        return out, corrections

    @property
    def needs_recovery(self) -> bool:
        """True until `recover` ran when the state file held no lifetime counters (missing, unusable)."""
        return self._needs_recovery

    def recover(self, published: Mapping[tuple[str, str], float]) -> int:
        """Seed lifetime counters with values published before, keyed (device, key); returns how many.

        For a lost state file: the last values the broker still holds retained. Tracks that already
        exist (read from the file, or guarded since) are left alone.
        """
        self._needs_recovery = False
        count = 0
        for (device, key), value in published.items():
            if (
                (device, key) in self._lifetimes
                or not _number(value)
                or not math.isfinite(value)
                or value < 0
            ):
                continue
            track = _LifetimeTrack()
            track.published = float(value)
            track.recovered = True
            self._lifetimes[(device, key)] = track
            count += 1
        if count:
            self._dirty = True
        return count

    def _follow_clock(self, now: float, monotonic: float) -> None:
        reference = self._clock_ref
        self._clock_ref = (now, monotonic)
        if reference is None:
            return
        expected = reference[0] + (monotonic - reference[1])  # the wall clock had it not been set
        jump = now - expected
        if abs(jump) < CLOCK_JUMP:
            return
        was, today = self._local_date(expected).isoformat(), self._local_date(now).isoformat()
        log.warning(
            "host_clock_jumped",
            action="daily counters keep their day (the jump is not a local midnight)",
            jump_seconds=round(jump),
            local_date_before=was,
            local_date_now=today,
        )
        if was != today:
            # Their next date change is the jump's; a counter that did reset meanwhile still starts a day.
            self._jumped.update(k for k, track in self._dailies.items() if track.date == was)

    def flush(self) -> None:
        """Save now if anything changed since the last save (call it on shutdown)."""
        if self._dirty:
            self._save(self._last_save)

    # -- lifetime ------------------------------------------------------------------------------------

    def _guard_lifetime(
        self,
        track: _LifetimeTrack,
        device: str,
        key: str,
        raw: Any,
        now: float,
        corrections: list[Correction],
    ) -> Any:
        if not _number(raw):
            return raw  # None stays unknown; a non-number is not ours to judge
        if not math.isfinite(raw) or raw < 0:
            if not track.rejecting:
                track.rejecting = True
                self._dirty = True
                corrections.append(
                    Correction(
                        key, f"{key}: impossible lifetime value {raw!r} Wh; published as unknown", device
                    )
                )
            return None
        track.rejecting = False
        self._dirty = True
        last = track.published
        if last is None:
            track.raw, track.published, track.time = float(raw), float(raw), now
            return raw
        tolerance = self._tolerance
        level = last - track.offset  # the raw level that the last published value stands for
        value: float
        if track.recovered:
            track.recovered = False
            if raw < (1.0 - tolerance) * last:
                # The lost state held an offset: take it up again so that this value continues the
                # recovered one (what the Envoy counted while we were down is not counted twice).
                track.offset = last - raw
                corrections.append(
                    Correction(
                        key,
                        f"{key}: counter at {_format(raw)} Wh, below the last published {_format(last)} "
                        f"Wh recovered from the broker; continued with offset {_format(track.offset)}",
                        device,
                    )
                )
            track.raw, track.published, track.time = float(raw), max(last, raw + track.offset), now
            track.holding = raw + track.offset < last
            return _like(raw, track.published)
        if track.offset > 0 and raw >= (1.0 - tolerance) * last:
            # The Envoy's own counter is back at the full total (a glitch that recovered, or firmware
            # that reports the unwrapped value again): continuing it would count the offset twice.
            corrections.append(
                Correction(
                    key,
                    f"{key}: counter came back to {_format(raw)} Wh, the full total again; "
                    f"offset {_format(track.offset)} dropped",
                    device,
                )
            )
            track.offset = 0.0
            value = max(float(raw), last)
            track.holding = value > raw
        elif raw + track.offset >= last:
            value = raw + track.offset
            track.holding = False
        elif level - raw <= tolerance * level:
            value = last
            if not track.holding:
                track.holding = True
                corrections.append(
                    Correction(
                        key,
                        f"{key}: counter dipped from {_format(level)} to {_format(raw)} Wh; "
                        f"held at {_format(last)} until it rises again",
                        device,
                    )
                )
        else:
            previous_raw = track.raw if track.raw is not None else level
            track.offset = last
            value = last + raw
            track.holding = False
            corrections.append(
                Correction(
                    key,
                    f"{key}: counter went back from {_format(previous_raw)} to {_format(raw)} Wh "
                    f"(reset or wrap); continued with offset {_format(track.offset)}",
                    device,
                )
            )
        track.raw, track.published, track.time = float(raw), value, now
        return _like(raw, value)

    # -- daily ---------------------------------------------------------------------------------------

    def _guard_daily(
        self,
        track: _DailyTrack,
        device: str,
        key: str,
        raw: Any,
        now: float,
        today: date,
        lifetime: tuple[float | None, float | None, float | None] | None,
        corrections: list[Correction],
    ) -> Any:
        if not _number(raw):
            return raw
        if not math.isfinite(raw) or raw < 0:
            if not track.rejecting:
                track.rejecting = True
                self._dirty = True
                corrections.append(
                    Correction(key, f"{key}: impossible daily value {raw!r} Wh; published as unknown", device)
                )
            return None
        track.rejecting = False
        self._dirty = True
        today_text = today.isoformat()
        lifetime_now = lifetime[0] if lifetime is not None else None
        reset_floor = (1.0 - self._tolerance) * (track.raw or 0.0)
        value: float
        if track.published is None or track.raw is None:
            value = float(raw)
            track.mode, track.carry, track.holding = "raw", 0.0, False
        elif track.date != today_text and raw < reset_floor:
            # The Envoy reset its counter (on time, early, or to a non-zero value): a new day.
            track.holding = False
            value = float(raw)
            track.mode, track.carry = "raw", 0.0
        elif (
            track.date != today_text
            and (device, key) not in self._jumped
            and not today_text < track.date  # a date going back is a clock set back, never a midnight
        ):
            # Local midnight passed but the Envoy still counts yesterday: derive today ourselves.
            track.holding = False
            track.mode, track.carry = "derived", 0.0
            track.base_raw = track.raw
            track.base_lifetime = self._lifetime_at_midnight(today, now, lifetime)
            value = self._derived(track, raw, lifetime_now)
            if raw > 0:
                corrections.append(
                    Correction(
                        key,
                        f"{key}: still {_format(raw)} Wh after local midnight (late reset); "
                        "publishing today's value derived from the lifetime counter until the Envoy "
                        "resets it",
                        device,
                    )
                )
        elif track.mode == "derived":
            if raw < reset_floor:
                # The late reset arrived: follow the Envoy again, on top of what today already counted.
                # With a lifetime counter that is exact (today so far minus what the Envoy counted since
                # its reset); without one, assume the Envoy restarted from 0 after the last poll.
                track.mode = "raw"
                if lifetime_now is not None and track.base_lifetime is not None:
                    today_so_far = max(track.published, self._derived(track, raw, lifetime_now))
                    track.carry = max(0.0, today_so_far - raw)
                else:
                    track.carry = track.published
                value = max(track.published, raw + track.carry)
            else:
                value = max(track.published, self._derived(track, raw, lifetime_now))
        else:
            candidate = raw + track.carry
            if candidate >= track.published:
                value = candidate
                track.holding = False
            else:
                value = track.published
                if not track.holding:
                    track.holding = True
                    corrections.append(
                        Correction(
                            key,
                            f"{key}: dropped from {_format(track.published)} to {_format(candidate)} Wh "
                            f"before local midnight; held at {_format(track.published)}",
                            device,
                        )
                    )
        track.raw, track.published, track.date = float(raw), value, today_text
        self._jumped.discard((device, key))
        return _like(raw, value)

    def _derived(self, track: _DailyTrack, raw: float, lifetime_now: float | None) -> float:
        if lifetime_now is not None and track.base_lifetime is not None:
            return max(0.0, lifetime_now - track.base_lifetime)
        # No lifetime for this quantity: the Envoy's daily counter still runs from yesterday's total.
        return max(0.0, raw - track.base_raw)

    def _lifetime_at_midnight(
        self, today: date, now: float, lifetime: tuple[float | None, float | None, float | None] | None
    ) -> float | None:
        """The lifetime counter at today's local midnight, interpolated between the polls around it."""
        if lifetime is None or lifetime[0] is None:
            return None
        current, before, before_time = lifetime
        if current is None or before is None or before_time is None or before_time >= now:
            return current
        midnight = datetime(today.year, today.month, today.day, tzinfo=self._zone).timestamp()
        if before_time >= midnight:
            return before
        if now <= midnight:
            return current
        share = (midnight - before_time) / (now - before_time)
        return before + max(0.0, current - before) * share

    def _local_date(self, now: float) -> date:
        cached = self._date_cache
        if cached is not None and cached[0] == now:
            return cached[1]
        local = datetime.fromtimestamp(now, tz=self._zone).date()
        self._date_cache = (now, local)
        return local

    # -- persistence ---------------------------------------------------------------------------------

    def _load(self) -> None:
        data = self._state.load()
        section = data.pop(STATE_SECTION, None)
        self._other = data
        if not isinstance(section, dict):
            return
        skipped = 0
        lifetime_section = section.get("lifetime")
        for device, key, record in _records(lifetime_section):
            try:
                self._lifetimes[(device, key)] = _lifetime_from(record)
            except (TypeError, ValueError, KeyError):
                skipped += 1
        daily_section = section.get("daily")
        for device, key, record in _records(daily_section):
            try:
                self._dailies[(device, key)] = _daily_from(record)
            except (TypeError, ValueError, KeyError):
                skipped += 1
        if skipped:
            log.warning("counter_entries_malformed", action="ignored", count=skipped)

    def _snapshot(self) -> dict[str, Any]:
        lifetime: dict[str, dict[str, Any]] = {}
        for (device, key), track in self._lifetimes.items():
            if track.published is None:
                continue
            lifetime.setdefault(device, {})[key] = {
                "offset": track.offset,
                "raw": track.raw,
                "published": track.published,
                "time": track.time,
                "holding": track.holding,
                "recovered": track.recovered,
            }
        daily: dict[str, dict[str, Any]] = {}
        for (device, key), daily_track in self._dailies.items():
            if daily_track.published is None:
                continue
            daily.setdefault(device, {})[key] = {
                "published": daily_track.published,
                "raw": daily_track.raw,
                "date": daily_track.date,
                "mode": daily_track.mode,
                "carry": daily_track.carry,
                "base_lifetime": daily_track.base_lifetime,
                "base_raw": daily_track.base_raw,
                "holding": daily_track.holding,
            }
        out = dict(self._other)
        out[STATE_SECTION] = {"version": STATE_VERSION, "lifetime": lifetime, "daily": daily}
        return out

    def _save(self, now: float | None) -> None:
        try:
            self._state.save(self._snapshot())
        except OSError as exc:
            if not self._save_failed:
                log.error(
                    "counter_offsets_save_failed",
                    action="keeping them in memory and retrying",
                    path=str(self._state.path),
                    error=exc.strerror or type(exc).__name__,
                )
            self._save_failed = True
            self._last_save = now  # retry after the next interval, not on every poll
            return
        if self._save_failed:
            log.info("counter_offsets_saved_again", path=str(self._state.path))
        self._save_failed = False
        self._dirty = False
        self._last_save = now


def _records(section: Any) -> Iterable[tuple[str, str, Any]]:
    if not isinstance(section, dict):
        return
    for device, keys in section.items():
        if not isinstance(keys, dict):
            continue
        for key, record in keys.items():
            yield str(device), str(key), record


def _finite(value: Any, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if not _number(value) or not math.isfinite(value):
        raise ValueError("not a finite number")
    return float(value)


def _required(value: Any) -> float:
    number = _finite(value)
    assert number is not None
    return number


def _lifetime_from(record: Any) -> _LifetimeTrack:
    if not isinstance(record, dict):
        raise TypeError("not an object")
    track = _LifetimeTrack()
    track.offset = _required(record["offset"])
    track.published = _required(record["published"])
    track.raw = _finite(record.get("raw"), optional=True)
    track.time = _finite(record.get("time"), optional=True)
    track.holding = bool(record.get("holding", False))
    track.recovered = bool(record.get("recovered", False))
    if track.offset < 0 or track.published < 0:
        raise ValueError("negative counter state")
    return track


def _daily_from(record: Any) -> _DailyTrack:
    if not isinstance(record, dict):
        raise TypeError("not an object")
    track = _DailyTrack()
    track.published = _required(record["published"])
    track.raw = _required(record["raw"])
    track.date = date.fromisoformat(str(record["date"])).isoformat()
    mode = record.get("mode", "raw")
    if mode not in ("raw", "derived"):
        raise ValueError("unknown daily mode")
    track.mode = mode
    track.carry = _required(record.get("carry", 0.0))
    track.base_lifetime = _finite(record.get("base_lifetime"), optional=True)
    track.base_raw = _required(record.get("base_raw", 0.0))
    track.holding = bool(record.get("holding", False))
    return track
