"""The built-in Envoy: serves capture folders or generated sites, fakes auth and the Enphase cloud.

The names below are loaded on first use: `envoy2mqtt run` imports `envoy2mqtt.simulator.cli` to build its
argument parser, and must not load the server and cryptography (the `simulator` extra) for that.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envoy2mqtt.simulator.cli import add_simulate_arguments, config_from_args, run_simulator_forever
    from envoy2mqtt.simulator.cloud import CloudControl
    from envoy2mqtt.simulator.faults import FaultController
    from envoy2mqtt.simulator.server import PROFILES, Simulator, SimulatorConfig

_WHERE = {
    "PROFILES": "envoy2mqtt.simulator.server",
    "Simulator": "envoy2mqtt.simulator.server",
    "SimulatorConfig": "envoy2mqtt.simulator.server",
    "CloudControl": "envoy2mqtt.simulator.cloud",
    "FaultController": "envoy2mqtt.simulator.faults",
    "add_simulate_arguments": "envoy2mqtt.simulator.cli",
    "config_from_args": "envoy2mqtt.simulator.cli",
    "run_simulator_forever": "envoy2mqtt.simulator.cli",
}

__all__ = [
    "PROFILES",
    "CloudControl",
    "FaultController",
    "Simulator",
    "SimulatorConfig",
    "add_simulate_arguments",
    "config_from_args",
    "run_simulator_forever",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
