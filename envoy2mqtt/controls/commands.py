"""The per-Envoy command queue: one write at a time, a minimum gap between writes, latest command wins.

Commands for a control that is still waiting replace the waiting one (the replaced one is handed back
so that it gets its own audit line); a control being written right now gets its next command queued
behind. Waiting commands leave in arrival order.
"""

from __future__ import annotations

import asyncio

from envoy2mqtt.clock import Clock

from .catalog import Command


class CommandQueue:
    def __init__(self, clock: Clock, min_gap: float) -> None:
        self._clock = clock
        self._min_gap = min_gap
        self._waiting: dict[str, Command] = {}
        self._wakeup = asyncio.Event()
        self._last_write: float | None = None

    def submit(self, command: Command) -> Command | None:
        """Queue `command`; returns the waiting command for the same control that it replaces."""
        replaced = self._waiting.pop(command.control, None)
        self._waiting[command.control] = command
        self._wakeup.set()
        return replaced

    @property
    def waiting(self) -> dict[str, Command]:
        return dict(self._waiting)

    async def next(self) -> Command:
        """The oldest waiting command, once the minimum gap since the last write has passed."""
        while True:
            while not self._waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self._last_write is not None:
                remaining = self._last_write + self._min_gap - self._clock.monotonic()
                if remaining > 0:
                    await self._clock.sleep(remaining)
                    continue  # the command may have been replaced meanwhile: take the latest
            control = next(iter(self._waiting))
            return self._waiting.pop(control)

    def wrote(self) -> None:
        """A write went out (or was attempted): the gap counts from now."""
        self._last_write = self._clock.monotonic()
