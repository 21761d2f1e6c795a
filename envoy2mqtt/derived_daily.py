"""Today's production where the Envoy gives no daily value at all: the lifetime counter since local midnight.

Metered Envoys without CTs whose `production.json` has only the `inverters` section and whose
`/api/v1/production` is broken (captures `7.3.466_metered_disabled_cts`, `8.2.4264_metered_noct`)
report production power and lifetime, never a daily value. `DerivedDaily` publishes
`production_energy_today` = the (guarded, never decreasing) lifetime counter − its value at local
midnight, from the first midnight the bridge sees on: the baseline is the first reading after midnight
(the panels produce nothing at night), kept in `daily-<serial>.json` next to the counter offsets so a
restart during the day goes on. A baseline is only trusted when the previous reading was less than an
hour before (a bridge that was down across midnight waits for the next one rather than publish a day
that misses its morning). The gateway object lists the keys derived this way (`derived_daily`).
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .model import Features, Payload
from .normalize.system import production_source
from .state import StateFile

TODAY = "production_energy_today"
LIFETIME = "production_energy_lifetime"
MAX_GAP = 3600.0  # seconds between two readings across midnight for the new baseline to count


def derives_daily(features: Features) -> bool:
    """The Envoy's production comes from production.json's inverters section: no daily value at all."""
    return production_source(features) == "inverters"


class DerivedDaily:
    """Adds today's production to the system payload of an Envoy that reports none (module doc)."""

    def __init__(self, state: StateFile, timezone: str | None = None) -> None:
        self._state = state
        self.timezone: tzinfo = UTC
        self.set_timezone(timezone)
        saved = state.load()
        section = saved.get("daily") if isinstance(saved, dict) else None
        section = section if isinstance(section, dict) else {}
        self._date = section.get("date") if isinstance(section.get("date"), str) else None
        baseline = section.get("baseline")
        self._baseline = float(baseline) if isinstance(baseline, int | float) else None
        seen = section.get("seen")
        self._seen = float(seen) if isinstance(seen, int | float) else None
        # once announced, the key stays (null while no baseline) so Home Assistant keeps the entity
        self._announced = self._baseline is not None

    def set_timezone(self, timezone: str | None) -> None:
        try:
            self.timezone = ZoneInfo(timezone) if timezone else UTC
        except (ZoneInfoNotFoundError, ValueError):
            self.timezone = UTC

    @property
    def active(self) -> bool:
        """The payload carries the derived key (null while waiting for the next midnight)."""
        return self._announced

    def apply(self, payload: Payload, now: float) -> Payload:
        lifetime = payload.get(LIFETIME)
        if not isinstance(lifetime, int | float) or isinstance(lifetime, bool):
            return self._with_today(payload)
        day = datetime.fromtimestamp(now, self.timezone).date().isoformat()
        if day != self._date:
            recent = self._seen is not None and 0 <= now - self._seen <= MAX_GAP
            # the first reading after midnight is the baseline (no production at night)
            self._baseline = float(lifetime) if recent and self._date is not None else None
            self._date = day
            self._save(now)
        elif self._seen is None or now - self._seen >= 300:
            self._save(now)
        self._seen = now
        return self._with_today(payload, float(lifetime))

    def _with_today(self, payload: Payload, lifetime: float | None = None) -> Payload:
        if self._baseline is None and not self._announced:
            return payload
        self._announced = True
        out = dict(payload)
        baseline = self._baseline
        out[TODAY] = None if lifetime is None or baseline is None else round(max(0.0, lifetime - baseline), 3)
        return out

    def _save(self, now: float) -> None:
        self._state.save({"daily": {"date": self._date, "baseline": self._baseline, "seen": now}})

    def flush(self) -> None:
        if self._seen is not None:
            self._save(self._seen)
