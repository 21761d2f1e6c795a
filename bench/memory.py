"""Resident memory of the daemon with 300 microinverters, and its growth over an accelerated day.

1. floor: a bare interpreter that imports what the daemon imports (envoy2mqtt's modules, aiohttp,
   aiomqtt, pydantic, structlog, cryptography) and does nothing else.
2. steady state: the real `python -m envoy2mqtt run` against a simulated site (metered-3phase-iq,
   300 microinverters, IQ batteries, 3-phase CTs) at the shortest cadences (10 s / 60 s), RSS after
   its first system and device cycles have been published.
3. soak: the same daemon code (`bench/_daemon.py`, an accelerated clock) living a simulated day in
   `--soak` real seconds; the simulator runs live at the same speed. RSS sampled all along; growth =
   the last fifth's median minus the second fifth's median (the first fifth is warm-up).
Target: steady state ≤ floor + 15 MB, growth within noise.
    python bench/memory.py [--quick] [--scale 300] [--soak 300]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BENCH,
    PYTHON,
    ROOT,
    Mosquitto,
    SimHost,
    load,
    proc_rss_mb,
    sim_requests,
    write_config,
)

FLOOR_IMPORTS = (
    "import envoy2mqtt.cli, envoy2mqtt.supervisor, envoy2mqtt.normalize.features, envoy2mqtt.envoy.auth.cloud, "
    "aiohttp, aiomqtt, pydantic, pydantic_settings, structlog, cryptography, sys, time; "
    "print('ready', flush=True); time.sleep(600)"
)
DAY = 86400.0


def floor_rss() -> float:
    proc = subprocess.Popen([PYTHON, "-c", FLOOR_IMPORTS], stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(0.5)
        return proc_rss_mb(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def run_daemon(argv: list[str], log: Path, seconds: float, every: float) -> tuple[list[float], int]:
    """Start the daemon, sample its RSS every `every` s for `seconds`; returns (samples, exit code)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT))
        samples: list[float] = []
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(every)
                samples.append(proc_rss_mb(proc.pid))
        finally:
            proc.terminate()
            code = proc.wait(20)
    return samples, code


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20 inverters, a few seconds each phase")
    parser.add_argument("--scale", type=int, default=300)
    parser.add_argument("--steady", type=float, default=45.0, help="real seconds of the real daemon")
    parser.add_argument("--soak", type=float, default=300.0, help="real seconds for one simulated day")
    args = parser.parse_args()
    scale, steady, soak = (20, 8.0, 12.0) if args.quick else (args.scale, args.steady, args.soak)
    speed = DAY / soak
    print(
        f"# memory: metered-3phase-iq, {scale} inverters; soak = 24 simulated hours in {soak:.0f} s "
        f"(clock ×{speed:.0f}); {load()}"
    )
    floor = floor_rss()
    spec = [{"profile": "metered-3phase-iq", "scale": scale, "live": True, "time_scale": speed}]
    with (
        tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp_name,
        Mosquitto(Path(tmp_name)) as broker,
        SimHost(spec) as host,
    ):
        tmp = Path(tmp_name)
        sim = host.sims[0]
        config = write_config(tmp, broker.port, host.sims, system_interval=10, device_interval=60)
        before = sim_requests(sim)
        samples, code = run_daemon(
            [PYTHON, "-m", "envoy2mqtt", "run", "--config", str(config)], tmp / "daemon.log", steady, 1.0
        )
        real_requests = sim_requests(sim) - before
        steady_rss = statistics.median(samples[-max(1, len(samples) // 3) :]) if samples else float("nan")
        before = sim_requests(sim)
        soak_samples, soak_code = run_daemon(
            [PYTHON, str(BENCH / "_daemon.py"), "--config", str(config), "--speed", f"{speed}"],
            tmp / "soak.log",
            soak,
            max(0.5, soak / 120),
        )
        soak_requests = sim_requests(sim) - before
        errors = [
            line for line in (tmp / "soak.log").read_text(errors="replace").splitlines() if '"error"' in line
        ]
    fifth = max(1, len(soak_samples) // 5)
    early = (
        statistics.median(soak_samples[fifth : 2 * fifth]) if len(soak_samples) >= 2 * fifth else float("nan")
    )
    late = statistics.median(soak_samples[-fifth:]) if soak_samples else float("nan")
    noise = statistics.pstdev(soak_samples[fifth:]) if len(soak_samples) > fifth + 1 else 0.0
    print(f"floor (bare interpreter, same imports): {floor:.1f} MB")
    print(
        f"daemon steady state ({steady:.0f} s real, {real_requests} Envoy requests, exit {code}): "
        f"{steady_rss:.1f} MB = floor + {steady_rss - floor:.1f} MB (target ≤ +15 MB)"
    )
    print(
        f"soak: {soak_requests} Envoy requests over a simulated day (exit {soak_code}); RSS min "
        f"{min(soak_samples, default=float('nan')):.1f} / max {max(soak_samples, default=float('nan')):.1f} MB; "
        f"second fifth {early:.1f} MB → last fifth {late:.1f} MB: growth {late - early:+.1f} MB "
        f"(sample stdev {noise:.1f} MB)"
    )
    if errors:
        print(f"soak log has {len(errors)} error lines, first: {errors[0][:300]}")
    print(f"# {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
