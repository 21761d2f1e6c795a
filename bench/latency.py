"""Latency from the simulator's response to the subscriber's MQTT message, and start-up time.

Both ends are stamped with the same machine clock (`time.time()`): the simulator process
(`_simhost.py --stamps`) notes when each Envoy response leaves its handler, a subscriber in this
process notes when each message arrives. For a system cycle the last Envoy response is
`/ivp/ensemble/secctrl` (metered-3phase-iq: production.json, meters/readings, ensemble power, secctrl),
so latency = arrival of `<envoy>/system` - that response. The daemon (`bench/_daemon.py`, clock ×10,
cadences 10 s / 60 s: a system cycle every real second, a device cycle every 6 s) runs `--seconds`.
Target p99 ≤ 20 ms.

Start-up: the real `python -m envoy2mqtt run` at default settings (fresh state, pasted token), from
process start to the first complete publish (system + gateway + availability online), and from the
Envoy's first answer to it. Target ≤ 2 s after the Envoy answers.
    python bench/latency.py [--quick] [--seconds 180] [--starts 5]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH, PYTHON, ROOT, Mosquitto, SimHost, Subscriber, load, percentile, write_config

LAST_SYSTEM_RESPONSE = "/ivp/ensemble/secctrl"


def read_stamps(path: Path) -> list[tuple[float, str]]:
    out = []
    for line in path.read_text().splitlines():
        at, _, what = line.partition(" ")
        out.append((float(at), what))
    return out


DEVICE_RESPONSES = ("/ivp/pdm/device_data", "/inventory.json", "/ivp/ensemble/inventory")


async def measure_latency(tmp: Path, seconds: float, speed: float) -> tuple[list[float], list[float]]:
    """(latencies of system cycles alone, latencies of system cycles that overlapped a device cycle), ms."""
    stamps_path = tmp / "stamps.txt"
    spec = [{"profile": "metered-3phase-iq", "live": True, "time_scale": speed}]
    with Mosquitto(tmp) as broker, SimHost(spec, stamps=stamps_path) as host:
        config = write_config(tmp, broker.port, host.sims, system_interval=10, device_interval=60)
        async with Subscriber(broker.port) as sub:
            with (tmp / "daemon.log").open("ab") as log:
                proc = subprocess.Popen(
                    [PYTHON, str(BENCH / "_daemon.py"), "--config", str(config), "--speed", str(speed)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=str(ROOT),
                )
                try:
                    await asyncio.sleep(seconds)
                finally:
                    proc.terminate()
                    proc.wait(20)
        stamps = read_stamps(stamps_path)
        sends = sorted(at for at, what in stamps if what.startswith(LAST_SYSTEM_RESPONSE))
        device = sorted(at for at, what in stamps if what.startswith(DEVICE_RESPONSES))
        alone: list[float] = []
        overlapped: list[float] = []
        system_events = [(at, topic) for at, topic, _ in sub.events if topic.endswith("/system")]
        for at, _topic in system_events[1:]:  # the first cycle also announces discovery
            index = bisect.bisect_left(sends, at) - 1
            if index >= 0:
                # a device cycle answered within the second before: its messages share the publisher
                busy = bisect.bisect_left(device, sends[index] - 1.0) < bisect.bisect_left(device, at)
                (overlapped if busy else alone).append((at - sends[index]) * 1000)
        return alone, overlapped


async def measure_startup(tmp: Path) -> tuple[float, float]:
    stamps_path = tmp / "stamps.txt"
    with Mosquitto(tmp) as broker, SimHost([{"profile": "metered-3phase-iq"}], stamps=stamps_path) as host:
        serial = host.sims[0]["serial"]
        config = write_config(tmp, broker.port, host.sims)  # default cadences 60 s / 300 s
        async with Subscriber(broker.port) as sub:
            wanted = {f"envoy2mqtt/{serial}/system", f"envoy2mqtt/{serial}/gateway"}
            online = f"envoy2mqtt/{serial}/availability"
            with (tmp / "daemon.log").open("ab") as log:
                started = time.time()
                proc = subprocess.Popen(
                    [PYTHON, "-m", "envoy2mqtt", "run", "--config", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=str(ROOT),
                )
                done = None
                try:
                    deadline = time.monotonic() + 60
                    while done is None and time.monotonic() < deadline:
                        await asyncio.sleep(0.01)
                        seen = {t for _, t, _ in sub.events} & wanted
                        is_online = any(t == online and p == b"online" for _, t, p in sub.events)
                        if seen == wanted and is_online:
                            done = max(
                                at
                                for at, t, p in sub.events
                                if t in wanted or (t == online and p == b"online")
                            )
                finally:
                    proc.terminate()
                    proc.wait(20)
        if done is None:
            raise RuntimeError("no complete first publish within 60 s")
        first_answer = min(at for at, _ in read_stamps(stamps_path) if at >= started)
        return done - started, done - first_answer


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10 s of cycles and one start")
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    seconds, starts = (10.0, 1) if args.quick else (args.seconds, args.starts)
    print(f"# latency: metered-3phase-iq, {seconds:.0f} s of cycles at clock ×{args.speed:.0f}; {load()}")
    with tempfile.TemporaryDirectory(prefix="bench-lat-") as tmp:
        alone, overlapped = await measure_latency(Path(tmp), seconds, args.speed)
    latencies = alone + overlapped
    if latencies:
        print(
            f"response → MQTT message: {len(latencies)} system cycles, p50 {percentile(latencies, 50):.1f} ms, "
            f"p99 {percentile(latencies, 99):.1f} ms, max {max(latencies):.1f} ms (target p99 ≤ 20 ms)"
        )
        for label, values in (("alone", alone), ("during a device cycle", overlapped)):
            if values:
                print(
                    f"  {label}: {len(values)} cycles, p50 {percentile(values, 50):.1f} ms, "
                    f"p99 {percentile(values, 99):.1f} ms, max {max(values):.1f} ms"
                )
    else:
        print("response → MQTT message: no samples")
    runs = []
    for n in range(starts):
        with tempfile.TemporaryDirectory(prefix=f"bench-start{n}-") as tmp:
            runs.append(await measure_startup(Path(tmp)))
    total = [r[0] for r in runs]
    after = [r[1] for r in runs]
    print(
        f"start-up ({starts} starts, default cadences): process start → first complete publish median "
        f"{percentile(total, 50):.2f} s, max {max(total):.2f} s; Envoy's first answer → first complete publish "
        f"median {percentile(after, 50):.2f} s, max {max(after):.2f} s (target ≤ 2 s)"
    )
    print(f"# {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
