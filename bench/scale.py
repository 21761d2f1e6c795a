"""One daemon polling many simulated Envoys at once: CPU share and poll lateness as the count grows.

Small sites (metered-3phase-iq, 10 microinverters, own serial each, token auth over TLS with a
pasted token) served by one simulator process; the real `python -m envoy2mqtt run` polls them all
at system_interval = 10 s, device_interval = 60 s. After a warm-up, and once every Envoy has
published twice (connected and on its cadence), for `--window` seconds:
  - CPU share: the daemon's CPU seconds / wall seconds (100 % = one core), and the simulator's
  - lateness: for each Envoy, the arrival times of its `system` messages are fitted to its 10 s grid
    (fixed-rate cadence): lateness = offset from the earliest slot; a missed tick is a grid slot
    without a message.
On time = no missed tick and no system message later than 1 s (10 % of the cadence) behind its slot.
    python bench/scale.py [--quick] [--counts 10 50 100] [--window 60]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    PYTHON,
    ROOT,
    Mosquitto,
    SimHost,
    Subscriber,
    load,
    percentile,
    proc_cpu_seconds,
    write_config,
)

CADENCE = 10.0
ON_TIME = 1.0


def lateness(arrivals: list[float]) -> tuple[list[float], int]:
    if not arrivals:
        return [], 0
    first = arrivals[0]
    slots = [round((t - first) / CADENCE) for t in arrivals]
    offsets = [t - k * CADENCE for t, k in zip(arrivals, slots, strict=True)]
    base = min(offsets)
    missed = sum(max(0, b - a - 1) for a, b in itertools.pairwise(slots))
    return [o - base for o in offsets], missed


def edge_slots_missed(arrivals: list[float], late: list[float], at0: float, at1: float) -> int:
    """Slots of this Envoy's own grid before its first / after its last arrival that lie inside the window.

    Each Envoy has its own phase (the daemon staggers them), so the window's edges fall anywhere in its
    interval: a slot counts only when it lies wholly inside the window, ON_TIME included (a message of a
    slot just before the window's start, or in flight at its end, is not a missed tick).
    """
    first_slot = arrivals[0] - late[0]
    last_slot = arrivals[-1] - late[-1]
    before = max(0, math.floor((first_slot - at0 - ON_TIME) / CADENCE))
    after = max(0, math.floor((at1 - last_slot - ON_TIME) / CADENCE))
    return before + after


async def run_count(count: int, warmup: float, window: float) -> dict[str, float]:
    specs = [{"profile": "metered-3phase-iq", "scale": 10, "serial": f"1223{n:08d}"} for n in range(count)]
    with (
        tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp_name,
        Mosquitto(Path(tmp_name)) as broker,
        SimHost(specs) as host,
    ):
        tmp = Path(tmp_name)
        config = write_config(tmp, broker.port, host.sims, system_interval=CADENCE, device_interval=60)
        async with Subscriber(broker.port) as sub:
            with (tmp / "daemon.log").open("ab") as log:
                proc = subprocess.Popen(
                    [PYTHON, "-m", "envoy2mqtt", "run", "--config", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=str(ROOT),
                )
                try:
                    await asyncio.sleep(warmup)
                    # Steady state: every Envoy connected, probed and on its cadence (the daemon spreads
                    # them over the interval, so the last one's second poll comes up to 2 intervals
                    # after its first); with hundreds of Envoys connecting at once that takes a while.
                    topics = {f"envoy2mqtt/{sim['serial']}/system" for sim in host.sims}
                    deadline = time.monotonic() + 180
                    while time.monotonic() < deadline:
                        seen = collections.Counter(t for _, t, _ in sub.events if t in topics)
                        if len(seen) == len(topics) and min(seen.values()) >= 2:
                            break
                        await asyncio.sleep(0.5)
                    cpu0, sim0, wall0, at0 = (
                        proc_cpu_seconds(proc.pid),
                        proc_cpu_seconds(host.pid),
                        time.monotonic(),
                        time.time(),
                    )
                    await asyncio.sleep(window)
                    cpu1, sim1, wall1, at1 = (
                        proc_cpu_seconds(proc.pid),
                        proc_cpu_seconds(host.pid),
                        time.monotonic(),
                        time.time(),
                    )
                finally:
                    proc.terminate()
                    proc.wait(30)
        late: list[float] = []
        missed = 0
        silent = 0
        for sim in host.sims:
            topic = f"envoy2mqtt/{sim['serial']}/system"
            arrivals = [at for at, t, _ in sub.events if t == topic and at0 <= at <= at1]
            if not arrivals:
                silent += 1
                continue
            values, lost = lateness(arrivals)
            late.extend(values)
            missed += lost
            missed += edge_slots_missed(arrivals, values, at0, at1)
        wall = wall1 - wall0
        return {
            "count": count,
            "cpu": (cpu1 - cpu0) / wall * 100,
            "sim_cpu": (sim1 - sim0) / wall * 100,
            "polls": len(late),
            "p50": percentile(late, 50),
            "p99": percentile(late, 99),
            "max": max(late, default=float("nan")),
            "missed": missed,
            "silent": silent,
        }


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 Envoys, short windows")
    parser.add_argument("--counts", type=int, nargs="*", default=[10, 50, 100])
    parser.add_argument("--warmup", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=60.0)
    args = parser.parse_args()
    counts, warmup, window = ([3], 6.0, 11.0) if args.quick else (args.counts, args.warmup, args.window)
    print(
        f"# scale: system cadence {CADENCE:.0f} s, device 60 s, {window:.0f} s measured after {warmup:.0f} s; {load()}"
    )
    print(
        "| Envoys | daemon CPU (% of one core) | simulator CPU | system polls | lateness p50 / p99 / max (s) "
        "| missed ticks | silent Envoys | on time |"
    )
    print("|---:|---:|---:|---:|---|---:|---:|---|")
    best = 0
    for count in counts:
        r = await run_count(count, warmup, window)
        on_time = r["missed"] == 0 and r["silent"] == 0 and r["max"] <= ON_TIME
        if on_time:
            best = max(best, count)
        print(
            f"| {count} | {r['cpu']:.1f} % | {r['sim_cpu']:.1f} % | {r['polls']:.0f} | "
            f"{r['p50']:.3f} / {r['p99']:.3f} / {r['max']:.3f} | {r['missed']:.0f} | {r['silent']:.0f} | "
            f"{'yes' if on_time else 'no'} |  ({load()})",
            flush=True,
        )
    print(f"largest count with every poll on time: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
