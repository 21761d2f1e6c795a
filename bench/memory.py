"""Resident memory of the daemon with 300 microinverters, and its growth over an accelerated day.

1. floors: (a) a bare interpreter that imports only the five libraries of the design card (aiohttp,
   aiomqtt, pydantic-settings, pyjwt, structlog) and does nothing else; (b) the same plus every module
   the daemon imports (envoy2mqtt's own, aiohttp.web for the health listener, ...).
2. after start: the real `envoy2mqtt run` against the generated metered-3phase-iq site at its own size
   (24 microinverters), RSS over `--start` seconds once its first system and device cycles are out.
   steady state: the real `envoy2mqtt run` against a simulated site (metered-3phase-iq, 300
   microinverters, IQ batteries, 3-phase CTs) at the shortest cadences (10 s / 60 s), RSS after its
   first system and device cycles have been published.
3. soak: the same daemon code (`bench/_daemon.py`, an accelerated clock) living a simulated day in
   `--soak` real seconds; the simulator runs live at the same speed. RSS sampled all along; growth =
   the last fifth's median minus the second fifth's median (the first fifth is warm-up).
The floors and the daemon run as installed in the container image, without the optional extras
(cryptography, amqtt) and prometheus-client (a test dependency only): `sys.modules[name] = None`, so
pyjwt does not load cryptography either; `--with-extras` measures them as installed by `.[dev]`.
Targets: after start ≤ floor (a) + 10 MB; steady state (300 inverters) ≤ floor (b) + 15 MB; growth
within noise.
    python bench/memory.py [--quick] [--scale 300] [--soak 300] [--with-extras]
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

WITHOUT_EXTRAS = (
    "import sys; sys.modules.update(dict.fromkeys(('cryptography', 'amqtt', 'prometheus_client'))); "
)
LIBRARIES = "import aiohttp, aiomqtt, pydantic_settings, jwt, structlog"
DAEMON_IMPORTS = (
    LIBRARIES + "; import envoy2mqtt.cli, envoy2mqtt.supervisor, envoy2mqtt.normalize.features, "
    "envoy2mqtt.envoy.auth.cloud; envoy2mqtt.cli.build_parser()"
)
WAIT = "; import sys, time; print('ready', flush=True); time.sleep(600)"
RUN_DAEMON = "from envoy2mqtt.cli import main; sys.exit(main(sys.argv[1:]))"
DAY = 86400.0


def floor_rss(code: str) -> float:
    proc = subprocess.Popen([PYTHON, "-c", code + WAIT], stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
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
    parser.add_argument("--start", type=float, default=20.0, help="real seconds of the after-start run")
    parser.add_argument("--steady", type=float, default=45.0, help="real seconds of the real daemon")
    parser.add_argument("--soak", type=float, default=300.0, help="real seconds for one simulated day")
    parser.add_argument(
        "--with-extras", action="store_true", help="let cryptography and amqtt load (as .[dev] has them)"
    )
    args = parser.parse_args()
    prefix = "import sys; " if args.with_extras else WITHOUT_EXTRAS
    scale, start, steady, soak = (
        (20, 8.0, 8.0, 12.0) if args.quick else (args.scale, args.start, args.steady, args.soak)
    )
    speed = DAY / soak
    print(
        f"# memory: metered-3phase-iq, {scale} inverters; soak = 24 simulated hours in {soak:.0f} s "
        f"(clock ×{speed:.0f}); {'with' if args.with_extras else 'without'} the optional extras; {load()}"
    )
    libraries = floor_rss(prefix + LIBRARIES)
    floor = floor_rss(prefix + DAEMON_IMPORTS)
    spec = [{"profile": "metered-3phase-iq", "scale": scale, "live": True, "time_scale": speed}]
    with (
        tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp_name,
        Mosquitto(Path(tmp_name)) as broker,
        SimHost(spec) as host,
    ):
        tmp = Path(tmp_name)
        with SimHost([{"profile": "metered-3phase-iq", "live": True}]) as small:
            (tmp / "start").mkdir()
            config = write_config(
                tmp / "start", broker.port, small.sims, system_interval=10, device_interval=60
            )
            start_samples, start_code = run_daemon(
                [PYTHON, "-c", prefix + RUN_DAEMON, "run", "--config", str(config)],
                tmp / "start.log",
                start,
                1.0,
            )
        start_rss = statistics.median(start_samples[-max(1, len(start_samples) // 3) :])
        sim = host.sims[0]
        config = write_config(tmp, broker.port, host.sims, system_interval=10, device_interval=60)
        before = sim_requests(sim)
        samples, code = run_daemon(
            [PYTHON, "-c", prefix + RUN_DAEMON, "run", "--config", str(config)],
            tmp / "daemon.log",
            steady,
            1.0,
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
    print(f"floor (a), bare interpreter, the five libraries only: {libraries:.1f} MB")
    print(
        f"floor (b), bare interpreter, the daemon's imports: {floor:.1f} MB = (a) + {floor - libraries:.1f} MB"
    )
    print(
        f"daemon after start (24 inverters, {start:.0f} s real, exit {start_code}): {start_rss:.1f} MB = "
        f"(a) + {start_rss - libraries:.1f} MB (target ≤ +10 MB)"
    )
    print(
        f"daemon steady state ({steady:.0f} s real, {real_requests} Envoy requests, exit {code}): "
        f"{steady_rss:.1f} MB = (a) + {steady_rss - libraries:.1f} MB, (b) + {steady_rss - floor:.1f} MB "
        "(target ≤ (b) + 15 MB)"
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
