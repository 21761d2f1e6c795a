"""Each bench script runs end to end with --quick, so none of them can rot; no timing is asserted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import mosquitto_binary

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def run_bench(name: str, *args: str, timeout: float = 240) -> str:
    out = subprocess.run(
        [sys.executable, str(BENCH / name), "--quick", *args],
        capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), check=False,
    )  # fmt: skip
    assert out.returncode == 0, f"{name} exited {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def test_envoy_load_counts_both_sides() -> None:
    text = run_bench("envoy_load.py")
    rows = [
        line for line in text.splitlines() if line.startswith(("| metered-3phase-iq", "| legacy-unmetered"))
    ]
    assert len(rows) == 2, text
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        system, device, ours, theirs = int(cells[3]), int(cells[4]), float(cells[5]), float(cells[7])
        assert system >= 0, row  # a CT-less Envoy's lightest minute reads nothing (held bodies)
        assert system + device >= 1, row
        assert ours > 0, row
        assert theirs > 0, row
        assert re.fullmatch(r"\d+\.\d\d×", cells[8]), row
    assert "Requests per hour at default settings per hardware type" in text


@pytest.fixture(autouse=False)
def broker_available() -> None:
    mosquitto_binary()  # fails with the install hint when mosquitto is missing


def test_cpu_measures_both_sides(broker_available: None) -> None:
    text = run_bench("cpu.py")
    assert "WARNING" not in text, text
    match = re.search(r"envoy2mqtt: (\d+) system .*?, (\d+) MQTT messages, in ([\d.]+) CPU s", text)
    assert match, text
    assert int(match.group(1)) > 0, text
    assert int(match.group(2)) > 0, text
    assert re.search(r"ratio per hour at default settings: [\d.]+×", text), text


def test_memory_samples_the_daemon_and_the_floor(broker_available: None) -> None:
    text = run_bench("memory.py")
    libraries = re.search(r"floor \(a\), bare interpreter, the five libraries only: ([\d.]+) MB", text)
    floor = re.search(r"floor \(b\), bare interpreter, the daemon's imports: ([\d.]+) MB", text)
    assert libraries, text
    assert 10 < float(libraries.group(1)) < float(floor.group(1)) if floor else False, text
    steady = re.search(r"daemon steady state \(.*?(\d+) Envoy requests, exit 0\): ([\d.]+) MB", text)
    soak = re.search(r"soak: (\d+) Envoy requests over a simulated day \(exit 0\)", text)
    assert floor, text
    assert steady, text
    assert soak, text
    assert float(floor.group(1)) > 10, text
    assert float(steady.group(2)) > 10, text
    assert int(steady.group(1)) > 0, text
    assert int(soak.group(1)) > int(steady.group(1)), text


def test_latency_pairs_responses_with_messages(broker_available: None) -> None:
    text = run_bench("latency.py")
    cycles = re.search(
        r"response → MQTT message: (\d+) system cycles, p50 ([\d.]+) ms, p99 ([\d.]+) ms", text
    )
    assert cycles, text
    assert int(cycles.group(1)) >= 2, text
    assert 0 < float(cycles.group(2)) <= float(cycles.group(3)), text
    assert re.search(r"Envoy's first answer → first complete publish median [\d.]+ s", text), text


def test_scale_polls_every_envoy(broker_available: None) -> None:
    text = run_bench("scale.py")
    row = next(line for line in text.splitlines() if line.startswith("| 3 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert int(cells[3]) >= 3, row  # every Envoy published a system message in the window
    assert cells[6] == "0", row  # no silent Envoy
    assert "largest count with every poll on time" in text


def test_realtime_measures_cadence_latency_and_overload(broker_available: None) -> None:
    text = run_bench("realtime.py", timeout=600)
    row = next(line for line in text.splitlines() if line.startswith("| metered-1phase-acb | meters | 1 s"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert int(cells[3]) >= 3, row  # live messages in the window
    p50, p99 = (float(x) for x in cells[4].split(" / "))
    assert 0 < p50 <= p99, row
    assert float(cells[6]) > 0, row  # real-time requests per hour
    assert re.fullmatch(r"[\d.]+ / [\d.]+", cells[8]), row  # latency measured
    overload = re.search(
        r"backed off after ([\d.]+) s .*?(\d+) requests sent while the Envoy was overloaded.*?"
        r"back to 1 s ([\d.]+) s after the Envoy recovered",
        text,
    )
    assert overload, text
