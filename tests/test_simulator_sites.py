"""Generated simulator sites, live mode and scale, read over real HTTP/TLS like a client would."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from envoy2mqtt.clock import ManualClock
from envoy2mqtt.simulator import PROFILES, Simulator, SimulatorConfig
from tests.conftest import require_capture


def _no_verify() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Reader:
    """GETs JSON from a running simulator with the right credentials for its firmware."""

    def __init__(self, sim: Simulator, client: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.client = client

    async def get(self, path: str, status: int = 200) -> Any:
        async with self.client.get(f"{self.sim.url}{path}") as response:
            assert response.status == status, path
            if status == 200 and path not in ("/info", "/info.xml"):
                assert response.content_type == "application/json", path
                return await response.json()
            return await response.text()


@asynccontextmanager
async def running(config: SimulatorConfig, clock: ManualClock | None = None) -> AsyncIterator[Reader]:
    async with Simulator(config, clock or ManualClock()) as sim:
        headers = {"Authorization": f"Bearer {sim.issue_token()}"} if sim.token_auth else {}
        middlewares = () if sim.token_auth else (aiohttp.DigestAuthMiddleware("envoy", sim.serial[-6:]),)
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=_no_verify()), headers=headers, middlewares=middlewares
        ) as client:
            yield Reader(sim, client)


def _by_type(entries: list[dict[str, Any]], measurement: str) -> dict[str, Any]:
    return next(e for e in entries if e.get("measurementType") == measurement)


def _close(a: float, b: float, tolerance: float = 0.02, floor: float = 2.0) -> bool:
    return abs(a - b) <= max(floor, tolerance * max(abs(a), abs(b)))


async def _check_common(reader: Reader, inverter_count: int) -> dict[str, Any]:
    sim = reader.sim
    info = await reader.get("/info")
    assert f"<sn>{sim.serial}</sn>" in info
    assert f"<software>{sim.firmware}</software>" in info
    assert ("<web-tokens>true</web-tokens>" in info) == sim.token_auth

    rows = await reader.get("/api/v1/production/inverters")
    pcu_rows = [r for r in rows if r["devType"] == 1]
    assert len(pcu_rows) == inverter_count
    assert len({r["serialNumber"] for r in rows}) == len(rows)
    assert all(0 <= r["lastReportWatts"] <= r["maxReportWatts"] for r in pcu_rows)

    production = await reader.get("/production.json?details=1")
    inverters = next(e for e in production["production"] if e["type"] == "inverters")
    assert inverters["activeCount"] == inverter_count
    assert inverters["wNow"] == sum(r["lastReportWatts"] for r in pcu_rows)
    assert inverters["wNow"] > 0  # static sites stand at half past noon

    inventory = await reader.get("/inventory.json")
    pcus = next(g for g in inventory if g["type"] == "PCU")["devices"]
    assert sorted(d["serial_num"] for d in pcus) == sorted(r["serialNumber"] for r in pcu_rows)
    assert all(isinstance(d["installed"], str) and isinstance(d["last_rpt_date"], str) for d in pcus)

    v1 = await reader.get("/api/v1/production")
    assert v1["wattHoursLifetime"] == inverters["whLifetime"]
    assert 0 < v1["wattHoursToday"] <= v1["wattHoursSevenDays"] < v1["wattHoursLifetime"]

    home = await reader.get("/home.json")
    assert home["timezone"]
    assert home["comm"]["pcu"]["num"] == inverter_count
    await reader.get("/no/such/thing", status=404)
    return production


async def _check_metered(reader: Reader, production: dict[str, Any], phases: int) -> dict[str, float]:
    eim = _by_type(production["production"], "production")
    total = _by_type(production["consumption"], "total-consumption")
    net = _by_type(production["consumption"], "net-consumption")
    inverters = next(e for e in production["production"] if e["type"] == "inverters")
    for entry in (eim, total, net):
        assert entry["activeCount"] == 1
        assert len(entry["lines"]) == phases
        assert _close(sum(line["wNow"] for line in entry["lines"]), entry["wNow"], floor=0.01)
        assert _close(sum(line["whLifetime"] for line in entry["lines"]), entry["whLifetime"], floor=0.01)
        assert _close(sum(line["rmsVoltage"] for line in entry["lines"]), entry["rmsVoltage"], floor=0.01)
    # the CT and the inverters' last 5-minute reports agree roughly
    assert _close(eim["wNow"], inverters["wNow"], tolerance=0.15)
    assert _close(eim["whLifetime"], inverters["whLifetime"], floor=1.0)
    assert net["whToday"] == 0
    assert net["whLastSevenDays"] == 0
    assert 0 < eim["whToday"] <= eim["whLastSevenDays"] + eim["whToday"]

    meters = await reader.get("/ivp/meters")
    assert all(m["state"] == "enabled" and m["phaseCount"] == phases for m in meters)
    kinds = {m["eid"]: m["measurementType"] for m in meters}
    readings = {kinds[r["eid"]]: r for r in await reader.get("/ivp/meters/readings")}
    assert set(readings) == set(kinds.values())
    for reading in readings.values():
        assert len(reading["channels"]) == phases
        assert _close(sum(c["activePower"] for c in reading["channels"]), reading["activePower"], floor=0.01)
        assert _close(sum(c["voltage"] for c in reading["channels"]), reading["voltage"], floor=0.01)
    assert _close(readings["production"]["activePower"], eim["wNow"], floor=0.01)
    assert _close(readings["production"]["actEnergyDlvd"], eim["whLifetime"], floor=0.01)
    assert _close(readings["net-consumption"]["activePower"], net["wNow"], floor=0.01)
    net_ct = readings["net-consumption"]
    assert _close(net_ct["actEnergyDlvd"] - net_ct["actEnergyRcvd"], net["whLifetime"], floor=0.1)

    v1 = await reader.get("/api/v1/production")
    assert v1["wattsNow"] == round(eim["wNow"])
    storage_w = (
        readings["storage"]["activePower"] if "storage" in readings else production["storage"][0]["wNow"]
    )
    # grid = load - production - battery (battery + discharging)
    assert _close(net["wNow"], total["wNow"] - eim["wNow"] - storage_w, floor=1.0)
    return {"storage_w": storage_w}


async def test_metered_3phase_iq_profile() -> None:
    async with running(SimulatorConfig(profile="metered-3phase-iq")) as reader:
        sim = reader.sim
        assert sim.url.startswith("https://")
        assert sim.firmware.startswith("D8.2.")
        production = await _check_common(reader, 24)
        figures = await _check_metered(reader, production, phases=3)
        assert production["storage"][0]["activeCount"] == 0

        ensemble = await reader.get("/ivp/ensemble/inventory")
        assert [g["type"] for g in ensemble] == ["ENCHARGE"]
        batteries = ensemble[0]["devices"]
        assert len(batteries) == 2
        power = await reader.get("/ivp/ensemble/power")
        assert list(power) == ["devices:"]
        assert {d["serial_num"] for d in power["devices:"]} == {b["serial_num"] for b in batteries}
        assert _close(
            sum(d["real_power_mw"] for d in power["devices:"]) / 1000, figures["storage_w"], floor=1.0
        )
        assert figures["storage_w"] < 0  # charging from the noon surplus
        secctrl = await reader.get("/ivp/ensemble/secctrl")
        assert secctrl["ENC_agg_soc"] == batteries[0]["percentFull"] == power["devices:"][0]["soc"]
        assert secctrl["Max_energy"] == sum(b["encharge_capacity"] for b in batteries)
        assert _close(
            secctrl["ENC_agg_avail_energy"], secctrl["Max_energy"] * secctrl["ENC_agg_soc"] / 100, 0.02, 60
        )

        device_data = await reader.get("/ivp/pdm/device_data")
        pcus = [v for v in device_data.values() if isinstance(v, dict) and v["devName"] == "pcu"]
        assert len(pcus) == device_data["deviceCount"] == 24
        rows = {r["serialNumber"]: r for r in await reader.get("/api/v1/production/inverters")}
        for pcu in pcus:
            channel = pcu["channels"][0]
            assert channel["watts"]["now"] == rows[pcu["sn"]]["lastReportWatts"]
            assert channel["lastReading"]["endDate"] == rows[pcu["sn"]]["lastReportDate"]
        home = await reader.get("/home.json")
        assert home["timezone"] == "Europe/Amsterdam"


async def test_metered_1phase_acb_profile() -> None:
    async with running(SimulatorConfig(profile="metered-1phase-acb")) as reader:
        production = await _check_common(reader, 12)
        await _check_metered(reader, production, phases=1)
        storage = production["storage"][0]
        assert storage["type"] == "acb"
        assert storage["activeCount"] == 1
        assert 0 <= storage["percentFull"] <= 100
        assert storage["state"] in ("charging", "discharging", "idle")
        meters = await reader.get("/ivp/meters")
        assert {m["measurementType"] for m in meters} == {"production", "net-consumption"}
        assert all(m["phaseMode"] == "single" for m in meters)
        inventory = await reader.get("/inventory.json")
        acbs = next(g for g in inventory if g["type"] == "ACB")["devices"]
        assert len(acbs) == 1
        assert acbs[0]["dev_type"] == 11
        assert acbs[0]["percentFull"] == storage["percentFull"]
        rows = await reader.get("/api/v1/production/inverters")
        assert [r["serialNumber"] for r in rows if r["devType"] == 11] == [acbs[0]["serial_num"]]
        assert await reader.get("/ivp/ensemble/inventory") == []
        assert await reader.get("/ivp/ensemble/power") == {"devices:": []}


async def test_legacy_unmetered_profile() -> None:
    async with running(SimulatorConfig(profile="legacy-unmetered")) as reader:
        sim = reader.sim
        assert sim.url.startswith("http://")
        assert sim.firmware == "D5.0.62"
        production = await _check_common(reader, 10)
        assert [e["type"] for e in production["production"]] == ["inverters"]
        assert "consumption" not in production
        assert await reader.get("/ivp/meters") == []
        v1 = await reader.get("/api/v1/production")
        assert v1["wattsNow"] == production["production"][0]["wNow"]
        await reader.get("/ivp/pdm/device_data", status=404)
        await reader.get("/ivp/ensemble/inventory", status=404)
        info = await reader.get("/info")
        assert "<imeter>false</imeter>" in info
    # digest protects the inverters; production is open
    async with (
        Simulator(SimulatorConfig(profile="legacy-unmetered")) as sim,
        aiohttp.ClientSession() as client,
    ):
        async with client.get(f"{sim.url}/api/v1/production/inverters") as response:
            assert response.status == 401
        async with client.get(f"{sim.url}/api/v1/production") as response:
            assert response.status == 200


async def test_profiles_have_stable_serials_and_serial_override() -> None:
    serials = set()
    for profile in PROFILES:
        async with (
            Simulator(SimulatorConfig(profile=profile)) as first,
            Simulator(SimulatorConfig(profile=profile)) as second,
        ):
            assert first.serial == second.serial
            serials.add(first.serial)
    assert len(serials) == len(PROFILES)
    async with running(SimulatorConfig(serial="999988887777")) as reader:
        assert reader.sim.serial == "999988887777"
        assert "<sn>999988887777</sn>" in await reader.get("/info")


# ------------------------------------------------------------------------------------------ live


async def test_live_generated_site_moves_with_simulated_time() -> None:
    clock = ManualClock()  # 2026-05-28 22:26 in Amsterdam: night, the battery covers the load
    config = SimulatorConfig(profile="metered-3phase-iq", live=True, time_scale=60.0)
    async with running(config, clock) as reader:
        before = await reader.get("/production.json?details=1")
        soc_before = (await reader.get("/ivp/ensemble/secctrl"))["ENC_agg_soc"]
        clock.advance(5)  # five simulated minutes
        after = await reader.get("/production.json?details=1")
        total_before = _by_type(before["consumption"], "total-consumption")
        total_after = _by_type(after["consumption"], "total-consumption")
        assert total_after["wNow"] != total_before["wNow"]
        assert total_after["whLifetime"] > total_before["whLifetime"]
        assert total_after["readingTime"] == total_before["readingTime"] + 300

        clock.advance(120)  # two simulated hours of discharging
        assert (await reader.get("/ivp/ensemble/secctrl"))["ENC_agg_soc"] < soc_before

        eim_night = _by_type(after["production"], "production")
        assert eim_night["wNow"] == 0
        clock.advance(14 * 60)  # to mid-morning: the sun is up and today's counter restarted at midnight
        morning = await reader.get("/production.json?details=1")
        eim_morning = _by_type(morning["production"], "production")
        assert eim_morning["wNow"] > 0
        assert eim_morning["whLifetime"] > eim_night["whLifetime"]
        assert 0 < eim_morning["whToday"] < eim_night["whToday"]
        assert eim_morning["whLifetime"] - eim_night["whLifetime"] == pytest.approx(
            eim_morning["whToday"], rel=0.01
        )
        home = await reader.get("/home.json")
        assert home["current_date"] == "05/29/2026"


async def test_live_capture_moves_consistently() -> None:
    clock = ManualClock()
    config = SimulatorConfig(capture_dir=require_capture("8.3.5289_modGone"), live=True)
    async with running(config, clock) as reader:
        first = await reader.get("/production.json?details=1")
        first_readings = await reader.get("/ivp/meters/readings")
        clock.advance(240)
        second = await reader.get("/production.json?details=1")
        second_readings = await reader.get("/ivp/meters/readings")
    eim1 = _by_type(first["production"], "production")
    eim2 = _by_type(second["production"], "production")
    assert eim1["wNow"] != eim2["wNow"]
    assert eim2["whLifetime"] > eim1["whLifetime"]
    assert eim2["readingTime"] == eim1["readingTime"] + 240
    assert second_readings[0]["actEnergyDlvd"] >= first_readings[0]["actEnergyDlvd"]
    assert second_readings[0]["activePower"] != first_readings[0]["activePower"]


async def test_static_capture_is_served_verbatim_twice() -> None:
    folder = require_capture("8.3.5289_modGone")
    clock = ManualClock()
    async with running(SimulatorConfig(capture_dir=folder), clock) as reader:
        first = await reader.get("/production.json?details=1")
        clock.advance(3600)
        assert await reader.get("/production.json?details=1") == first


# ------------------------------------------------------------------------------------------ scale


async def test_scale_300_generated() -> None:
    async with running(SimulatorConfig(profile="metered-3phase-iq", scale=300)) as reader:
        production = await _check_common(reader, 300)
        await _check_metered(reader, production, phases=3)
        device_data = await reader.get("/ivp/pdm/device_data")
        assert device_data["deviceCount"] == 300
        assert device_data["deviceDataLimit"] == 50
        assert sum(1 for v in device_data.values() if isinstance(v, dict)) == 50


async def test_scale_replicates_capture_rows() -> None:
    folder = require_capture("8.2.4345_with_device_data")
    async with running(SimulatorConfig(capture_dir=folder, scale=40)) as reader:
        rows = await reader.get("/api/v1/production/inverters")
        pcu_rows = [r for r in rows if r.get("devType", 1) == 1]
        assert len(pcu_rows) == 40
        assert len({r["serialNumber"] for r in pcu_rows}) == 40
        production = await reader.get("/production.json?details=1")
        inverters = next(e for e in production["production"] if e["type"] == "inverters")
        assert inverters["activeCount"] == 40
        assert inverters["wNow"] == sum(r["lastReportWatts"] for r in pcu_rows)
        eim = _by_type(production["production"], "production")
        total = _by_type(production["consumption"], "total-consumption")
        net = _by_type(production["consumption"], "net-consumption")
        assert _close(net["wNow"], total["wNow"] - eim["wNow"], floor=0.01)
        device_data = await reader.get("/ivp/pdm/device_data")
        pcus = [v for v in device_data.values() if isinstance(v, dict) and v.get("devName") == "pcu"]
        assert len(pcus) == 40
        assert device_data["deviceCount"] >= 40
