"""The built-in Envoy: serves capture folders or generated sites, fakes auth and the Enlighten cloud."""

from __future__ import annotations

from envoy2mqtt.simulator.cli import add_simulate_arguments, config_from_args, run_simulator_forever
from envoy2mqtt.simulator.cloud import CloudControl
from envoy2mqtt.simulator.faults import FaultController
from envoy2mqtt.simulator.server import PROFILES, Simulator, SimulatorConfig

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
