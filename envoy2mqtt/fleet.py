"""Fleet health: which devices report, and which microinverters produce less than their siblings.

Pure and clock-free: device samples in, verdicts out. Time comes only from the devices' own report
times (the Envoy's clock), never from the host, so a host clock that jumps cannot make a device stale.

- **Reporting / stale** (`group_health`): the reference is the *median* report time of the group, so
  at night (every microinverter asleep since dusk) and at dawn (half of them awake) nothing is stale; a
  device whose last report is more than two report periods older than that reference is stale.
- **Underperforming** (`OutputJudge`): each microinverter's output ratio (power / maximum power)
  relative to the median ratio of its siblings, averaged over a rolling window of judged reports. A
  report is judged only when it is new (its report time changed), the device is not stale, at least
  `min_inverters` siblings report and the site produces at least `min_site_output` % of its capacity.
  Once the window is full, an inverter is flagged after `consecutive` judged reports in a row whose
  windowed value is below `threshold` %, and cleared after as many in a row at or above it.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .clock import iso_utc
from .config import FleetSettings
from .model import BatteryReading, InverterReading, Payload

__all__ = [
    "DeviceSample",
    "FleetAnalysis",
    "FleetVerdict",
    "GroupHealth",
    "InverterVerdict",
    "OutputJudge",
    "OutputVerdicts",
    "StaleDevice",
    "group_health",
    "sample_of",
]

STALE_PERIODS = 2  # a device is stale after this many report periods without a report


@dataclass(frozen=True, slots=True)
class DeviceSample:
    """What fleet health reads of one device in one device cycle."""

    serial: str
    last_report: float | None = None  # epoch seconds, the Envoy's clock
    provisioned: bool | None = None
    communicating: bool | None = None
    power: float | None = None
    max_power: float | None = None


def _epoch(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def sample_of(reading: InverterReading | BatteryReading) -> DeviceSample:
    """A normalized reading as a fleet sample (only the keys the hardware reports are used)."""
    present = reading.present
    return DeviceSample(
        serial=reading.serial,
        last_report=_epoch(reading.last_report) if "last_report" in present else None,
        provisioned=reading.provisioned if "provisioned" in present else None,
        communicating=reading.communicating if "communicating" in present else None,
        power=reading.power if "power" in present else None,
        max_power=reading.max_power if "max_power" in present else None,
    )


# ------------------------------------------------------------------------------------ reporting


@dataclass(frozen=True, slots=True)
class StaleDevice:
    serial: str
    last_report: float | None

    def payload(self) -> Payload:
        when = iso_utc(self.last_report) if self.last_report is not None else None
        return {"serial": self.serial, "last_report": when}


@dataclass(frozen=True, slots=True)
class GroupHealth:
    """Counts for one kind of device (microinverters or batteries)."""

    provisioned: int
    communicating: int | None  # None: the Envoy does not say
    reporting: int | None  # None: no report times at all
    stale: tuple[StaleDevice, ...] = ()

    @property
    def stale_serials(self) -> frozenset[str]:
        return frozenset(d.serial for d in self.stale)

    def payload(self, prefix: str) -> Payload:
        return {
            f"{prefix}_provisioned": self.provisioned,
            f"{prefix}_communicating": self.communicating,
            f"{prefix}_reporting": self.reporting,
            f"{prefix}_stale": [d.payload() for d in self.stale],
        }


def group_health(samples: Sequence[DeviceSample], report_period: float) -> GroupHealth:
    """Provisioned, communicating and reporting counts, and the stale devices with their last report."""
    known = [s.provisioned for s in samples if s.provisioned is not None]
    # A device the Envoy lists without saying whether it is provisioned counts as provisioned.
    provisioned = sum(1 for s in samples if s.provisioned is not False) if known else len(samples)
    flags = [s.communicating for s in samples if s.communicating is not None]
    communicating = sum(1 for f in flags if f) if flags else None
    times = [s.last_report for s in samples if s.last_report is not None]
    if not times:
        return GroupHealth(provisioned, communicating, None)
    cutoff = statistics.median(times) - STALE_PERIODS * report_period
    stale = tuple(
        StaleDevice(s.serial, s.last_report)
        for s in sorted(samples, key=lambda s: s.serial)
        if s.last_report is None or s.last_report < cutoff
    )
    return GroupHealth(provisioned, communicating, len(samples) - len(stale), stale)


# ------------------------------------------------------------------------------------ output


@dataclass(frozen=True, slots=True)
class InverterVerdict:
    relative_output: float | None  # % of the siblings' median, averaged over the window
    underperforming: bool

    def payload(self) -> Payload:
        return {"relative_output": self.relative_output, "underperforming": self.underperforming}


@dataclass(frozen=True, slots=True)
class OutputVerdicts:
    """One device cycle's judgement of the whole array."""

    inverters: Mapping[str, InverterVerdict]
    site_output: float | None  # % of the array's maximum power produced right now
    judged: bool  # whether this cycle was judged (enough sun and siblings)

    @property
    def underperforming(self) -> tuple[str, ...]:
        return tuple(sorted(s for s, v in self.inverters.items() if v.underperforming))


