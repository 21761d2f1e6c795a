"""Command line: parse arguments, build objects, hand over. No logic of its own."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .config import Settings, config_file_warnings, load_settings
from .errors import (
    ConfigError,
    EnvoyAuthError,
    EnvoyError,
    EnvoyUnreachable,
    TokenError,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_AUTH = 3
EXIT_UNREACHABLE = 4
EXIT_MQTT = 5
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """exit codes:
  0  success (or a clean stop on SIGTERM/SIGINT; SIGHUP reloads the configuration)
  1  unexpected error
  2  configuration error (the message names the key and the fix)
  3  authentication error (password, token, Enlighten account, MFA)
  4  an Envoy is unreachable
  5  MQTT cannot be restored (the broker refuses our credentials or TLS)
"""

EXAMPLES = """examples:
  envoy2mqtt demo                                   # everything simulated, no hardware, no broker
  envoy2mqtt run --config /etc/envoy2mqtt/config.toml
  ENVOY2MQTT_ENVOY='[{"host":"192.168.1.50","token":"eyJ..."}]' envoy2mqtt run
  envoy2mqtt check --config config.toml             # connect, authenticate, probe, print one reading
  envoy2mqtt check --config config.toml --json      # the same as JSON (what would be published)
  envoy2mqtt check --config config.toml --plan      # what each cadence reads, requests per hour
  envoy2mqtt token --config config.toml             # stored token type and expiry
  envoy2mqtt token refresh --config config.toml     # fetch a new token from Enlighten now
  envoy2mqtt simulate --profile metered-3phase-iq --live
  envoy2mqtt capture --config config.toml --output my-envoy   # redacted dump for a bug report
