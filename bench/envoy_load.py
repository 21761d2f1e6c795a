"""Requests per hour each Envoy sees: envoy2mqtt at its default cadences vs pyenphase as Home Assistant uses it.

For every shared capture and every generated profile, against the built-in simulator (its `requests`
counter): one real steady-state system cycle and one real device cycle of our `EnvoyPoller`, and one
steady-state `update()` of pyenphase. Requests per hour:

  envoy2mqtt = system cycle × 3600/system_interval + device cycle × 3600/device_interval
               + /info every firmware_check_interval (token renewal only talks to the cloud)
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
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PROFILES, capture_folders, load

from envoy2mqtt.config import CloudSettings, EnvoySettings, PollingSettings, Settings
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
    system: int  # requests of one system cycle
    device: int  # requests of one device cycle
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
    poller = EnvoyPoller(envoy, settings, Publisher(settings.mqtt, topics), topics)
    try:
        await poller._connect()
        counts = []
        for tick in (poller._system_tick, poller._system_tick, poller._device_tick, poller._device_tick):
            sim.requests.clear()
            await tick()
            counts.append(sum(sim.requests.values()))
            if poller.failures:  # checked per tick: a later successful tick resets the count
                raise RuntimeError(f"our {tick.__name__} failed: {poller.last_error}")
            PATHS.setdefault(sim.serial, []).append(("ours " + tick.__name__, dict(sim.requests)))
        system, device = counts[1], counts[3]  # steady state: the second of each
        per_hour = (
            system * 3600 / polling.system_interval
            + device * 3600 / polling.device_interval
            + 3600 / polling.firmware_check_interval  # one /info per firmware check
        )
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
        "| Envoy | firmware | hardware | sys cycle | dev cycle | envoy2mqtt req/h | pyenphase update | "
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
