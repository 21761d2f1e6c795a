"""Generated sites: a small physical model of a PV system answered in the shapes of Envoy firmware.

One `SiteModel` integrates power into energy over simulated time (production from a daily solar curve,
a varying household load, a battery that soaks up surplus and covers deficits); `GeneratedSite` renders
that state as the endpoints of the chosen profile. Sign conventions follow the Envoy: grid power is
+import / -export, battery power is +discharge / -charge, and grid = load - production - battery.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from envoy2mqtt.errors import ConfigError
from envoy2mqtt.simulator.responses import (
    EnvoyResponse,
    json_response,
    not_found,
    xml_response,
)
from envoy2mqtt.simulator.simtime import SimulatedTime

DEVICE_DATA_LIMIT = 50
_REPORT_PERIOD = 300  # microinverters report every 5 minutes
_HOUR = 3600.0
_DAY = 86400.0
_MAX_STEPS = 5000
_MIN_STEP = 60.0


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    serial: str
    serial_code: str  # 3 digits in the generated device serials
    firmware: str
    part_number: str
    imeter: bool | None  # None: the <imeter> element is absent
    phases: int
    phase_mode: str  # "three" | "split" | "single"
    voltage: float  # per phase
    frequency: float
    timezone: str
    inverter_count: int
    inverter_watts: float
    inverter_part: str
    production_ct: bool
    net_ct: bool
    storage_ct: bool
    iq_batteries: int
    acb_batteries: int
    base_load: float
    load_split: tuple[float, ...]
    device_data: bool  # /ivp/pdm/device_data exists (fw >= 8.2.4)
    ensemble: bool  # /ivp/ensemble/* exists (fw >= 7 in our profiles)

    @property
    def token_firmware(self) -> bool:
        return int(self.firmware[1:].split(".")[0]) >= 7

    @property
    def metered(self) -> bool:
        return self.production_ct or self.net_ct


PROFILES: dict[str, Profile] = {
    "metered-3phase-iq": Profile(
        name="metered-3phase-iq",
        serial="122301234561",
        serial_code="231",
        firmware="D8.2.4345",
        part_number="880-00209-r03",
        imeter=True,
        phases=3,
        phase_mode="three",
        voltage=230.0,
        frequency=50.0,
        timezone="Europe/Amsterdam",
        inverter_count=24,
        inverter_watts=330.0,
        inverter_part="800-01735-r02",
        production_ct=True,
        net_ct=True,
        storage_ct=True,
        iq_batteries=2,
        acb_batteries=0,
        base_load=450.0,
        load_split=(0.45, 0.33, 0.22),
        device_data=True,
        ensemble=True,
    ),
    "metered-1phase-acb": Profile(
        name="metered-1phase-acb",
        serial="122201234562",
        serial_code="222",
        firmware="D8.2.4382",
        part_number="800-00654-r06",
        imeter=True,
        phases=1,
        phase_mode="single",
        voltage=240.0,
        frequency=60.0,
        timezone="US/Pacific",
        inverter_count=12,
        inverter_watts=290.0,
        inverter_part="800-00631-r02",
        production_ct=True,
        net_ct=True,
        storage_ct=False,
        iq_batteries=0,
        acb_batteries=1,
        base_load=380.0,
        load_split=(1.0,),
        device_data=True,
        ensemble=True,
    ),
    "legacy-unmetered": Profile(
        name="legacy-unmetered",
        serial="121501234563",
        serial_code="215",
        firmware="D5.0.62",
        part_number="800-00551-r02",
        imeter=False,
        phases=1,
        phase_mode="single",
        voltage=240.0,
        frequency=60.0,
        timezone="US/Eastern",
        inverter_count=10,
        inverter_watts=225.0,
        inverter_part="800-00106-r01",
        production_ct=False,
        net_ct=False,
        storage_ct=False,
        iq_batteries=0,
        acb_batteries=0,
        base_load=350.0,
        load_split=(1.0,),
        device_data=False,
        ensemble=False,
    ),
}

IQ_BATTERY_WH = 5000.0
IQ_BATTERY_W = 3840.0
ACB_WH = 1200.0
ACB_W = 270.0
CHARGE_SHARE = 0.25  # of the PV surplus
RESERVE_SOC = 20  # percent kept for backup (IQ); the ACB may run down to 0 % here
METER_EIDS = {"production": 704643328, "net-consumption": 704643584, "storage": 704643840}
_PHASE_NAMES = ("ph-a", "ph-b", "ph-c")


# ------------------------------------------------------------------------------------------------ model


@dataclass(frozen=True, slots=True)
class Inverter:
    serial: str
    phase: int
    rating: float  # W at full sun
    report_offset: int  # seconds after each 5-minute mark this unit reports
    device_id: int


class SiteModel:
    """The physical state of one site, integrated step by step as simulated time moves forward."""

    def __init__(self, profile: Profile, start: float, inverters: int | None = None) -> None:
        self.profile = profile
        self.tz = ZoneInfo(profile.timezone)
        count = profile.inverter_count if inverters is None else inverters
        if count < 1:
            raise ConfigError("scale must be at least 1 microinverter")
        self.inverters = [
            Inverter(
                serial=f"12{profile.serial_code}{index:07d}",
                phase=index % profile.phases,
                rating=profile.inverter_watts * (1.0 + 0.04 * math.sin(index * 1.7)),
                report_offset=(index * 13) % 60,
                device_id=553648384 + index * 256,
            )
            for index in range(count)
        ]
        self.capacity = sum(inv.rating for inv in self.inverters)
        self.phase_capacity = [
            sum(inv.rating for inv in self.inverters if inv.phase == p) for p in range(profile.phases)
        ]
        battery_count = profile.iq_batteries + profile.acb_batteries
        self.battery_capacity = profile.iq_batteries * IQ_BATTERY_WH + profile.acb_batteries * ACB_WH
        self.battery_max_power = profile.iq_batteries * IQ_BATTERY_W + profile.acb_batteries * ACB_W
        self.battery_reserve = self.battery_capacity * (RESERVE_SOC if profile.iq_batteries else 0) / 100
        self.battery_phase_share = [0.0] * profile.phases
        for index in range(battery_count):
            self.battery_phase_share[index % profile.phases] += 1.0 / battery_count
        self.phases = profile.phases
        # Injected faults (`POST /__sim/site`): per-inverter output factors (shade, a failing unit),
        # inverters that stopped reporting (serial -> simulated time they went silent), scattered clouds.
        self.output_factor: dict[str, float] = {}
        self.silent_since: dict[str, float] = {}
        self.cloudy = False

        # state at local midnight of the start day, then integrated up to `start`
        midnight = self._local_midnight(start)
        self.t = midnight
        self._next_midnight = self._local_midnight(midnight + _DAY + 3600)
        years = 3.2
        n = self.phases
        prod_share = [c / self.capacity for c in self.phase_capacity]
        lifetime_prod = self.capacity * 1100 * years
        lifetime_load = 4_500_000 * years
        self.prod_lifetime = [lifetime_prod * s for s in prod_share]
        self.load_lifetime = [lifetime_load * s for s in profile.load_split]
        self.import_lifetime = [lifetime_load * 0.55 * s for s in profile.load_split]
        self.export_lifetime = [lifetime_prod * 0.45 * s for s in prod_share]
        self.battery_discharged = [2_100_000.0 * s for s in self.battery_phase_share]
        self.battery_charged = [2_300_000.0 * s for s in self.battery_phase_share]
        self.prod_today = [0.0] * n
        self.load_today = [0.0] * n
        daily = self.capacity * 4.0
        self.prod_history: deque[float] = deque(
            (daily * (0.8 + 0.3 * math.sin(k)) for k in range(7)), maxlen=7
        )
        self.load_history: deque[float] = deque(
            (11_000 * (1 + 0.1 * math.cos(k)) for k in range(7)), maxlen=7
        )
        self.battery_energy = self.battery_capacity * 0.45
        self.pv = [0.0] * n
        self.load = [0.0] * n
        self.battery = [0.0] * n
        self._sample(self.t, 0.0)
        self.advance(start)

    # --- curves ------------------------------------------------------------------------------

    def _local_midnight(self, t: float) -> float:
        local = datetime.fromtimestamp(t, self.tz)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    def local_time(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, self.tz)

    def sun(self, t: float) -> float:
        """Fraction of rated power at `t`: a seasonal daily arc times passing clouds."""
        local = self.local_time(t)
        hour = local.hour + local.minute / 60 + local.second / 3600
        season = math.sin(2 * math.pi * (local.timetuple().tm_yday - 80) / 365.0)
        day_length = 12.0 + 3.5 * season
        sunrise = 13.0 - day_length / 2
        if not sunrise < hour < sunrise + day_length:
            return 0.0
        arc: float = math.sin(math.pi * (hour - sunrise) / day_length) ** 1.3
        clouds = 0.85 + 0.15 * math.sin(t / 1800.0) * math.sin(t / 470.0 + 1.0)
        return max(0.0, arc * (0.8 + 0.2 * season) * clouds)

    def household_load(self, t: float) -> float:
        local = self.local_time(t)
        hour = local.hour + local.minute / 60 + local.second / 3600
        morning = 600.0 * math.exp(-(((hour - 7.5) / 1.0) ** 2))
        evening = 1200.0 * math.exp(-(((hour - 19.0) / 1.5) ** 2))
        wiggle = 150.0 * math.sin(t / 311.0) + 90.0 * math.sin(t / 53.0 + 1.0) + 40.0 * math.sin(t / 17.0)
        return max(80.0, self.profile.base_load + morning + evening + wiggle)

    def inverter_watts(self, inverter: Inverter, t: float) -> float:
        watts = inverter.rating * self.sun(t) * self.output_factor.get(inverter.serial, 1.0)
        if self.cloudy:
            watts *= _scatter(inverter.device_id, t)
        return watts

    # --- integration -------------------------------------------------------------------------

    def _sample(self, t: float, dt: float) -> None:
        """Instantaneous powers at `t`; the battery decision looks `dt` ahead to respect its limits."""
        sun = self.sun(t)
        household = self.household_load(t)
        self.pv = [c * sun for c in self.phase_capacity]
        self.load = [household * s for s in self.profile.load_split]
        surplus = sum(self.pv) - household
        battery = 0.0
        if self.battery_capacity > 0:
            horizon = max(dt, 60.0) / _HOUR
            if surplus > 0:
                room = (self.battery_capacity - self.battery_energy) / horizon
                # only part of the surplus goes into the battery, the rest is exported
                battery = -min(surplus * CHARGE_SHARE, self.battery_max_power, max(room, 0.0))
            else:
                available = (self.battery_energy - self.battery_reserve) / horizon
                battery = min(-surplus, self.battery_max_power, max(available, 0.0))
        self.battery = [battery * s for s in self.battery_phase_share]

    def advance(self, to: float) -> None:
        if to <= self.t:
            return
        step = max(_MIN_STEP, (to - self.t) / _MAX_STEPS)
        while self.t < to:
            dt = min(step, to - self.t, self._next_midnight - self.t)
            self._sample(self.t + dt / 2, dt)
            hours = dt / _HOUR
            for p in range(self.phases):
                pv, load, battery = self.pv[p], self.load[p], self.battery[p]
                grid = load - pv - battery
                self.prod_lifetime[p] += pv * hours
                self.prod_today[p] += pv * hours
                self.load_lifetime[p] += load * hours
                self.load_today[p] += load * hours
                self.import_lifetime[p] += max(grid, 0.0) * hours
                self.export_lifetime[p] += max(-grid, 0.0) * hours
                self.battery_discharged[p] += max(battery, 0.0) * hours
                self.battery_charged[p] += max(-battery, 0.0) * hours
            self.battery_energy -= sum(self.battery) * hours
            self.battery_energy = min(max(self.battery_energy, 0.0), self.battery_capacity)
            self.t += dt
            if self.t >= self._next_midnight:
                self.prod_history.append(sum(self.prod_today))
                self.load_history.append(sum(self.load_today))
                self.prod_today = [0.0] * self.phases
                self.load_today = [0.0] * self.phases
                self._next_midnight = self._local_midnight(self._next_midnight + _DAY + 3600)
        self._sample(self.t, 0.0)

    # --- derived views -----------------------------------------------------------------------

    @property
    def grid(self) -> list[float]:
        return [self.load[p] - self.pv[p] - self.battery[p] for p in range(self.phases)]

    @property
    def soc(self) -> int:
        if self.battery_capacity <= 0:
            return 0
        return round(100 * self.battery_energy / self.battery_capacity)

    def last_report(self, inverter: Inverter, t: float) -> int:
        silent = self.silent_since.get(inverter.serial)
        if silent is not None:
            t = min(t, silent)
        return int((t - inverter.report_offset) // _REPORT_PERIOD * _REPORT_PERIOD + inverter.report_offset)

    def set_inverter(
        self,
        serial: str,
        *,
        output: float | None = None,
        reporting: bool | None = None,
        silent_for: float = 0.0,
    ) -> None:
        """Shade or fail one microinverter (`output` 0-1 of what it would make) or make it stop reporting
        (`silent_for`: as if it had stopped that many seconds ago)."""
        if serial not in {inv.serial for inv in self.inverters}:
            raise ValueError(f"no microinverter {serial!r} at this site")
        if output is not None:
            if not 0 <= output <= 1.5:
                raise ValueError("output must be between 0 and 1.5")
            self.output_factor[serial] = output
        if reporting is True:
            self.silent_since.pop(serial, None)
        elif reporting is False:
            self.silent_since.setdefault(serial, self.t - max(silent_for, 0.0))

    def reported_watts(self, inverter: Inverter, t: float) -> int:
        return round(self.inverter_watts(inverter, self.last_report(inverter, t)))

    def share(self, inverter: Inverter) -> float:
        return inverter.rating / self.capacity


def _scatter(device_id: int, t: float) -> float:
    """A cloudy day: a cloud layer letting 40-100 % of the sun through, new every report period, and under
    it each microinverter its own 55-100 % (cloud edges, the units' staggered report times)."""
    slot = int(t // _REPORT_PERIOD)
    layer = 0.4 + 0.6 * _noise(f"layer:{slot}")
    return layer * (0.55 + 0.45 * _noise(f"{device_id}:{slot}"))


def _noise(seed: str) -> float:
    """A repeatable pseudo-random number in [0, 1) (the simulator stays deterministic)."""
    return random.Random(seed).random()


# ------------------------------------------------------------------------------------------------ views


def _r3(value: float) -> float:
    return round(value, 3)


def _phase_voltage(profile: Profile, t: float, phase: int) -> float:
    return profile.voltage * (1.0 + 0.004 * math.sin(t / 300.0 + phase * 2.1))


def _frequency(profile: Profile, t: float) -> float:
    return profile.frequency + 0.02 * math.sin(t / 97.0)


def _ac_values(watts: float, voltage: float, lagging: bool = True) -> dict[str, float]:
    reactive = 0.12 * abs(watts) + 15.0
    apparent = math.hypot(watts, reactive)
    return {
        "current": abs(apparent) / voltage,
        "reactive": reactive if lagging else -reactive,
        "apparent": apparent,
        "pf": 0.0 if apparent == 0 else round(watts / apparent, 2),
    }


class GeneratedSite:
    """An `EnvoySource` answering from a `SiteModel` in the response shapes of the profile's firmware."""

    def __init__(
        self,
        profile: str,
        time: SimulatedTime,
        inverters: int | None = None,
        serial: str | None = None,
        *,
        enpower: bool = False,
    ) -> None:
        if profile not in PROFILES:
            raise ConfigError(f"unknown simulator profile {profile!r}; choose one of {', '.join(PROFILES)}")
        self.profile = PROFILES[profile]
        # An IQ System Controller (Enpower) in /ivp/ensemble/inventory; its relay and dry contacts are
        # served by simulator/controls.py.
        self.enpower = enpower and self.profile.ensemble
        # The relay's operating state, "closed" (on grid) or "open"; the simulator hands in its controls'.
        self.relay_state: Callable[[], str] = lambda: "closed"
        self._serial = serial or self.profile.serial
        self._time = time
        # A static site is frozen at half past noon of the start day, so it shows sun and load.
        self._static_time = None if time.live else self._afternoon(time.start)
        self.model = SiteModel(self.profile, self._now(), inverters)

    def _afternoon(self, t: float) -> float:
        local = datetime.fromtimestamp(t, ZoneInfo(self.profile.timezone))
        return local.replace(hour=12, minute=30, second=0, microsecond=0).timestamp()

    def _now(self) -> float:
        return self._static_time if self._static_time is not None else self._time.now()

    @property
    def serial(self) -> str:
        return self._serial

    @property
    def firmware(self) -> str:
        return self.profile.firmware

    def respond(self, path: str, query: str) -> EnvoyResponse:
        now = self._now()
        self.model.advance(now)
        profile = self.profile
        details = "details=1" in query.split("&")
        if path in ("/info", "/info.xml"):
            return xml_response(self._info(now))
        if path in ("/home.json", "/home"):
            return json_response(self._home(now))
        if path == "/production.json":
            return json_response(self._production_json(now, details))
        if path == "/production":
            if not profile.token_firmware:
                return not_found()
            return json_response(self._production_json(now, False))
        if path == "/api/v1/production":
            return json_response(self._api_v1_production())
        if path == "/api/v1/production/inverters":
            return json_response(self._api_v1_inverters(now))
        if path == "/inventory.json":
            return json_response(self._inventory(now))
        if path == "/ivp/meters":
            return json_response(self._meters())
        if path == "/ivp/meters/readings":
            return json_response(self._readings(now))
        if path == "/ivp/pdm/device_data" and profile.device_data:
            return json_response(self._device_data(now))
        if path == "/ivp/livedata/status" and profile.token_firmware and profile.ensemble:
            return json_response(self._livedata(now))
        if path.startswith("/ivp/ensemble/"):
            if not profile.ensemble:
                return json_response({"error": "404 - Not Found"}, status=404)
            if path == "/ivp/ensemble/inventory":
                return json_response(self._ensemble_inventory(now))
            if path == "/ivp/ensemble/power":
                return json_response(self._ensemble_power())
            if path == "/ivp/ensemble/secctrl":
                return json_response(self._secctrl())
        return not_found()

    # --- /info, /home ------------------------------------------------------------------------

    def _info(self, now: float) -> str:
        profile = self.profile
        parts = [int(x) for x in profile.firmware[1:].split(".")]
        app_version = f"{parts[0]:02d}.{parts[1]:02d}.{parts[2]}"
        imeter = "" if profile.imeter is None else f"\n    <imeter>{str(profile.imeter).lower()}</imeter>"
        tokens = "\n  <web-tokens>true</web-tokens>" if profile.token_firmware else ""
        return f"""<?xml version="1.0" encoding="utf-8"?>
<envoy_info>
  <time>{int(now)}</time>
  <device>
    <sn>{self.serial}</sn>
    <pn>{profile.part_number}</pn>
    <software>{profile.firmware}</software>
    <euaid>4c8675</euaid>
    <seqnum>0</seqnum>
    <apiver>1</apiver>{imeter}
  </device>{tokens}
  <package name="app">
    <pn>500-00002-r01</pn>
    <version>{app_version}</version>
    <build>5c3a00</build>
  </package>
  <build_info>
    <build_id>envoy2mqtt-simulator-{profile.name}</build_id>
    <build_time_gmt>1748922970</build_time_gmt>
    <release_stage>700-GA</release_stage>
    <release_ver>02.00.284</release_ver>
  </build_info>
</envoy_info>
"""

    def _home(self, now: float) -> dict[str, Any]:
        model = self.model
        local = model.local_time(now)
        acb = self.profile.acb_batteries
        iq = self.profile.iq_batteries
        return {
            "software_build_epoch": 1748922970,
            "timezone": self.profile.timezone,
            "current_date": local.strftime("%m/%d/%Y"),
            "current_time": local.strftime("%H:%M"),
            "network": {
                "web_comm": True,
                "ever_reported_to_enlighten": True,
                "last_enlighten_report_time": int(now) - 240,
                "primary_interface": "eth0",
                "interfaces": [
                    {
                        "type": "ethernet",
                        "interface": "eth0",
                        "mac": "02:00:5E:10:00:01",
                        "dhcp": True,
                        "ip": "192.0.2.10",
                        "signal_strength": 1,
                        "signal_strength_max": 1,
                        "carrier": True,
                    }
                ],
            },
            "tariff": "none",
            "comm": {
                "num": len(model.inverters) + acb + iq,
                "level": 5,
                "pcu": {"num": len(model.inverters), "level": 5},
                "acb": {"num": acb, "level": 5 if acb else 0},
                "nsrb": {"num": 0, "level": 0},
                "esub": {"num": 0, "level": 0},
                "encharge": [{"num": iq, "level": 5 if iq else 0, "level_24g": 0, "level_subg": 0}],
            },
            "wireless_connection": [],
        }

    # --- production ----------------------------------------------------------------------------

    def _inverter_total(self, now: float) -> tuple[int, int]:
        model = self.model
        watts = sum(model.reported_watts(inv, now) for inv in model.inverters)
        latest = max(model.last_report(inv, now) for inv in model.inverters)
        return watts, latest

    def _eim(
        self,
        measurement: str,
        now: float,
        watts: list[float],
        lifetime: list[float],
        today: list[float] | None,
        seven_days: list[float] | None,
        details: bool,
    ) -> dict[str, Any]:
        profile = self.profile
        lines = []
        for p in range(profile.phases):
            voltage = _phase_voltage(profile, now, p)
            ac = _ac_values(watts[p], voltage)
            day = today[p] if today is not None else 0.0
            week = seven_days[p] if seven_days is not None else 0.0
            lines.append(
                {
                    "wNow": _r3(watts[p]),
                    "whLifetime": _r3(lifetime[p]),
                    "varhLeadLifetime": _r3(abs(lifetime[p]) * 0.04),
                    "varhLagLifetime": _r3(abs(lifetime[p]) * 0.11),
                    "vahLifetime": _r3(abs(lifetime[p]) * 1.07),
                    "rmsCurrent": _r3(ac["current"]),
                    "rmsVoltage": _r3(voltage),
                    "reactPwr": _r3(ac["reactive"]),
                    "apprntPwr": _r3(ac["apparent"]),
                    "pwrFactor": ac["pf"],
                    "whToday": _r3(day),
                    "whLastSevenDays": _r3(week),
                    "vahToday": _r3(day * 1.07),
                    "varhLeadToday": _r3(day * 0.04),
                    "varhLagToday": _r3(day * 0.11),
                }
            )
        total_w = sum(watts)
        apparent = sum(line["apprntPwr"] for line in lines)
        entry: dict[str, Any] = {
            "type": "eim",
            "activeCount": 1,
            "measurementType": measurement,
            "readingTime": int(now),
        }
        for key in lines[0]:
            entry[key] = _r3(sum(line[key] for line in lines))
        # multi-phase meters add up their phase voltages (a known firmware quirk)
        entry["pwrFactor"] = 0.0 if apparent == 0 else round(total_w / apparent, 2)
        if details:
            entry["lines"] = lines
        return entry

    def _production_json(self, now: float, details: bool) -> dict[str, Any]:
        profile = self.profile
        model = self.model
        watts, latest = self._inverter_total(now)
        inverters = {
            "type": "inverters",
            "activeCount": len(model.inverters),
            "readingTime": latest,
            "wNow": watts,
            "whLifetime": round(sum(model.prod_lifetime)),
        }
        if not profile.token_firmware:
            # legacy unmetered: only the inverters section (plus the idle ACB stub old firmware sends)
            return {
                "production": [inverters],
                "storage": [
                    {
                        "type": "acb",
                        "activeCount": 0,
                        "readingTime": 0,
                        "wNow": 0,
                        "whNow": 0,
                        "state": "idle",
                    }
                ],
            }
        n = profile.phases
        week_share = [c / model.capacity for c in model.phase_capacity]
        prod_week = [sum(model.prod_history) * s for s in week_share]
        load_week = [sum(model.load_history) * s for s in profile.load_split]
        production = [
            inverters,
            self._eim("production", now, model.pv, model.prod_lifetime, model.prod_today, prod_week, details),
        ]
        net_lifetime = [model.import_lifetime[p] - model.export_lifetime[p] for p in range(n)]
        consumption = [
            self._eim(
                "total-consumption",
                now,
                model.load,
                model.load_lifetime,
                model.load_today,
                load_week,
                details,
            ),
            self._eim("net-consumption", now, model.grid, net_lifetime, None, None, details),
        ]
        storage: dict[str, Any] = {
            "type": "acb",
            "activeCount": 0,
            "readingTime": 0,
            "wNow": 0,
            "whNow": 0,
            "state": "idle",
        }
        if profile.acb_batteries:
            battery = sum(model.battery)
            storage = {
                "type": "acb",
                "activeCount": profile.acb_batteries,
                "readingTime": int(now),
                "wNow": round(battery),
                "whNow": round(model.battery_energy),
                "state": _battery_state(battery),
                "percentFull": model.soc,
            }
        return {"production": production, "consumption": consumption, "storage": [storage]}

    def _api_v1_production(self) -> dict[str, Any]:
        model = self.model
        today = sum(model.prod_today)
        history = list(model.prod_history)
        pv = sum(model.pv)
        if not self.profile.metered:
            pv = sum(model.reported_watts(inv, model.t) for inv in model.inverters)
        return {
            "wattHoursToday": round(today),
            "wattHoursSevenDays": round(today + sum(history[-6:])),
            "wattHoursLifetime": round(sum(model.prod_lifetime)),
            "wattsNow": round(pv),
        }

    def _api_v1_inverters(self, now: float) -> list[dict[str, Any]]:
        model = self.model
        rows = [
            {
                "serialNumber": inv.serial,
                "lastReportDate": model.last_report(inv, now),
                "devType": 1,
                "lastReportWatts": model.reported_watts(inv, now),
                "maxReportWatts": round(inv.rating),
            }
            for inv in model.inverters
        ]
        rows.extend(
            {
                "serialNumber": serial,
                "lastReportDate": int(now) - int(now) % _REPORT_PERIOD,
                "devType": 11,
                "lastReportWatts": round(sum(model.battery) / max(self.profile.acb_batteries, 1)),
                "maxReportWatts": round(ACB_W),
            }
            for serial in self._acb_serials()
        )
        return rows

    def _acb_serials(self) -> list[str]:
        return [f"1219{self.profile.serial_code}{index:05d}" for index in range(self.profile.acb_batteries)]

    def _iq_serials(self) -> list[str]:
        return [f"4823{self.profile.serial_code}{index:05d}" for index in range(self.profile.iq_batteries)]

    # --- inventory and per-inverter detail -------------------------------------------------------

    def _inventory(self, now: float) -> list[dict[str, Any]]:
        model = self.model
        installed = str(int(model.t) - 3 * 365 * 86400)
        pcus = []
        for index, inv in enumerate(model.inverters):
            producing = model.reported_watts(inv, now) > 0
            pcus.append(
                {
                    "part_num": self.profile.inverter_part,
                    "installed": installed,
                    "serial_num": inv.serial,
                    "device_status": ["envoy.global.ok"],
                    "last_rpt_date": str(model.last_report(inv, now)),
                    "admin_state": 2,
                    "dev_type": 1,
                    "created_date": installed,
                    "img_load_date": installed,
                    "img_pnum_running": "520-00082-r01-v04.30.32",
                    "ptpn": "540-00134-r01-v04.30.10",
                    "chaneid": 1627390225 + index * 16,
                    "device_control": [{"gficlearset": False}],
                    "producing": producing,
                    "communicating": inv.serial not in model.silent_since,
                    "provisioned": True,
                    "operating": True,
                    "phase": _PHASE_NAMES[inv.phase],
                }
            )
        groups: list[dict[str, Any]] = [{"type": "PCU", "devices": pcus}]
        if self.profile.acb_batteries:
            battery = sum(model.battery)
            groups.append(
                {
                    "type": "ACB",
                    "devices": [
                        {
                            "part_num": "800-00930-r03",
                            "installed": installed,
                            "serial_num": serial,
                            "device_status": ["envoy.global.ok"],
                            "last_rpt_date": str(int(now) - int(now) % _REPORT_PERIOD),
                            "admin_state": 2,
                            "dev_type": 11,
                            "created_date": installed,
                            "img_load_date": installed,
                            "img_pnum_running": "520-00092-r01-v02.13.02",
                            "ptpn": "540-00155-r01-v02.13.01",
                            "chaneid": 1795162385 + index * 16,
                            "device_control": [{"gficlearset": False}],
                            "producing": True,
                            "communicating": True,
                            "provisioned": True,
                            "operating": True,
                            "sleep_enabled": False,
                            "percentFull": model.soc,
                            "maxCellTemp": 24,
                            "sleep_min_soc": 25,
                            "sleep_max_soc": 30,
                            "charge_status": _battery_state(battery).replace("full", "idle"),
                        }
                        for index, serial in enumerate(self._acb_serials())
                    ],
                }
            )
        groups += [{"type": "NSRB", "devices": []}, {"type": "ESUB", "devices": []}]
        return groups

    def _device_data(self, now: float) -> dict[str, Any]:
        model = self.model
        out: dict[str, Any] = {}
        yesterday = model.prod_history[-1] if model.prod_history else 0.0
        week = sum(model.prod_today) + sum(list(model.prod_history)[-6:])
        for inv in model.inverters[:DEVICE_DATA_LIMIT]:
            share = model.share(inv)
            report = model.last_report(inv, now)
            watts = model.reported_watts(inv, now)
            voltage = _phase_voltage(self.profile, report, inv.phase)
            dc_volts = 31.5 + 2.0 * math.sin(report / 900.0 + inv.phase) if watts > 0 else 0.0
            lifetime_wh = sum(model.prod_lifetime) * share
            out[str(inv.device_id)] = {
                "devName": "pcu",
                "sn": inv.serial,
                "active": True,
                "modGone": False,
                "channels": [
                    {
                        "chanEid": inv.device_id + 1,
                        "created": report,
                        "wattHours": {
                            "today": round(sum(model.prod_today) * share),
                            "yesterday": round(yesterday * share),
                            "week": round(week * share),
                        },
                        "watts": {"now": watts, "nowUsed": 0, "max": round(inv.rating)},
                        "lastReading": {
                            "eid": inv.device_id + 1,
                            "interval_type": 0,
                            "endDate": report,
                            "duration": _REPORT_PERIOD,
                            "flags": 0,
                            "flags_hex": "0x0000000000000000",
                            "joulesProduced": watts * _REPORT_PERIOD,
                            "acVoltageINmV": round(voltage * 1000),
                            "acFrequencyINmHz": round(_frequency(self.profile, report) * 1000),
                            "dcVoltageINmV": round(dc_volts * 1000),
                            "dcCurrentINmA": round(watts / 0.965 / dc_volts * 1000) if dc_volts else 0,
                            "channelTemp": round(18 + 22 * watts / inv.rating),
                            "pwrConvErrSecs": 0,
                            "pwrConvMaxErrCycles": 0,
                            "joulesUsed": 0,
                            "leadingVArs": 0,
                            "laggingVArs": round(0.05 * watts),
                            "acCurrentInmA": round(watts / voltage * 1000),
                            "l1NAcVoltageInmV": 0,
                            "l2NAcVoltageInmV": 0,
                            "l3NAcVoltageInmV": 0,
                            "rssi": 110,
                            "issi": 0,
                        },
                        "lifetime": {
                            "createdTime": int(model.t) - 3 * 365 * 86400,
                            "duration": 3 * 365 * 86400,
                            "joulesProduced": round(lifetime_wh * 3600),
                        },
                    }
                ],
            }
        out["deviceCount"] = len(model.inverters)
        out["deviceDataLimit"] = DEVICE_DATA_LIMIT
        return out

    # --- meters ------------------------------------------------------------------------------------

    def _enabled_meters(self) -> list[str]:
        profile = self.profile
        kinds = []
        if profile.production_ct:
            kinds.append("production")
        if profile.net_ct:
            kinds.append("net-consumption")
        if profile.storage_ct:
            kinds.append("storage")
        return kinds

    def _meters(self) -> list[dict[str, Any]]:
        return [
            {
                "eid": METER_EIDS[kind],
                "state": "enabled",
                "measurementType": kind,
                "phaseMode": self.profile.phase_mode,
                "phaseCount": self.profile.phases,
                "meteringStatus": "normal",
                "statusFlags": [],
            }
            for kind in self._enabled_meters()
        ]

    def _readings(self, now: float) -> list[dict[str, Any]]:
        model = self.model
        n = self.profile.phases
        out = []
        for kind in self._enabled_meters():
            if kind == "production":
                power, delivered, received = model.pv, model.prod_lifetime, [11.6 * (p + 1) for p in range(n)]
            elif kind == "net-consumption":
                power, delivered, received = model.grid, model.import_lifetime, model.export_lifetime
            else:
                power, delivered, received = model.battery, model.battery_discharged, model.battery_charged
            eid = METER_EIDS[kind]
            channels = [
                self._channel(eid + 1073741824 + p, now, p, power[p], delivered[p], received[p])
                for p in range(n)
            ]
            aggregate = dict(channels[0])
            aggregate["eid"] = eid
            for key in (
                "actEnergyDlvd",
                "actEnergyRcvd",
                "apparentEnergy",
                "reactEnergyLagg",
                "reactEnergyLead",
                "instantaneousDemand",
                "activePower",
                "apparentPower",
                "reactivePower",
                "current",
                "voltage",  # multi-phase meters add up their phase voltages (a known firmware quirk)
            ):
                aggregate[key] = _r3(sum(c[key] for c in channels))
            apparent = aggregate["apparentPower"]
            aggregate["pwrFactor"] = 0.0 if apparent == 0 else round(aggregate["activePower"] / apparent, 3)
            aggregate["channels"] = channels
            out.append(aggregate)
        return out

    def _channel(
        self, eid: int, now: float, phase: int, power: float, delivered: float, received: float
    ) -> dict[str, Any]:
        voltage = _phase_voltage(self.profile, now, phase)
        ac = _ac_values(power, voltage)
        return {
            "eid": eid,
            "timestamp": int(now),
            "actEnergyDlvd": _r3(delivered),
            "actEnergyRcvd": _r3(received),
            "apparentEnergy": _r3((delivered + received) * 1.07),
            "reactEnergyLagg": _r3((delivered + received) * 0.11),
            "reactEnergyLead": _r3((delivered + received) * 0.04),
            "instantaneousDemand": _r3(power),
            "activePower": _r3(power),
            "apparentPower": _r3(ac["apparent"]),
            "reactivePower": _r3(ac["reactive"]),
            "pwrFactor": ac["pf"],
            "voltage": _r3(voltage),
            "current": _r3(ac["current"]),
            "freq": _r3(_frequency(self.profile, now)),
        }

    # --- batteries ---------------------------------------------------------------------------------

    def _ensemble_inventory(self, now: float) -> list[dict[str, Any]]:
        groups = self._encharge_group(now)
        if self.enpower:
            groups.append(self._enpower_group(now))
        return groups

    def _enpower_group(self, now: float) -> dict[str, Any]:
        installed = int(self.model.t) - 2 * 365 * 86400
        relay = self.relay_state()
        grid_mode = "multimode-ongrid" if relay == "closed" else "multimode-offgrid"
        device = {
            "part_num": "860-00276-r28",
            "serial_num": f"4822{self.profile.serial_code}00001",
            "installed": installed,
            "device_status": ["envoy.global.ok"],
            "last_rpt_date": int(now) - 30,
            "admin_state": 24,
            "admin_state_str": "ENPWR_STATE_OPER_CLOSED" if relay == "closed" else "ENPWR_STATE_OPER_OPEN",
            "created_date": installed,
            "img_load_date": installed,
            "img_pnum_running": "1.2.2064_release/20.34",
            "communicating": True,
            "temperature": 26,
            "comm_level_sub_ghz": 5,
            "comm_level_2_4_ghz": 5,
            "mains_admin_state": relay,
            "mains_oper_state": relay,
            "Enpwr_grid_mode": grid_mode,
            "Enchg_grid_mode": grid_mode,
            "Enpwr_relay_state_bm": 112,
            "Enpwr_curr_state_id": 16,
        }
        return {"type": "ENPOWER", "devices": [device]}

    def _encharge_group(self, now: float) -> list[dict[str, Any]]:
        profile = self.profile
        if not profile.iq_batteries:
            return []
        model = self.model
        installed = int(model.t) - 2 * 365 * 86400
        battery = sum(model.battery)
        led = 12 if battery < -10 else 13 if battery > 10 else 14
        devices = [
            {
                "part_num": "830-01760-r37",
                "serial_num": serial,
                "installed": installed,
                "device_status": ["envoy.global.ok", "prop.done"],
                "last_rpt_date": int(now) - 30,
                "admin_state": 6,
                "admin_state_str": "ENCHG_STATE_READY",
                "created_date": installed,
                "img_load_date": installed,
                "img_pnum_running": "2.6.5973_rel/22.11",
                "bmu_fw_version": "2.1.34",
                "communicating": True,
                "sleep_enabled": False,
                "percentFull": model.soc,
                "temperature": 21 + index,
                "maxCellTemp": 22 + index,
                "reported_enc_grid_state": "grid-tied",
                "comm_level_sub_ghz": 4,
                "comm_level_2_4_ghz": 5,
                "led_status": led,
                "dc_switch_off": False,
                "encharge_rev": 2,
                "encharge_capacity": round(IQ_BATTERY_WH),
                "phase": _PHASE_NAMES[index % profile.phases],
                "der_index": index + 1,
            }
            for index, serial in enumerate(self._iq_serials())
        ]
        return [{"type": "ENCHARGE", "devices": devices}]

    def _ensemble_power(self) -> dict[str, Any]:
        model = self.model
        count = self.profile.iq_batteries
        per_battery = sum(model.battery) / count if count else 0.0
        return {
            "devices:": [
                {
                    "serial_num": serial,
                    "real_power_mw": round(per_battery * 1000),
                    "apparent_power_mva": round(abs(per_battery) * 1000),
                    "soc": model.soc,
                }
                for serial in self._iq_serials()
            ]
        }

    def _livedata(self, now: float) -> dict[str, Any]:
        """`/ivp/livedata/status` with the stream on (the simulator freezes it while the stream is off)."""
        model = self.model
        profile = self.profile

        def flows(watts: list[float]) -> dict[str, int]:
            out = {"agg_p_mw": round(sum(watts) * 1000), "agg_s_mva": round(abs(sum(watts)) * 1070)}
            for p, name in enumerate(("a", "b", "c")):
                value = watts[p] if p < len(watts) else 0.0
                out[f"agg_p_ph_{name}_mw"] = round(value * 1000)
                out[f"agg_s_ph_{name}_mva"] = round(abs(value) * 1070)
            return out

        batteries = bool(profile.iq_batteries or profile.acb_batteries)
        soc = model.soc if batteries else 0
        return {
            "connection": {
                "mqtt_state": "connected",
                "prov_state": "configured",
                "auth_state": "ok",
                "sc_stream": "enabled",
                "sc_debug": "disabled",
            },
            "meters": {
                "last_update": int(now),
                "soc": soc,
                "main_relay_state": 1,
                "gen_relay_state": 5,
                "backup_bat_mode": 1,
                "backup_soc": RESERVE_SOC if profile.iq_batteries else 0,
                "is_split_phase": 1 if profile.phase_mode == "split" else 0,
                "phase_count": profile.phases,
                "enc_agg_soc": model.soc if profile.iq_batteries else 0,
                "enc_agg_energy": round(model.battery_energy) if profile.iq_batteries else 0,
                "acb_agg_soc": model.soc if profile.acb_batteries else 0,
                "acb_agg_energy": round(model.battery_energy) if profile.acb_batteries else 0,
                "pv": flows(model.pv),
                "storage": flows(model.battery),
                "grid": flows(model.grid),
                "load": flows(model.load),
                "generator": flows([0.0] * profile.phases),
            },
            "tasks": {"task_id": 1, "timestamp": int(now)},
            "counters": {"main_CfgLoad": 1, "main_CfgChanged": 1, "main_taskUpdate": 1},
            "dry_contacts": {"": {"dry_contact_id": "", "dry_contact_type": "", "dry_contact_load_name": ""}},
        }

    def _secctrl(self) -> dict[str, Any]:
        model = self.model
        profile = self.profile
        iq_capacity = round(profile.iq_batteries * IQ_BATTERY_WH)
        acb_capacity = round(profile.acb_batteries * ACB_WH)
        iq_soc = model.soc if profile.iq_batteries else 0
        acb_soc = model.soc if profile.acb_batteries else 0
        return {
            "shutdown": False,
            "freq_bias_hz": 0.0,
            "voltage_bias_v": 0.0,
            "freq_bias_hz_q8": 0,
            "voltage_bias_v_q5": 0,
            "configured_backup_soc": RESERVE_SOC if profile.iq_batteries else 0,
            "adjusted_backup_soc": RESERVE_SOC if profile.iq_batteries else 0,
            "agg_soc": model.soc,
            "Max_energy": iq_capacity + acb_capacity,
            "ENC_agg_soc": iq_soc,
            "ENC_agg_soh": 100,
            "ENC_agg_backup_energy": round(iq_capacity * RESERVE_SOC / 100) if profile.iq_batteries else 0,
            "ENC_agg_avail_energy": round(model.battery_energy) if profile.iq_batteries else 0,
            "Enc_commissioned_capacity": iq_capacity,
            "Enc_max_available_capacity": iq_capacity,
            "ACB_agg_soc": acb_soc,
            "ACB_agg_energy": round(model.battery_energy) if profile.acb_batteries else 0,
            "VLS_Limit": 10,
            "soc_rec_enabled": False,
            "soc_recovery_entry": 2,
            "soc_recovery_exit": 10,
            "Commission_in_progress": False,
            "ESS_in_progress": False,
        }


def _battery_state(watts: float) -> str:
    if watts > 1:
        return "discharging"
    if watts < -1:
        return "charging"
    return "idle"
