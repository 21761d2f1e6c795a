"""Run one or more simulators in this process (the benches keep them off the measured process).

argv[1]: a JSON list of specs {"profile", "capture", "scale", "live", "time_scale", "serial",
"stream_expiry"}.
Prints one JSON line (a list of {url, login_url, token_url, ca_file, token_auth, token, serial,
firmware}) once every simulator listens, then serves until SIGTERM.
`--stamps FILE`: append "<time.time()> <path?query>" for every Envoy response as it is handed to
aiohttp to send (the latency bench's start point).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

from envoy2mqtt.logging import setup_logging
from envoy2mqtt.simulator import Simulator, SimulatorConfig
from envoy2mqtt.simulator.livestream import DEFAULT_EXPIRY


class StampingSimulator(Simulator):
    """A simulator that notes the moment each Envoy response leaves its handler."""

    stamps: IO[str] | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        response = await super()._handle(request)
        if self.stamps is not None and not request.path.startswith("/__sim/"):
            self.stamps.write(f"{time.time():.6f} {request.path_qs}\n")
        return response


def _config(spec: dict[str, Any]) -> SimulatorConfig:
    return SimulatorConfig(
        capture_dir=Path(spec["capture"]) if spec.get("capture") else None,
        profile=spec.get("profile", "metered-3phase-iq"),
        scale=spec.get("scale"),
        live=bool(spec.get("live", False)),
        time_scale=float(spec.get("time_scale", 1.0)),
        serial=spec.get("serial"),
        stream_expiry=float(spec.get("stream_expiry", DEFAULT_EXPIRY)),
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("specs")
    parser.add_argument("--stamps", default=None)
    args = parser.parse_args()
    setup_logging("warning", "json", stream=sys.stderr)
    stamps = open(args.stamps, "a", buffering=1) if args.stamps else None  # noqa: SIM115
    sims: list[Simulator] = []
    for spec in json.loads(args.specs):
        sim = StampingSimulator(_config(spec))
        sim.stamps = stamps
        await sim.start()
        sims.append(sim)
    described = [
        {
            "url": s.url,
            "login_url": s.login_url,
            "token_url": s.token_url,
            "ca_file": str(s.ca_file),
            "token_auth": s.token_auth,
            "token": s.issue_token() if s.token_auth else "",
            "serial": s.serial,
            "firmware": s.firmware,
        }
        for s in sims
    ]
    print(json.dumps(described), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for sim in sims:
        with contextlib.suppress(Exception):
            await sim.stop()


if __name__ == "__main__":
    asyncio.run(main())
