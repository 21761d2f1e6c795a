"""The retained `<base>/<envoy>/control` payload: every offered control's value as read from the Envoy,
the commands waiting or in progress, and the last result."""

from __future__ import annotations

from collections.abc import Iterable

from envoy2mqtt.clock import iso_utc
from envoy2mqtt.model import Payload

from .catalog import Value
from .writer import Outcome


class ControlState:
    def __init__(self, controls: Iterable[str]) -> None:
        self.values: dict[str, Value | None] = dict.fromkeys(controls)
        self.pending: dict[str, Value] = {}
        self.last_result: Payload | None = None

    def record(self, outcome: Outcome, at: float) -> None:
        if outcome.value is not None and outcome.control in self.values:
            self.values[outcome.control] = outcome.value
        self.last_result = {
            "control": outcome.control,
            "requested": outcome.requested,
            "result": outcome.result,
            "reason": outcome.reason,
            "time": iso_utc(at),
        }

    def payload(self) -> Payload:
        return {
            **self.values,
            "pending": dict(self.pending),
            "last_result": self.last_result,
        }