"""


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=None,
        help="TOML configuration file (default: $ENVOY2MQTT_CONFIG; environment variables override it)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="envoy2mqtt",
        description="Read an Enphase Envoy / IQ Gateway locally and publish it to MQTT with "
        "Home Assistant discovery.",
        epilog=EXAMPLES + "\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"envoy2mqtt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the bridge (the daemon)",
        description="Run the bridge until SIGTERM/SIGINT; SIGHUP reloads the configuration.",
        epilog="example:\n  envoy2mqtt run --config /etc/envoy2mqtt/config.toml\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config(run)

    check = sub.add_parser(
        "check",
        help="connect, authenticate, probe and print one full reading",
        epilog="examples:\n  envoy2mqtt check --config config.toml\n  envoy2mqtt check --json\n\n"
        + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config(check)
    check.add_argument("--json", action="store_true", help="print one JSON document (contract keys)")
    check.add_argument(
        "--plan",
        action="store_true",
        help="print, per cadence, the endpoints the daemon reads on this Envoy and the requests per hour",
    )

    from .simulator.cli import add_simulate_arguments

    simulate = sub.add_parser(
        "simulate",
        help="run the built-in Envoy simulator",
        epilog="examples:\n  envoy2mqtt simulate --profile metered-3phase-iq --live\n"
        "  envoy2mqtt simulate ../shared/envoy-captures/8.2.4345_with_device_data --scale 300\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_simulate_arguments(simulate)

    demo = sub.add_parser(
        "demo",
        help="simulator + embedded broker + bridge, with a live summary (no hardware needed)",
        epilog="examples:\n  envoy2mqtt demo\n  envoy2mqtt demo --mqtt-url mqtt://localhost:1883\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--mqtt-url", default=None, help="use this broker instead of the embedded one")
    demo.add_argument(
        "--profile",
        default="metered-3phase-iq",
        help="simulated site: metered-3phase-iq, metered-1phase-acb or legacy-unmetered",
    )
    demo.add_argument("--interval", type=float, default=10.0, help="system poll interval in seconds")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")

    token = sub.add_parser(
        "token",
        help="show the stored token's type and expiry, or refresh it",
        epilog="examples:\n  envoy2mqtt token\n  envoy2mqtt token --show\n  envoy2mqtt token refresh\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config(token)
    token.add_argument("action", nargs="?", choices=["show", "refresh"], default="show")
    token.add_argument("--show", action="store_true", help="also print the token itself (it is a secret)")

    capture = sub.add_parser(
        "capture",
        help="dump every endpoint of an Envoy into a redacted capture folder (for bug reports)",
        epilog="example:\n  envoy2mqtt capture --config config.toml --output my-envoy\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config(capture)
    capture.add_argument("--output", "-o", type=Path, required=True, help="folder to write")
    capture.add_argument("--envoy", default=None, help="name, host or serial of the Envoy (default: first)")
    return parser


def _load(path: Path | None) -> Settings:
    settings = load_settings(path)
    for warning in config_file_warnings(path, settings):
        print(f"warning: {warning}", file=sys.stderr)
    return settings


def _setup_logging(settings: Settings | None, level: str | None = None) -> None:
    from .logging import register_secret, setup_logging

    if settings is None:
        setup_logging(level or "info", "auto", stream=sys.stderr)
        return
    setup_logging(level or settings.logging.level, settings.logging.format, stream=sys.stderr)
    register_secret(settings.mqtt.password.get_secret_value())
    for envoy in settings.envoy:
        for secret in (envoy.password, envoy.token, envoy.enlighten_password):
            register_secret(secret.get_secret_value())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_CONFIG
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"envoy2mqtt: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "simulate":
        from .simulator.cli import config_from_args, require_simulator_extra, run_simulator_forever

        require_simulator_extra("simulate")
        _setup_logging(None)
        with contextlib.suppress(KeyboardInterrupt):  # SIGINT/SIGTERM end it cleanly; this covers startup
            asyncio.run(run_simulator_forever(config_from_args(args), lambda line: print(line, flush=True)))
        return EXIT_OK
    if args.command == "demo":
        from .demo import require_demo_extra, run_demo

        require_demo_extra(embedded_broker=args.mqtt_url is None)

        return asyncio.run(
            run_demo(
                mqtt_url=args.mqtt_url,
                profile=args.profile,
                interval=args.interval,
                duration=args.duration,
            )
        )
    settings = _load(args.config)
    _setup_logging(settings)
    if args.command == "run":
        from .supervisor import run_daemon

        def reload() -> Settings:
            new_settings = _load(args.config)
            _setup_logging(new_settings)
            return new_settings

        return asyncio.run(run_daemon(settings, reload=reload))
    _private_state_dir(settings)
    if args.command == "check":
        return asyncio.run(_check(settings, as_json=args.json, plan=args.plan))
    if args.command == "token":
        return asyncio.run(_token(settings, args.action, show=args.show))
    if args.command == "capture":
        return asyncio.run(_capture(settings, args.output, args.envoy))
    raise AssertionError(args.command)


def _private_state_dir(settings: Settings) -> None:
    """check/token/capture may store a token: the state directory is 0700 as the daemon keeps it."""
    from .state import ensure_private_dir

    with contextlib.suppress(OSError):  # a legacy Envoy needs no state; the token store reports its own
        ensure_private_dir(settings.state_dir)


def _exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, EnvoyAuthError | TokenError):
        return EXIT_AUTH
    if isinstance(exc, EnvoyUnreachable):
        return EXIT_UNREACHABLE
    return EXIT_ERROR


async def _check(settings: Settings, *, as_json: bool, plan: bool = False) -> int:
    from .check import check_envoy, render_plan, render_text

    results: list[dict[str, Any]] = []
    worst = EXIT_OK
    for envoy in settings.envoy:
        try:
            results.append(await check_envoy(envoy, settings, verify_credentials=True))
        except (EnvoyError, TokenError) as exc:
            code = _exit_code_for(exc)
            worst = worst or code
            results.append({"envoy": envoy.label, "error": str(exc), "exit_code": code})
    if as_json:
        document: Any = results[0] if len(results) == 1 else results
        print(json.dumps(document, indent=2, sort_keys=False))
    else:
        for result in results:
            print(render_plan(result) if plan else render_text(result))
    return worst


async def _token(settings: Settings, action: str, *, show: bool) -> int:
    from .check import token_command

    try:
        return await token_command(settings, action, show=show)
    except (EnvoyError, TokenError) as exc:
        print(f"envoy2mqtt: {exc}", file=sys.stderr)
        return _exit_code_for(exc)


async def _capture(settings: Settings, output: Path, wanted: str | None) -> int:
    from .dump import run_capture

    try:
        return await run_capture(settings, output, wanted)
    except (EnvoyError, TokenError) as exc:
        print(f"envoy2mqtt: {exc}", file=sys.stderr)
        return _exit_code_for(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
