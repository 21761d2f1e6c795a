"""`envoy2mqtt simulate` / `python -m envoy2mqtt.simulator`: run a simulated Envoy until SIGINT/SIGTERM.

Building the arguments imports nothing heavy: `envoy2mqtt run` builds the same parser, and the daemon
must not load the simulator's server (nor cryptography, an optional extra) to do so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from envoy2mqtt.errors import ConfigError
from envoy2mqtt.simulator.livestream import DEFAULT_EXPIRY
from envoy2mqtt.simulator.load import LoadSettings
from envoy2mqtt.simulator.site import PROFILES as SITE_PROFILES

if TYPE_CHECKING:
    from envoy2mqtt.simulator.server import Simulator, SimulatorConfig

PROFILES: tuple[str, ...] = tuple(SITE_PROFILES)
EXTRA_HINT = "pip install 'envoy2mqtt[simulator]'"


def require_simulator_extra(command: str) -> None:
    """The simulator signs certificates and tokens with cryptography, an optional extra of the package."""
    try:
        import cryptography  # noqa: F401
    except ModuleNotFoundError:
        raise ConfigError(
            f"`envoy2mqtt {command}` needs the simulator extra, which is not installed: {EXTRA_HINT} "
            "(the daemon itself does not need it)"
        ) from None


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "capture_dir",
        metavar="CAPTURE_DIR",
        nargs="?",
        type=Path,
        default=None,
        help="serve this capture folder (shared layout); without it a generated site is served",
    )
    parser.add_argument(
        "--profile", choices=PROFILES, default="metered-3phase-iq", help="generated site profile"
    )
    parser.add_argument("--live", action="store_true", help="values move over (simulated) time")
    parser.add_argument("--scale", type=int, default=None, metavar="N", help="number of microinverters")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="Envoy port (default: a free port)")
    parser.add_argument(
        "--cloud-port", type=int, default=0, help="fake Enphase cloud port (default: a free port)"
    )
    parser.add_argument(
        "--token-lifetime", type=float, default=365 * 86400, help="lifetime in seconds of cloud-issued tokens"
    )
    parser.add_argument("--token-type", choices=("owner", "installer"), default="owner")
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="live mode: simulated seconds per real second"
    )
    parser.add_argument(
        "--enpower",
        action="store_true",
        help="generated site: add an IQ System Controller (relay, dry contacts)",
    )
    parser.add_argument(
        "--relay-seconds", type=float, default=0.0, help="seconds the grid relay takes to follow a write"
    )
    parser.add_argument(
        "--shade",
        action="append",
        default=[],
        type=_shade,
        metavar="SERIAL=OUTPUT",
        help="a shaded or failing microinverter: it makes OUTPUT (0-1) of its share (repeatable)",
    )
    parser.add_argument(
        "--stream-expiry",
        type=float,
        default=DEFAULT_EXPIRY,
        help="seconds until the /ivp/livedata stream switches itself off (a real Envoy: about 900)",
    )
    parser.add_argument(
        "--load-limit",
        type=float,
        default=None,
        metavar="REQ_PER_S",
        help="load model: above this request rate answers slow down, then turn 503 for a while",
    )


def _shade(text: str) -> tuple[str, float]:
    serial, sep, output = text.partition("=")
    try:
        if not sep or not serial:
            raise ValueError
        return serial.strip(), float(output)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not SERIAL=OUTPUT, e.g. 122310000003=0.4") from None


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    from envoy2mqtt.simulator.server import SimulatorConfig

    return SimulatorConfig(
        capture_dir=args.capture_dir,
        profile=args.profile,
        live=args.live,
        scale=args.scale,
        host=args.host,
        port=args.port,
        cloud_port=args.cloud_port,
        token_lifetime=args.token_lifetime,
        token_type=args.token_type,
        time_scale=args.time_scale,
        enpower=args.enpower,
        relay_seconds=args.relay_seconds,
        shade=tuple(args.shade),
        stream_expiry=args.stream_expiry,
        load=LoadSettings(limit=args.load_limit) if args.load_limit else None,
    )


def describe(sim: Simulator) -> list[str]:
    """What a person needs to point a client at the simulator (its credentials are fake by design)."""
    lines = [*_listening(sim), f"Envoy URL:        {sim.url}"]
    lines += [
        f"Envoy serial:     {sim.serial}",
        f"Envoy firmware:   {sim.firmware}",
    ]
    if sim.token_auth:
        lines += [
            f"Envoy cert SHA-256: {sim.envoy_cert_fingerprint}",
            f"Owner token:      {sim.issue_token('owner')}",
        ]
    else:
        lines += [
            f"Digest user envoy:     password {sim.legacy_envoy_password}",
            f"Digest user installer: password {sim.installer_password}",
        ]
    lines += [
        f"Cloud URL:        {sim.cloud_url}",
        f"Cloud login URL:  {sim.login_url}",
        f"Cloud token URL:  {sim.token_url}",
        f"Cloud CA file:    {sim.ca_file}",
        f"Enlighten user:   {sim.enlighten_username}",
        f"Enlighten pass:   {sim.enlighten_password}",
        f"Fault control:    POST {sim.url}/__sim/faults, POST {sim.url}/__sim/site, "
        f"GET {sim.url}/__sim/stats",
    ]
    return lines


def _listening(sim: Simulator) -> list[str]:
    """The addresses really bound: a container's 0.0.0.0 is not the loopback the URLs below name."""
    (envoy_host, envoy_port), (cloud_host, cloud_port) = sim.listening
    line = f"Listening on:     {_address(envoy_host, envoy_port)} (Envoy), {_address(cloud_host, cloud_port)} (cloud)"
    if envoy_host in ("0.0.0.0", "::"):  # noqa: S104 - describing the bind, not binding
        return [
            line,
            "                  every interface: from another machine or container use this host's name "
            "or address; the URLs below are the loopback ones",
        ]
    return [line]


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def run_simulator_forever(config: SimulatorConfig, print_fn: Callable[[str], object] = print) -> None:
    """Start the simulator, print how to reach it, and serve until cancelled or SIGINT/SIGTERM.

    A signal ends the wait, so `async with` stops the servers and removes the temporary directory (its
    private keys included) before the process exits 0: `docker stop` and systemd send SIGTERM.
    """
    from envoy2mqtt.simulator.server import Simulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        async with Simulator(config) as sim:
            for line in describe(sim):
                print_fn(line)
            await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m envoy2mqtt.simulator", description=__doc__)
    add_simulate_arguments(parser)
    args = parser.parse_args(argv)
    try:
        require_simulator_extra("simulate")
    except ConfigError as exc:
        print(f"envoy2mqtt: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_simulator_forever(config_from_args(args), lambda line: print(line, flush=True)))
    return 0
