"""The daemon exactly as `python -m envoy2mqtt run --config X` runs it, with an optional faster clock.

`python bench/_daemon.py --config X --speed 144` runs a simulated day in 10 minutes: the cadences,
the token and firmware checks and the counters' wall time all follow the accelerated clock, while the
network, the broker and the Envoy requests are real. `--speed 1` is the plain daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import AcceleratedClock

from envoy2mqtt.cli import _load, _setup_logging
from envoy2mqtt.clock import SYSTEM_CLOCK, Clock
from envoy2mqtt.supervisor import run_daemon


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--speed", type=float, default=1.0)
    args = parser.parse_args()
    settings = _load(Path(args.config))
    _setup_logging(settings)
    clock: Clock = SYSTEM_CLOCK if args.speed == 1.0 else AcceleratedClock(args.speed)
    return asyncio.run(run_daemon(settings, clock))


if __name__ == "__main__":
    sys.exit(main())
