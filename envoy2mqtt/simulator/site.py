"""Generated sites (no capture): work in progress."""

from __future__ import annotations

from envoy2mqtt.errors import ConfigError
from envoy2mqtt.simulator.responses import EnvoyResponse
from envoy2mqtt.simulator.simtime import SimulatedTime


class GeneratedSite:
    def __init__(
        self, profile: str, time: SimulatedTime, inverters: int | None = None, serial: str | None = None
    ) -> None:
        raise ConfigError("generated simulator sites are not available yet; pass a capture folder")

    @property
    def serial(self) -> str:
        raise NotImplementedError

    @property
    def firmware(self) -> str:
        raise NotImplementedError

    def respond(self, path: str, query: str) -> EnvoyResponse:
        raise NotImplementedError