@dataclass
class _Track:
    window: deque[float]
    last_report: float | None = None
    low_streak: int = 0
    good_streak: int = 0
    flagged: bool = False

    def verdict(self) -> InverterVerdict:
        relative = round(statistics.fmean(self.window), 1) if self.window else None
        return InverterVerdict(relative, self.flagged)


class OutputJudge:
    """Holds each microinverter's rolling window between device cycles; no clock, no I/O."""

    def __init__(self, settings: FleetSettings) -> None:
        self.settings = settings
        self._tracks: dict[str, _Track] = {}

    def judge(self, samples: Sequence[DeviceSample], stale: Iterable[str] = ()) -> OutputVerdicts:
        settings = self.settings
        excluded = set(stale)
        rated = [s for s in samples if s.max_power is not None and s.max_power > 0 and s.power is not None]
        for gone in set(self._tracks) - {s.serial for s in rated}:
            del self._tracks[gone]
        capacity = sum(s.max_power or 0.0 for s in rated)
        produced = sum(max(s.power or 0.0, 0.0) for s in rated)
        site_output = round(100 * produced / capacity, 1) if capacity > 0 else None
        fresh = [s for s in rated if s.serial not in excluded]
        ratios = {s.serial: max(s.power or 0.0, 0.0) / (s.max_power or 1.0) for s in fresh}
        judged = (
            site_output is not None
            and site_output >= settings.min_site_output
            and len(fresh) >= settings.min_inverters
        )
        for sample in rated:
            track = self._tracks.get(sample.serial)
            if track is None:
                track = self._tracks[sample.serial] = _Track(deque(maxlen=settings.window))
            new_report = sample.last_report is None or sample.last_report != track.last_report
            track.last_report = sample.last_report
            if not (judged and new_report and sample.serial in ratios):
                continue
            siblings = [r for serial, r in ratios.items() if serial != sample.serial]
            reference = statistics.median(siblings)
            if reference <= 0:
                continue
            track.window.append(100 * ratios[sample.serial] / reference)
            if (
                len(track.window) == settings.window
            ):  # a part-filled window is one passing cloud away from low
                self._step(track, statistics.fmean(track.window) < settings.threshold)
        verdicts = {serial: track.verdict() for serial, track in self._tracks.items()}
        return OutputVerdicts(verdicts, site_output, judged)

    def _step(self, track: _Track, low: bool) -> None:
        needed = self.settings.consecutive
        if low:
            track.low_streak += 1
            track.good_streak = 0
            if track.low_streak >= needed:
                track.flagged = True
        else:
            track.good_streak += 1
            track.low_streak = 0
            if track.good_streak >= needed:
                track.flagged = False


# ------------------------------------------------------------------------------------ together


@dataclass(frozen=True, slots=True)
class FleetVerdict:
    """Everything fleet health says after one device cycle."""

    inverters: GroupHealth | None
    batteries: GroupHealth | None
    output: OutputVerdicts | None

    def inverter_keys(self, serial: str) -> Payload:
        """The keys one microinverter's state payload gains (none when it is not judged at all)."""
        if self.output is None:
            return {}
        verdict = self.output.inverters.get(serial)
        return verdict.payload() if verdict is not None else {}

    def payload(self) -> Payload:
        """The `<base>/<envoy>/health` object."""
        out: Payload = {}
        if self.inverters is not None:
            out.update(self.inverters.payload("inverters"))
        if self.output is not None:
            out["inverters_underperforming"] = len(self.output.underperforming)
            out["underperforming_serials"] = list(self.output.underperforming)
            out["site_output"] = self.output.site_output
        if self.batteries is not None:
            out.update(self.batteries.payload("batteries"))
        return out


@dataclass
class FleetAnalysis:
    """One Envoy's fleet health across device cycles: reporting counts and the output judge."""

    settings: FleetSettings
    _judge: OutputJudge | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._judge = OutputJudge(self.settings) if self.settings.enabled else None

    def update(self, inverters: Sequence[DeviceSample], batteries: Sequence[DeviceSample]) -> FleetVerdict:
        period = self.settings.report_period
        inverter_health = group_health(inverters, period) if inverters else None
        battery_health = group_health(batteries, period) if batteries else None
        output = None
        if self._judge is not None and any(s.max_power is not None for s in inverters):
            stale = inverter_health.stale_serials if inverter_health is not None else frozenset()
            output = self._judge.judge(inverters, stale)
        return FleetVerdict(inverter_health, battery_health, output)
