"""The Envoy's nightly maintenance window, in its local time: real-time reads pause inside it.

Users of other tools saw Envoys lock up under polling around 23:00 local time and `/ivp/pdm/device_data`
hang between 23:01 and 23:02 (docs/envoy-writes-and-realtime.md §4); the default 22:55-23:10 covers both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

_DAY_MINUTES = 24 * 60


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    start: int  # minutes after local midnight
    end: int  # exclusive; smaller than start: the window spans midnight

    def contains(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def seconds_left(self, local: datetime) -> float:
        """Seconds until the window ends (0 when outside it)."""
        if not self.contains(local):
            return 0.0
        minute = local.hour * 60 + local.minute
        minutes = (self.end - minute) % _DAY_MINUTES
        end = local.replace(second=0, microsecond=0) + timedelta(minutes=minutes)
        return max(0.0, (end - local).total_seconds())

    def describe(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"
