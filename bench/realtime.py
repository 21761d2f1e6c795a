"""The real-time cadence: how regular, how fast to the subscriber, what it costs the Envoy and the CPU,
and how it behaves when the Envoy is overloaded.

Steady state, per generated site and interval (1 s and 5 s): the real daemon (`bench/_daemon.py`,
plain clock) against the simulator (`_simhost.py --stamps`, its own process) and a private mosquitto,
for `--seconds`:

- achieved interval: gaps between consecutive `<envoy>/live` messages at the subscriber, p50 / p99;
- Envoy requests per hour, all cadences together, against the same daemon with `[realtime]` off in the
  same run (the baseline, measured over three minute cycles), and the real-time requests alone;
- latency: the simulator's response to the real-time request (its send time) → the `live` message at
  the subscriber, both on the machine's clock; p50 / p99 (target p99 ≤ 20 ms);
- CPU: the daemon's user + system seconds per wall second (% of one core), and against the baseline.

Overload: `metered-1phase-acb` at 1 s; after a calm start the simulator's load model is switched on
(above 0.5 requests a second answers slow down, after 5 s of that it answers 503 for 30 s). Reported:
seconds until the daemon backed off (its request rate back under the Envoy's limit), the requests it sent
while the Envoy was overloaded, and — once the Envoy is healthy again — seconds until the interval is
back at 1 s (`calm_period` 30 s here; 120 s by default).

    python bench/realtime.py [--quick] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH, PYTHON, ROOT, Mosquitto, SimHost, load, percentile, proc_cpu_seconds, write_config
from _common import Subscriber as BaseSubscriber

REALTIME_PATHS = ("/ivp/meters/readings", "/ivp/livedata/status")
SITES = (("metered-3phase-iq", "livedata"), ("metered-1phase-acb", "meters"))


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def sim_stats(sim: dict[str, Any]) -> dict[str, Any]:
    with urllib.request.urlopen(f"{sim['url']}/__sim/stats", context=_context(), timeout=10) as response:
        stats: dict[str, Any] = json.load(response)
        return stats


def sim_fault(sim: dict[str, Any], body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        f"{sim['url']}/__sim/faults",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, context=_context(), timeout=10) as response:
        response.read()


class Subscriber(BaseSubscriber):
    """The bridge's messages, with the live topic's arrival times."""

    def live(self, since: float = 0.0) -> list[float]:
        return [at for at, topic, _ in self.events if topic.endswith("/live") and at >= since]

    def gateway(self) -> dict[str, Any]:
        for _, topic, payload in reversed(self.events):
            if topic.endswith("/gateway") and payload:
                gateway: dict[str, Any] = json.loads(payload)
                return gateway
        return {}


def realtime_section(
    interval: float | None, source: str = "auto", calm_period: float = 120, failure_pause: float = 300
) -> str:
    if interval is None:
        return ""
    return (
        f'[realtime]\nenabled = true\ninterval = {interval}\nsource = "{source}"\n'
        f'maintenance_window = ""\ncalm_period = {calm_period}\nfailure_pause = {failure_pause}\n'
    )


def start_daemon(
    tmp: Path, broker: int, sims: list[dict[str, Any]], realtime: str
) -> subprocess.Popen[bytes]:
    config = write_config(tmp, broker, sims)
    config.write_text(config.read_text().replace("[[envoy]]", realtime + "[[envoy]]", 1))
    log = (tmp / "daemon.log").open("ab")
    return subprocess.Popen(
        [PYTHON, str(BENCH / "_daemon.py"), "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(ROOT),
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def read_stamps(path: Path) -> list[tuple[float, str]]:
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            at, _, what = line.partition(" ")
            out.append((float(at), what))
    return out


async def steady(profile: str, interval: float | None, seconds: float) -> dict[str, Any]:
    """One run: the daemon on one simulated site, real-time at `interval` (None: off, the baseline)."""
    with tempfile.TemporaryDirectory(prefix="bench-rt-") as name:
        tmp = Path(name)
        stamps = tmp / "stamps.txt"
        spec = [{"profile": profile, "live": True}]
        with Mosquitto(tmp) as broker, SimHost(spec, stamps=stamps) as host:
            sim = host.sims[0]
            async with Subscriber(broker.port) as subscriber:
                daemon = start_daemon(tmp, broker.port, host.sims, realtime_section(interval))
                try:
                    # warm up: connected, probed, first cycles done (and the live stream flowing)
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline:
                        await asyncio.sleep(0.5)
                        if any(t.endswith("/system") for _, t, _ in subscriber.events) and (
                            interval is None or len(subscriber.live()) >= 2
                        ):
                            break
                    await asyncio.sleep(2.0)
                    before = sim_stats(sim)["requests"]
                    cpu0, wall0 = proc_cpu_seconds(daemon.pid), time.time()
                    await asyncio.sleep(seconds)
                    cpu1, wall1 = proc_cpu_seconds(daemon.pid), time.time()
                    after = sim_stats(sim)["requests"]
                finally:
                    stop(daemon)
        window = wall1 - wall0
        delta = {path: after.get(path, 0) - before.get(path, 0) for path in after}
        live = [at for at in subscriber.live() if wall0 <= at <= wall1]
        gaps = [b - a for a, b in itertools.pairwise(live)]
        responses = sorted((at, what) for at, what in read_stamps(stamps) if what in REALTIME_PATHS)
        times = [at for at, _ in responses]
        latencies = []
        for arrival in live:
            index = bisect.bisect_right(times, arrival) - 1
            if index >= 0:
                latencies.append((arrival - times[index]) * 1000)
        realtime_requests = sum(
            count for path, count in delta.items() if "livedata" in path or path == "/ivp/meters/readings"
        )
        return {
            "window": window,
            "messages": len(live),
            "gap_p50": percentile(gaps, 50),
            "gap_p99": percentile(gaps, 99),
            "requests_per_hour": sum(delta.values()) * 3600 / window,
            "realtime_per_hour": realtime_requests * 3600 / window,
            "latency_p50": percentile(latencies, 50),
            "latency_p99": percentile(latencies, 99),
            "cpu_share": 100 * (cpu1 - cpu0) / window,
        }


async def overload(
    seconds_calm: float, calm_period: float, failure_pause: float, limit: float = 0.5
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-rt-") as name:
        tmp = Path(name)
        with Mosquitto(tmp) as broker, SimHost([{"profile": "metered-1phase-acb", "live": True}]) as host:
            sim = host.sims[0]
            async with Subscriber(broker.port) as subscriber:
                realtime = realtime_section(1, "meters", calm_period=calm_period, failure_pause=failure_pause)
                daemon = start_daemon(tmp, broker.port, host.sims, realtime)
                try:
                    while len(subscriber.live()) < 3:
                        await asyncio.sleep(0.2)
                    await asyncio.sleep(seconds_calm)
                    settings = {"limit": limit, "window": 10, "overload_after": 5, "busy_for": 30}
                    sim_fault(sim, {"fault": "overload", **settings})
                    switched_on = time.monotonic()
                    backed_off_after = None
                    highest = 1.0
                    # backed off: the request rate the Envoy sees (over its 10 s window) is under its limit
                    # again, once the daemon has felt the overload (its interval went up)
                    while time.monotonic() - switched_on < 300:
                        await asyncio.sleep(0.5)
                        highest = max(highest, float(subscriber.gateway().get("realtime_interval", 1)))
                        state = sim_stats(sim)["load"]
                        if highest > 1 and state["rate"] <= limit:
                            backed_off_after = time.monotonic() - switched_on
                            break
                    await asyncio.sleep(10.0)  # the Envoy stays overloaded-prone: count what still comes
                    sent_while_overloaded = sim_stats(sim)["load"]["requests_while_overloaded"]
                    busy_periods = sim_stats(sim)["load"]["busy_periods"]
                    sim_fault(sim, {"fault": "clear"})
                    cleared = time.monotonic()
                    recovered_after = None
                    while time.monotonic() - cleared < failure_pause + 12 * calm_period + 60:
                        await asyncio.sleep(0.5)
                        interval = float(subscriber.gateway().get("realtime_interval", 0))
                        highest = max(highest, interval)
                        if interval == 1:
                            recovered_after = time.monotonic() - cleared
                            break
                finally:
                    stop(daemon)
        return {
            "backed_off_after": backed_off_after,
            "sent_while_overloaded": sent_while_overloaded,
            "busy_periods": busy_periods,
            "highest_interval": highest,
            "recovered_after": recovered_after,
            "limit": limit,
            "failure_pause": failure_pause,
        }


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None or value != value else f"{value:.{digits}f}"


def _ratio(value: float) -> str:
    return "—" if value != value else f"{value:.1f}×"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs (the smoke test)")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    seconds = 8.0 if args.quick else args.seconds
    intervals = (1.0,) if args.quick else (1.0, 5.0)
    sites = SITES[1:] if args.quick else SITES
    print(f"# bench/realtime.py — {seconds:.0f} s per run, {load()}")
    print()
    print(
        "| site | source | interval | live msgs | achieved p50 / p99 s | Envoy req/h (all) | "
        "real-time req/h | vs off | latency p50 / p99 ms | CPU % of a core | vs off |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for profile, source in sites:
        # the baseline needs whole minute cycles in its window: three of them (one in --quick)
        baseline = await steady(profile, None, seconds if args.quick else max(seconds, 180.0))
        print(
            f"| {profile} | off | — | — | — | {baseline['requests_per_hour']:.0f} | 0 | 1.00× | — | "
            f"{baseline['cpu_share']:.2f} | 1.00× |"
        )
        # a window shorter than the minute cadence may hold no cycle of the baseline: no ratio then
        base_requests = baseline["requests_per_hour"] or float("nan")
        base_cpu = baseline["cpu_share"] if baseline["cpu_share"] >= 0.05 else float("nan")
        for interval in intervals:
            run = await steady(profile, interval, seconds)
            print(
                f"| {profile} | {source} | {interval:.0f} s | {run['messages']} | "
                f"{_fmt(run['gap_p50'], 2)} / {_fmt(run['gap_p99'], 2)} | {run['requests_per_hour']:.0f} | "
                f"{run['realtime_per_hour']:.0f} | "
                f"{_ratio(run['requests_per_hour'] / base_requests)} | "
                f"{_fmt(run['latency_p50'])} / {_fmt(run['latency_p99'])} | {run['cpu_share']:.2f} | "
                f"{_ratio(run['cpu_share'] / base_cpu)} |"
            )
    print()
    calm = 5.0 if args.quick else 30.0
    result = await overload(2.0 if args.quick else 10.0, calm, failure_pause=10.0 if args.quick else 60.0)
    print(
        f"overload (metered-1phase-acb at 1 s, Envoy limit {result['limit']} req/s, 503s for 30 s after 5 s "
        f"above it; calm_period {calm:.0f} s, failure_pause {result['failure_pause']:.0f} s): "
        f"backed off after {_fmt(result['backed_off_after'])} s "
        f"(interval up to {result['highest_interval']:.0f} s); "
        f"{result['sent_while_overloaded']} requests sent while the Envoy was overloaded; "
        f"{result['busy_periods']} period(s) of 503s; "
        f"back to 1 s {_fmt(result['recovered_after'])} s after the Envoy recovered"
    )


if __name__ == "__main__":
    asyncio.run(main())
