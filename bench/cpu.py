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
A third line is the floor: aiomqtt alone publishing the same number of QoS 1 messages, no polling.
    python bench/cpu.py [--quick] [--scale 300] [--hours 2] [--repeat 3] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import pstats
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
# set by `--profile DIR` for the side subprocesses: each writes DIR/<side>.prof
PROFILE_DIR = os.environ.get("BENCH_CPU_PROFILE_DIR", "")


def _profiler() -> cProfile.Profile | None:
    """A running profiler when `--profile DIR` was given (the figures then include its overhead)."""
    if not PROFILE_DIR:
        return None
    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def _dump(profiler: cProfile.Profile | None, name: str) -> None:
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(Path(PROFILE_DIR) / f"{name}.prof"))


async def _drain(publisher: Any) -> None:
    while publisher._outbox and publisher.connected.is_set():
        await asyncio.sleep(0.002)


async def side_ours(sim: dict[str, Any], broker: int, hours: float, mode: str) -> dict[str, float]:
    from envoy2mqtt.clock import ManualClock
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
        # virtual time: each cycle finds its bodies due, as a minute apart (a body fresh enough is reused)
        clock = ManualClock()
        step = settings.polling.device_interval if mode == "equal" else settings.polling.system_interval
        poller = EnvoyPoller(envoy, settings, publisher, topics, clock=clock)
        await poller.connect()
        clock.advance(settings.polling.device_interval)
        await poller._system_tick()  # first cycles announce discovery: not steady state
        await poller._device_tick()
        await _drain(publisher)
        cycles = round(hours * SYSTEM_PER_HOUR)
        profiler = _profiler()
        started_cpu, started = time.process_time(), time.perf_counter()
        for n in range(cycles):
            clock.advance(step)
            await poller._system_tick()
            if mode == "equal" or n % DEVICE_EVERY == 0:
                await poller._device_tick()
            await _drain(publisher)
        cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
        _dump(profiler, f"ours-{mode}")
        failures = poller.failures
        sizes = [len(m.payload) for m in publisher._states.values()]
        await poller.close()
        runner.cancel()
        return {
            "cpu": cpu,
            "wall": wall,
            "cycles": cycles,
            "failures": failures,
            "published": publisher.messages_published,
            "payload_bytes": sum(sizes) / max(1, len(sizes)),
        }


async def side_mqtt_floor(broker: int, messages: int, payload_bytes: int) -> dict[str, float]:
    """aiomqtt alone: publish as many QoS 1 retained messages, of the same mean size, as our hour did.

    No Envoy, no normalization, no JSON: the least any bridge built on aiomqtt (the design card's MQTT
    library) spends to honour the contract's "every state topic, QoS 1, once per poll".
    """
    import aiomqtt

    payload = b"x" * payload_bytes
    async with aiomqtt.Client("127.0.0.1", broker, identifier="bench-cpu-floor") as client:
        await client.publish("bench/floor/warmup", payload, qos=1)
        started_cpu, started = time.process_time(), time.perf_counter()
        for n in range(messages):
            await client.publish(f"bench/floor/{n % 320}", payload, qos=1, retain=True)
        cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
        for n in range(320):  # leave the private broker as we found it
            await client.publish(f"bench/floor/{n}", b"", qos=1, retain=True)
    return {"cpu": cpu, "wall": wall, "cycles": 0, "failures": 0, "published": messages}


async def side_pyenphase(sim: dict[str, Any], hours: float) -> dict[str, float]:
    from pyenphase import Envoy

    logging.getLogger("pyenphase").setLevel(logging.CRITICAL)
    envoy = Envoy(sim["url"].split("://", 1)[1])
    await envoy.setup()
    await envoy.authenticate(token=sim["token"]) if sim["token_auth"] else await envoy.authenticate()
    await envoy.update()
    cycles = round(hours * SYSTEM_PER_HOUR)
    profiler = _profiler()
    started_cpu, started = time.process_time(), time.perf_counter()
    for _ in range(cycles):
        await envoy.update()
    cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
    _dump(profiler, "pyenphase")
    await envoy.close()
    return {"cpu": cpu, "wall": wall, "cycles": cycles, "failures": 0, "published": 0}


def _median(results: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median CPU time (its other figures with it)."""
    return sorted(results, key=lambda r: r["cpu"])[len(results) // 2]


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
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per side (median)")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="cProfile each side's cycles into DIR/<side>.prof and print the top functions",
    )
    parser.add_argument("--side", choices=("ours", "pyenphase", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--sim", help=argparse.SUPPRESS)
    parser.add_argument("--broker", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="hour", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        sim = json.loads(args.sim)
        if args.side == "ours":
            result = asyncio.run(side_ours(sim, args.broker, args.hours, args.mode))
        elif args.side == "floor":
            messages, size = (int(x) for x in args.mode.split(":"))
            result = asyncio.run(side_mqtt_floor(args.broker, messages, size))
        else:
            result = asyncio.run(side_pyenphase(sim, args.hours))
        print(json.dumps(result))
        return 0
    scale, hours = (20, 0.1) if args.quick else (args.scale, args.hours)
    repeat = 1 if args.quick else max(1, args.repeat)
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        os.environ["BENCH_CPU_PROFILE_DIR"] = str(Path(args.profile).resolve())
    spec = [{"profile": "metered-3phase-iq", "scale": scale, "live": True, "time_scale": 60.0}]
    print(f"# cpu: metered-3phase-iq, {scale} inverters, {hours} simulated hour(s); {load()}")
    with (
        tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp,
        Mosquitto(Path(tmp)) as broker,
        SimHost(spec) as host,
    ):
        sim = host.sims[0]
        runs: dict[str, list[dict[str, float]]] = {}
        # Interleaved repeats, the median kept: one run of ~1 CPU s is at the mercy of the other core.
        for _ in range(repeat):
            runs.setdefault("theirs", []).append(run_side("pyenphase", sim, broker.port, hours, "hour"))
            ours = run_side("ours", sim, broker.port, hours, "hour")
            runs.setdefault("ours", []).append(ours)
            runs.setdefault("nopub", []).append(run_side("ours", sim, broker.port, hours, "nopub"))
            size = f"{ours['published']:.0f}:{ours['payload_bytes']:.0f}"
            runs.setdefault("floor", []).append(run_side("floor", sim, broker.port, hours, size))
        equal = run_side("ours", sim, broker.port, hours, "equal")
    theirs, ours, nopub, floor = (_median(runs[k]) for k in ("theirs", "ours", "nopub", "floor"))
    if repeat > 1:
        spread = {k: ", ".join(f"{r['cpu']:.2f}" for r in v) for k, v in runs.items()}
        print(
            f"({repeat} interleaved runs per side, medians below; CPU s: pyenphase {spread['theirs']}; "
            f"ours {spread['ours']}; ours without MQTT {spread['nopub']}; aiomqtt floor {spread['floor']})"
        )
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
    print(
        f"floor, aiomqtt alone publishing the same {floor['published']:.0f} QoS 1 messages "
        f"({ours['payload_bytes']:.0f} bytes each, no polling), per hour: "
        f"{floor['cpu'] / theirs['cpu']:.2f}× ({floor['cpu']:.2f} CPU s, "
        f"{floor['cpu'] / max(1, floor['published']) * 1e6:.0f} µs per message)"
    )
    print(f"# {load()}")
    if args.profile:
        for prof in sorted(Path(args.profile).glob("*.prof")):
            print(f"\n## profile {prof.stem} (top 25 by own time)")
            pstats.Stats(str(prof), stream=sys.stdout).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
