"""The revert watcher: after a write showed, keep reading the setting for a while and notice when it
changes back without a command (the Enlighten cloud pushes its own tariff back within 1-2 minutes).

A pure state machine on monotonic times the caller passes in; the service does the reading.
"""

from __future__ import annotations

from dataclasses import dataclass

from .catalog import Value


@dataclass
class _Watch:
    value: Value
    until: float
    next_check: float


class RevertWatcher:
    def __init__(self, duration: float, interval: float) -> None:
        self._duration = duration
        self._interval = interval
        self._watches: dict[str, _Watch] = {}

    def watch(self, control: str, value: Value, now: float) -> None:
        """`control` now reads `value` after a command: watch it for `duration` seconds."""
        if self._duration <= 0:
            return
        self._watches[control] = _Watch(value, now + self._duration, now + self._interval)

    def forget(self, control: str) -> None:
        """A new command for the control: its earlier value is no longer what we expect."""
        self._watches.pop(control, None)

    @property
    def watching(self) -> dict[str, Value]:
        return {control: w.value for control, w in self._watches.items()}

    def seconds_to_next(self, now: float) -> float | None:
        if not self._watches:
            return None
        return max(0.0, min(w.next_check for w in self._watches.values()) - now)

    def due(self, now: float) -> list[str]:
        return [control for control, w in self._watches.items() if w.next_check <= now]

    def observe(self, control: str, value: Value | None, now: float) -> Value | None:
        """A reading of a watched control. Returns the watched value when it was reverted (the watch
        ends), else None; `value` None (unreadable) proves nothing and the watch goes on."""
        watch = self._watches.get(control)
        if watch is None:
            return None
        if value is not None and value != watch.value:
            del self._watches[control]
            return watch.value
        if now >= watch.until:
            del self._watches[control]
        else:
            watch.next_check = now + self._interval
        return None
