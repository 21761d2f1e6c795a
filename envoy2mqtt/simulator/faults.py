"""Fault injection for the simulated Envoy: what a real gateway does on a bad day."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# "overload" (the load model of simulator/load.py) is switched by the server, next to these.
FAULT_KINDS = ("unauthorized", "server_error", "slow", "malformed", "drop", "offline", "overload", "clear")


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What to do with one request; several may apply at once (slow then 401, for example)."""

    delay: float = 0.0
    drop: bool = False
    unauthorized: bool = False
    server_error: int | None = None  # the 5xx status to answer
    malformed: bool = False


class FaultController:
    """Counts down "next N requests" faults; `offline` takes the Envoy listener down until `clear()`.

    A count of None means "until cleared".
    """

    def __init__(self) -> None:
        self._unauthorized = 0
        self._server_error = 0
        self._server_error_status = 503
        self._malformed = 0
        self._drop = 0
        self._slow_seconds = 0.0
        self._slow_left: int | None = 0
        self.is_offline = False
        self._go_offline: Callable[[], None] | None = None
        self._go_online: Callable[[], None] | None = None

    def bind(self, go_offline: Callable[[], None], go_online: Callable[[], None]) -> None:
        """The simulator hands in how to stop and restart its Envoy listener."""
        self._go_offline = go_offline
        self._go_online = go_online

    def unauthorized(self, count: int = 1) -> None:
        """Answer 401 to the next `count` requests, whatever their credentials."""
        self._unauthorized = count

    def server_error(self, count: int = 1, status: int = 503) -> None:
        if not 500 <= status <= 599:
            raise ValueError("server_error status must be 5xx")
        self._server_error = count
        self._server_error_status = status

    def slow(self, seconds: float, count: int | None = None) -> None:
        """Delay the next `count` requests (every request while None) by `seconds` of real time."""
        self._slow_seconds = seconds
        self._slow_left = count

    def malformed(self, count: int = 1) -> None:
        """Answer 200 with truncated JSON for the next `count` requests."""
        self._malformed = count

    def drop(self, count: int = 1) -> None:
        """Close the connection without an answer for the next `count` requests."""
        self._drop = count

    def offline(self) -> None:
        """The listener refuses connections until `clear()` (or `Simulator.start_envoy()`)."""
        self.is_offline = True
        if self._go_offline is not None:
            self._go_offline()

    def clear(self) -> None:
        self._unauthorized = self._server_error = self._malformed = self._drop = 0
        self._slow_seconds = 0.0
        self._slow_left = 0
        if self.is_offline:
            self.is_offline = False
            if self._go_online is not None:
                self._go_online()

    def apply(self, kind: str, count: int | None = None, **options: Any) -> None:
        """The same switches by name (what `POST /__sim/faults` calls)."""
        if kind == "unauthorized":
            self.unauthorized(1 if count is None else count)
        elif kind == "server_error":
            self.server_error(1 if count is None else count, int(options.get("status", 503)))
        elif kind == "slow":
            self.slow(float(options.get("seconds", 5.0)), count)
        elif kind == "malformed":
            self.malformed(1 if count is None else count)
        elif kind == "drop":
            self.drop(1 if count is None else count)
        elif kind == "offline":
            self.offline()
        elif kind == "clear":
            self.clear()
        else:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")

    def next_request(self) -> FaultDecision:
        """Consume one request's worth of the pending faults."""
        delay = 0.0
        if self._slow_seconds > 0 and (self._slow_left is None or self._slow_left > 0):
            delay = self._slow_seconds
            if self._slow_left is not None:
                self._slow_left -= 1
        if self._drop > 0:
            self._drop -= 1
            return FaultDecision(delay=delay, drop=True)
        if self._unauthorized > 0:
            self._unauthorized -= 1
            return FaultDecision(delay=delay, unauthorized=True)
        if self._server_error > 0:
            self._server_error -= 1
            return FaultDecision(delay=delay, server_error=self._server_error_status)
        if self._malformed > 0:
            self._malformed -= 1
            return FaultDecision(delay=delay, malformed=True)
        return FaultDecision(delay=delay)

    def snapshot(self) -> dict[str, Any]:
        return {
            "unauthorized": self._unauthorized,
            "server_error": self._server_error,
            "server_error_status": self._server_error_status,
            "malformed": self._malformed,
            "drop": self._drop,
            "slow_seconds": self._slow_seconds,
            "slow_left": self._slow_left,
            "offline": self.is_offline,
        }
