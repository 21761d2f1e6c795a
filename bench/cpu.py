"""CPU seconds of our poll + normalize + publish path vs a pyenphase poll loop, same simulated site.

The simulator (a generated "metered-3phase-iq" site, 300 microinverters, IQ batteries, 3-phase CTs,
live values) runs in its own process, so does mosquitto; each measured side runs in its own subprocess
and reports `time.process_time()` over its cycles only (start-up, token and probe excluded).

One simulated hour at default settings is compared:
  envoy2mqtt: 60 system cycles + 12 device cycles (every 5th), each published to mosquitto (QoS 1)
  pyenphase:  60 `update()` calls (Home Assistant's 60 s coordinator), no publishing at all
The cycles run back to back (accelerated); `--hours` repeats the hour. A second line compares the
same number of cycles where our cycle is system + device (the heaviest case) for reference.
Target: ≤ 0.5×.
    python bench/cpu.py [--quick] [--scale 300] [--hours 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PYTHON, Mosquitto, SimHost, load

SYSTEM_PER_HOUR = 60
DEVICE_EVERY = 5


async def _drain(publisher: Any) -> None:
    while publisher._outbox and publisher.connected.is_set():
        await asyncio.sleep(0.002)


async def side_ours(sim: dict[str, Any], broker: int, hours: float, mode: str) -> dict[str, float]:
    from envoy2mqtt.config import EnvoySettings, MqttSettings, Settings
    from envoy2mqtt.logging import setup_logging
    from envoy2mqtt.mqtt.publisher import Publisher
    from envoy2mqtt.mqtt.topics import Topics
    from envoy2mqtt.poller import EnvoyPoller

    setup_logging("warning", "json", stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        envoy = EnvoySettings(host=sim["url"], token=sim["token"])
        settings = Settings(
            state_dir=Path(tmp), mqtt=MqttSettings(host="127.0.0.1", port=broker), envoy=[envoy]
        )
        topics = Topics(settings.mqtt.base_topic, settings.mqtt.discovery_prefix)
        publisher = Publisher(settings.mqtt, topics)
        # "nopub": the publisher never connects, publish() only keeps the last state (poll + normalize only)
        runner = asyncio.create_task(publisher.run() if mode != "nopub" else asyncio.sleep(0))
        if mode != "nopub":
            await asyncio.wait_for(publisher.connected.wait(), 20)
        poller = EnvoyPoller(envoy, settings, publisher, topics)
        await poller._connect()
        await poller._system_tick()  # first cycles announce discovery: not steady state
        await poller._device_tick()
        await _drain(publisher)
        cycles = round(hours * SYSTEM_PER_HOUR)
        started_cpu, started = time.process_time(), time.perf_counter()
        for n in range(cycles):
            await poller._system_tick()
            if mode == "equal" or n % DEVICE_EVERY == 0:
                await poller._device_tick()
            await _drain(publisher)
        cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
        failures = poller.failures
        await poller.close()
        runner.cancel()
        return {
            "cpu": cpu,
            "wall": wall,
            "cycles": cycles,
            "failures": failures,
            "published": publisher.messages_published,
        }


async def side_pyenphase(sim: dict[str, Any], hours: float) -> dict[str, float]:
    from pyenphase import Envoy

    logging.getLogger("pyenphase").setLevel(logging.CRITICAL)
    envoy = Envoy(sim["url"].split("://", 1)[1])
    await envoy.setup()
    await envoy.authenticate(token=sim["token"]) if sim["token_auth"] else await envoy.authenticate()
    await envoy.update()
    cycles = round(hours * SYSTEM_PER_HOUR)
    started_cpu, started = time.process_time(), time.perf_counter()
    for _ in range(cycles):
        await envoy.update()
    cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
    await envoy.close()
    return {"cpu": cpu, "wall": wall, "cycles": cycles, "failures": 0, "published": 0}


def run_side(side: str, sim: dict[str, Any], broker: int, hours: float, mode: str) -> dict[str, float]:
    out = subprocess.run(
        [
            PYTHON,
            __file__,
            "--side",
            side,
            "--sim",
            json.dumps(sim),
            "--broker",
            str(broker),
            "--hours",
            str(hours),
            "--mode",
            mode,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{side} side failed: {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20 inverters, a tenth of an hour")
    parser.add_argument("--scale", type=int, default=300)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--side", choices=("ours", "pyenphase"), help=argparse.SUPPRESS)
    parser.add_argument("--sim", help=argparse.SUPPRESS)
    parser.add_argument("--broker", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="hour", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        sim = json.loads(args.sim)
        if args.side == "ours":
            result = asyncio.run(side_ours(sim, args.broker, args.hours, args.mode))
        else:
            result = asyncio.run(side_pyenphase(sim, args.hours))
        print(json.dumps(result))
        return 0
    scale, hours = (20, 0.1) if args.quick else (args.scale, args.hours)
    spec = [{"profile": "metered-3phase-iq", "scale": scale, "live": True, "time_scale": 60.0}]
    print(f"# cpu: metered-3phase-iq, {scale} inverters, {hours} simulated hour(s); {load()}")
    with (
        tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp,
        Mosquitto(Path(tmp)) as broker,
        SimHost(spec) as host,
    ):
        sim = host.sims[0]
        theirs = run_side("pyenphase", sim, broker.port, hours, "hour")
        ours = run_side("ours", sim, broker.port, hours, "hour")
        equal = run_side("ours", sim, broker.port, hours, "equal")
        nopub = run_side("ours", sim, broker.port, hours, "nopub")
    if ours["failures"] or equal["failures"]:
        print(f"WARNING: our poller recorded failures: {ours['failures']}, {equal['failures']}")
    per_hour_theirs = theirs["cpu"] / hours
    print(
        f"pyenphase: {theirs['cycles']:.0f} update() in {theirs['cpu']:.2f} CPU s "
        f"({per_hour_theirs:.2f} CPU s per hour of polling)"
    )
    print(
        f"envoy2mqtt: {ours['cycles']:.0f} system + {ours['cycles'] / DEVICE_EVERY:.0f} device cycles, "
        f"{ours['published']:.0f} MQTT messages, in {ours['cpu']:.2f} CPU s ({ours['cpu'] / hours:.2f} per hour)"
    )
    print(f"ratio per hour at default settings: {ours['cpu'] / theirs['cpu']:.2f}× (target ≤ 0.50×)")
    print(
        f"reference, every cycle system + device vs every cycle update(): {equal['cpu'] / theirs['cpu']:.2f}× "
        f"({equal['cpu']:.2f} CPU s, {equal['published']:.0f} messages)"
    )
    print(
        f"reference, poll + normalize only (publisher not connected), per hour: {nopub['cpu'] / theirs['cpu']:.2f}× "
        f"({nopub['cpu']:.2f} CPU s)"
    )
    print(f"# {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
