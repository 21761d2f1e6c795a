"""Requests per hour each Envoy sees: envoy2mqtt at its default cadences vs pyenphase as Home Assistant uses it.

For every shared capture and every generated profile, against the built-in simulator (its `requests`
counter): one real hour of our `EnvoyPoller`'s system and device cycles on virtual time (bodies that one
cadence reads serve the other while fresh enough, so an hour is counted, not one cycle of each), and one
steady-state `update()` of pyenphase. Requests per hour:

  envoy2mqtt = every request of that hour + /info every firmware_check_interval (token renewal only
               talks to the cloud)
  pyenphase  = update() × 60 (Home Assistant's coordinator polls every 60 s)

Target: envoy2mqtt ≤ 0.5 × pyenphase for every hardware type.
    python bench/envoy_load.py [--quick] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PROFILES, capture_folders, load

from envoy2mqtt.clock import ManualClock
from envoy2mqtt.config import CloudSettings, EnvoySettings, PollingSettings, Settings
from envoy2mqtt.envoy import endpoints
from envoy2mqtt.logging import setup_logging
from envoy2mqtt.mqtt.publisher import Publisher
from envoy2mqtt.mqtt.topics import Topics
from envoy2mqtt.poller import EnvoyPoller
from envoy2mqtt.simulator import Simulator, SimulatorConfig

HA_UPDATE_INTERVAL = 60.0
PATHS: dict[str, list[tuple[str, dict[str, int]]]] = {}  # serial -> (cycle, requests by path)


@dataclass
class Row:
    name: str
    firmware: str
    kind: str
    system: int  # requests of the lightest minute (a system cycle alone)
    device: int  # what the heaviest minute adds (the 5-minute reads)
    ours_per_hour: float
    pyenphase_update: int | None
    pyenphase_per_hour: float | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.pyenphase_per_hour:
            return None
        return self.ours_per_hour / self.pyenphase_per_hour


def hardware_kind(poller: EnvoyPoller) -> str:
    features = poller.features
    assert features is not None
    parts = ["metered" if features.metered else "unmetered"]
    if features.ct_meters:
        parts.append(f"{features.phase_count}ph CTs")
    if features.iq_batteries:
        parts.append("IQ battery")
    if features.acb:
        parts.append("ACB")
    parts.append("token" if poller.info and poller.info.auth_mode == "token" else "legacy")
    return ", ".join(parts)


async def ours(sim: Simulator, state_dir: Path, polling: PollingSettings) -> tuple[int, int, float, str]:
    token_firmware = sim.token_auth
    envoy = EnvoySettings(
        host=sim.url,
        enlighten_username=sim.enlighten_username if token_firmware else "",
        enlighten_password=sim.enlighten_password if token_firmware else "",
    )
    settings = Settings(
        state_dir=state_dir,
        polling=polling,
        enphase_cloud=CloudSettings(login_url=sim.login_url, token_url=sim.token_url, ca_file=sim.ca_file),
        envoy=[envoy],
    )
    topics = Topics(settings.mqtt.base_topic, settings.mqtt.discovery_prefix)
    clock = ManualClock()
    poller = EnvoyPoller(envoy, settings, Publisher(settings.mqtt, topics), topics, clock=clock)
    try:
        await poller.connect()
        clock.advance(polling.device_interval)  # past the probe: every body is due, as in steady state
        system_ticks = round(polling.device_interval / polling.system_interval)
        hour: Counter[str] = Counter()
        cycles: list[Counter[str]] = []
        # one hour of both cadences on virtual time, as the daemon ticks them (the device cycle moments
        # after the system one); /info is left out here and counted from the firmware check interval
        for minute in range(round(3600 / polling.system_interval)):
            sim.requests.clear()
            await poller._system_tick()
            if minute % system_ticks == 0:
                await poller._device_tick()
            if poller.failures:  # checked per tick: a later successful tick resets the count
                raise RuntimeError(f"our poll failed: {poller.last_error}")
            counts = Counter({p: n for p, n in sim.requests.items() if p != endpoints.INFO})
            hour.update(counts)
            cycles.append(counts)
            clock.advance(polling.system_interval)
        PATHS.setdefault(sim.serial, []).append(("ours: one hour", dict(hour)))
        system = min(sum(c.values()) for c in cycles)  # a minute without the 5-minute reads
        device = max(sum(c.values()) for c in cycles) - system  # what the 5-minute cycle adds
        per_hour = sum(hour.values()) + 3600 / polling.firmware_check_interval  # one /info per check
        return system, device, per_hour, hardware_kind(poller)
    finally:
        await poller.close()


async def pyenphase_update(sim: Simulator) -> int:
    from pyenphase import Envoy

    host = sim.url.split("://", 1)[1]
    envoy = Envoy(host)
    try:
        await envoy.setup()
        if sim.token_auth:
            await envoy.authenticate(token=sim.issue_token())
        else:
            await envoy.authenticate()  # pyenphase's default: the installer user
        await envoy.update()  # probes, then the first update
        sim.requests.clear()
        await envoy.update()
        PATHS.setdefault(sim.serial, []).append(("pyenphase update", dict(sim.requests)))
        return sum(sim.requests.values())
    finally:
        await envoy.close()


async def measure(name: str, config: SimulatorConfig, polling: PollingSettings) -> Row:
    async with Simulator(config) as sim:
        with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
            try:
                system, device, per_hour, kind = await ours(sim, Path(tmp), polling)
            except Exception as exc:
                return Row(name, sim.firmware, "?", 0, 0, 0.0, None, None, f"ours failed: {exc}"[:80])
        try:
            update = await pyenphase_update(sim)
        except Exception as exc:
            return Row(
                name,
                sim.firmware,
                kind,
                system,
                device,
                per_hour,
                None,
                None,
                f"pyenphase failed: {type(exc).__name__}"[:80],
            )
        return Row(
            name, sim.firmware, kind, system, device, per_hour, update, update * 3600 / HA_UPDATE_INTERVAL
        )


def table(rows: list[Row]) -> str:
    lines = [
        "| Envoy | firmware | hardware | minute | +5-min |  envoy2mqtt req/h | pyenphase update | "
        "pyenphase req/h | ratio |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else "n/a"
        py_update = str(r.pyenphase_update) if r.pyenphase_update is not None else "–"
        py_hour = f"{r.pyenphase_per_hour:.0f}" if r.pyenphase_per_hour is not None else "–"
        note = f" ({r.note})" if r.note else ""
        lines.append(
            f"| {r.name}{note} | {r.firmware} | {r.kind} | {r.system} | {r.device} | {r.ours_per_hour:.0f} | "
            f"{py_update} | {py_hour} | {ratio} |"
        )
    return "\n".join(lines)


def by_hardware(rows: list[Row]) -> str:
    groups: dict[str, list[Row]] = {}
    for r in rows:
        if r.ratio is not None:
            groups.setdefault(r.kind, []).append(r)
    lines = [
        "| hardware type | Envoys | envoy2mqtt req/h | pyenphase (HA) req/h | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, members in sorted(groups.items()):
        ours_h = sum(r.ours_per_hour for r in members) / len(members)
        theirs = sum(r.pyenphase_per_hour or 0 for r in members) / len(members)
        lines.append(f"| {kind} | {len(members)} | {ours_h:.0f} | {theirs:.0f} | {ours_h / theirs:.2f}× |")
    return "\n".join(lines)


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="two sources only (smoke test)")
    parser.add_argument("--paths", action="store_true", help="print the requests of every cycle")
    parser.add_argument("--only", nargs="*", default=None, help="capture folder or profile names")
    args = parser.parse_args()
    setup_logging("error", "json", stream=sys.stderr)
    logging.getLogger("pyenphase").setLevel(logging.CRITICAL)
    polling = PollingSettings()  # the defaults: 60 s / 300 s / firmware check every 4 h
    sources: list[tuple[str, SimulatorConfig]] = [(p, SimulatorConfig(profile=p)) for p in PROFILES]
    sources += [(c.name, SimulatorConfig(capture_dir=c)) for c in capture_folders()]
    if args.only:
        sources = [s for s in sources if s[0] in args.only]
    elif args.quick:
        sources = [s for s in sources if s[0] in ("metered-3phase-iq", "legacy-unmetered")]
    print(
        f"# envoy_load: default cadences system {polling.system_interval:.0f} s, device "
        f"{polling.device_interval:.0f} s, firmware check {polling.firmware_check_interval:.0f} s; "
        f"pyenphase update every {HA_UPDATE_INTERVAL:.0f} s; {load()}"
    )
    rows = [await measure(name, config, polling) for name, config in sources]
    print(table(rows))
    if args.paths:
        for serial, cycles in PATHS.items():
            for cycle, paths in cycles:
                print(f"  {serial} {cycle}: {paths}")
    print()
    print("Requests per hour at default settings per hardware type (mean over the Envoys of that type):")
    print(by_hardware(rows))
    ratios = [r.ratio for r in rows if r.ratio is not None]
    if ratios:
        print(f"\nworst ratio {max(ratios):.2f}× (target ≤ 0.50×), best {min(ratios):.2f}×; {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
