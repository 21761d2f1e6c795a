"""pyenphase and envoy2mqtt read every shared capture through our simulator and agree.

For each folder of ``../shared/envoy-captures`` the simulator serves the capture over real HTTP (https with
a token for firmware >= 7, http with digest before). pyenphase (test-only dependency) reads it the way Home
Assistant does (``Envoy("127.0.0.1:PORT")``: it builds ``https://{host}/...`` and falls back to http), and
``envoy2mqtt.check.check_envoy`` reads it with our own EnvoyClient, probe and normalizers. Compared:
production, consumption and net power and energies (today, last 7 days, lifetime), the microinverters and
each one's power, per-phase power, battery state of charge and available energy.

pyenphase publishes integers; we keep up to 3 decimals, so "equal" means ``|ours - theirs| <= 0.5``.
Every other difference is listed here and asserted value by value in ``DIFFERENCES`` / the tests below, so
that it cannot change silently (a fix on either side makes the test fail and this table must be updated).

========================================  ================================  ============  ===============  ====
capture                                   value                             pyenphase     envoy2mqtt       why
========================================  ================================  ============  ===============  ====
every capture with a net-consumption CT   net_energy_today / last_7_days    0             cons - prod      (1)
3.7.0                                     everything                        probe fails   HTML page        (2)
7.3.466_metered_disabled_cts              production today / last 7 days    4425/111093   absent           (3)
8.2.4264_metered_noct                     production today / last 7 days    70/1521       absent           (3)
8.3.5433_tot_is_net_cons                  production today / last 7 days    14405465      null             (4)
8.3.5433_tot_is_net_cons                  consumption today / last 7 days   5649402       null             (4)
8.3.5433_tot_is_net_cons                  net today / last 7 days           0             null             (4)
8.3.5433_tot_is_net_cons                  consumption power                 785           785.906          (5)
8.3.5433_tot_is_net_cons                  consumption lifetime              20054867      20054867.535     (5)
8.2.4382_ACB                              microinverters                    20            17               (6)
8.2.4345_with_device_data                 battery soc / energy available    0 / 0         absent           (7)
4.2.33, 7.3.130_no_consumption,           per-phase power                   none          l1, l2           (8)
8.2.127_with_3cts_and_battery_split
========================================  ================================  ============  ===============  ====

(1) The Envoy sends 0 in the net-consumption section's ``whToday`` / ``whLastSevenDays`` on every metered
    firmware; pyenphase passes the 0 on, we derive consumption - production (quirks.derive_net_energy).
(2) Firmware 3.7.0 has no JSON production endpoint (``/production.json`` is an HTML 404, ``/production``
    an HTML page): pyenphase raises ``EnvoyProbeFailed``; we read the four values of the HTML page
    (quirks.production_from_html: power, today, last 7 days, lifetime, three significant figures) and
    there are no inverters (no per-inverter endpoint on this firmware).
(3) Metered Envoy without an enabled production CT: pyenphase reads ``whToday`` / ``whLastSevenDays`` of
    the eim production section although its ``activeCount`` is 0 (7.3.466: stale values of the disabled
    CT; 8.2.4264: 70 / 1521 Wh next to 32 MWh of lifetime). Our production comes from the ``inverters``
    section, which has no daily counters, so the keys are not announced at all.
(4) Firmware 8.3.5433 copies ``whLifetime`` into ``whToday`` and ``whLastSevenDays`` (14 MWh "today");
    we publish null with a problem line (quirks.daily_counters_are_lifetime_copies).
(5) Same firmware: total-consumption carries the net values; both repair it as net + production.
    pyenphase adds its rounded integers (428 + 357 W, 5649402 + 14405465 Wh), we add the exact values
    (428.414 + 357.492 W, 5649402.426 + 14405465.109 Wh), so the sums differ by more than the rounding.
(6) pyenphase (``v2_acb_mode``, its default) lists the 3 AC Batteries of ``/api/v1/production/inverters``
    (devType 11) as inverters; we publish them as ``battery/<serial>`` topics, not as inverters.
(7) ``/ivp/ensemble/secctrl`` answers on this IQ Gateway but ``/ivp/ensemble/inventory`` has no ENCHARGE
    device: pyenphase reports a battery aggregate of 0 % and 0 Wh, we announce no battery at all.
(8) Split-phase sites whose ``production.json`` has no ``lines[]``: pyenphase reads per-phase values only
    from ``lines[]``; we fall back to the channels of the matching CT in ``/ivp/meters/readings``.

The whole module runs in a few seconds (pyenphase's retries never trigger against the simulator).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pyenphase import Envoy
from pyenphase.exceptions import EnvoyProbeFailed
from pyenphase.models.envoy import EnvoyData

from envoy2mqtt.check import check_envoy
from envoy2mqtt.config import CloudSettings, EnvoySettings, Settings
from envoy2mqtt.simulator import Simulator, SimulatorConfig
from tests.conftest import capture_params, require_capture

pytestmark = pytest.mark.timeout(120)

ABSENT = "absent"  # the key is not in our payload (not announced)
ROUNDING = 0.5

ENERGY_KINDS = ("power", "energy_today", "energy_last_7_days", "energy_lifetime")
PYENPHASE_ATTRS = {
    "power": "watts_now",
    "energy_today": "watt_hours_today",
    "energy_last_7_days": "watt_hours_last_7_days",
    "energy_lifetime": "watt_hours_lifetime",
}
SIDES = {
    "production": "system_production",
    "consumption": "system_consumption",
    "net": "system_net_consumption",
}
COMPARED = (
    *(f"{side}_{kind}" for side in SIDES for kind in ENERGY_KINDS),
    "battery_soc",
    "battery_energy_available",
    "inverters",
)

# (capture, value) -> (pyenphase, envoy2mqtt): the documented differences of the module docstring.
DIFFERENCES: dict[tuple[str, str], tuple[Any, Any]] = {
    ("7.3.466_metered_disabled_cts", "production_energy_today"): (4425, ABSENT),
    ("7.3.466_metered_disabled_cts", "production_energy_last_7_days"): (111093, ABSENT),
    ("8.2.4264_metered_noct", "production_energy_today"): (70, ABSENT),
    ("8.2.4264_metered_noct", "production_energy_last_7_days"): (1521, ABSENT),
    ("8.3.5433_tot_is_net_cons", "production_energy_today"): (14405465, None),
    ("8.3.5433_tot_is_net_cons", "production_energy_last_7_days"): (14405465, None),
    ("8.3.5433_tot_is_net_cons", "consumption_energy_today"): (5649402, None),
    ("8.3.5433_tot_is_net_cons", "consumption_energy_last_7_days"): (5649402, None),
    ("8.3.5433_tot_is_net_cons", "net_energy_today"): (0, None),
    ("8.3.5433_tot_is_net_cons", "net_energy_last_7_days"): (0, None),
    ("8.3.5433_tot_is_net_cons", "consumption_power"): (785, 785.906),
    ("8.3.5433_tot_is_net_cons", "consumption_energy_lifetime"): (20054867, 20054867.535),
    ("8.2.4382_ACB", "inverters"): (20, 17),
    ("8.2.4345_with_device_data", "battery_soc"): (0, ABSENT),
    ("8.2.4345_with_device_data", "battery_energy_available"): (0, ABSENT),
}
PROBE_FAILS = {"3.7.0"}
OUR_PHASES_ONLY = {"4.2.33", "7.3.130_no_consumption", "8.2.127_with_3cts_and_battery_split"}
PHASE_SIDES = {
    "production_power": "system_production_phases",
    "consumption_power": "system_consumption_phases",
    "net_power": "system_net_consumption_phases",
}


async def read_ours(sim: Simulator, state_dir: Path) -> dict[str, Any]:
    """The `envoy2mqtt check --json` document: our client, probe and normalizers against the simulator."""
    envoy = EnvoySettings(host=sim.url, token=sim.issue_token() if sim.token_auth else "")
    settings = Settings(
        state_dir=state_dir,
        enphase_cloud=CloudSettings(login_url=sim.login_url, token_url=sim.token_url, ca_file=sim.ca_file),
        envoy=[envoy],
    )
    return await check_envoy(envoy, settings)


async def read_pyenphase(sim: Simulator) -> EnvoyData:
    """pyenphase against the simulator: host:port, https then http, a token or the installer account."""
    envoy = Envoy(sim.url.split("://", 1)[1])
    try:
        await envoy.setup()
        if sim.token_auth:
            await envoy.authenticate(token=sim.issue_token())
        else:
            await envoy.authenticate(username="installer")
        return await envoy.update()
    finally:
        await envoy.close()


def their_values(data: EnvoyData) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for side, attr in SIDES.items():
        section = getattr(data, attr)
        for kind, field in PYENPHASE_ATTRS.items():
            out[f"{side}_{kind}"] = None if section is None else getattr(section, field)
    battery: Any = data.battery_aggregate or data.encharge_aggregate
    if battery is not None:
        out["battery_soc"] = battery.state_of_charge
        out["battery_energy_available"] = battery.available_energy
    elif data.acb_power is not None:
        out["battery_soc"] = data.acb_power.state_of_charge
        out["battery_energy_available"] = data.acb_power.charge_wh
    else:
        out["battery_soc"] = out["battery_energy_available"] = None
    out["inverters"] = len(data.inverters or {})
    return out


def our_values(ours: dict[str, Any]) -> dict[str, Any]:
    system = ours["system"]
    out = {key: system.get(key, ABSENT) for key in COMPARED if key != "inverters"}
    out["inverters"] = len(ours["inverters"])
    return out


def agree(theirs: Any, mine: Any) -> bool:
    """Equal within pyenphase's integer rounding; "nothing" on both sides agrees too."""
    if theirs is None or mine in (None, ABSENT):
        return theirs is None and mine in (None, ABSENT)
    return bool(abs(float(mine) - float(theirs)) <= ROUNDING)


def derived_net(ours: dict[str, Any], kind: str) -> Any:
    system = ours["system"]
    consumption, production = system.get(f"consumption_{kind}"), system.get(f"production_{kind}")
    if consumption is None or production is None:
        return None
    return consumption - production


@pytest.mark.parametrize("folder", capture_params())
async def test_pyenphase_agrees(folder: Path, tmp_path: Path) -> None:
    name = folder.name
    async with Simulator(SimulatorConfig(capture_dir=folder)) as sim:
        ours = await read_ours(sim, tmp_path)
        if name in PROBE_FAILS:
            with pytest.raises(EnvoyProbeFailed):
                await read_pyenphase(sim)
            assert ours["system"] == {
                "production_power": 6630,
                "production_energy_today": 53600,
                "production_energy_last_7_days": 405000,
                "production_energy_lifetime": 133000000,
            }
            assert ours["inverters"] == {}
            assert ours["gateway"]["serial"] == sim.serial
            return
        data = await read_pyenphase(sim)

    theirs, mine = their_values(data), our_values(ours)
    mismatches: list[str] = []
    for key in COMPARED:
        documented = DIFFERENCES.get((name, key))
        if documented is not None:
            expected_theirs, expected_mine = documented
            if not (agree(expected_theirs, theirs[key]) and _same(expected_mine, mine[key])):
                mismatches.append(f"{key}: documented {documented}, got ({theirs[key]!r}, {mine[key]!r})")
            continue
        if key in ("net_energy_today", "net_energy_last_7_days") and theirs[key] == 0 and mine[key] != 0:
            # (1): pyenphase passes the Envoy's 0 on, we derive consumption - production
            kind = key.removeprefix("net_")
            if not _same(derived_net(ours, kind), mine[key]) or mine[key] is None:
                mismatches.append(f"{key}: ours {mine[key]!r} is not consumption - production")
            continue
        if not agree(theirs[key], mine[key]):
            mismatches.append(f"{key}: pyenphase {theirs[key]!r}, envoy2mqtt {mine[key]!r}")
    assert not mismatches, "\n".join(mismatches)

    # each microinverter: same serials (pyenphase's extra ones are our AC Batteries) and the same power
    their_inverters = data.inverters or {}
    acbs = {serial for serial, battery in ours["batteries"].items() if battery.get("kind") == "acb"}
    assert set(ours["inverters"]) <= set(their_inverters)
    extra = set(their_inverters) - set(ours["inverters"])
    assert extra <= acbs, extra
    assert bool(extra) == ((name, "inverters") in DIFFERENCES)
    for serial, payload in ours["inverters"].items():
        assert agree(their_inverters[serial].last_report_watts, payload["power"]), serial

    # per-phase power where pyenphase has it; ours alone only where production.json has no lines[]
    our_phases = ours["system"].get("phases") or {}
    their_phases = {key: getattr(data, attr) or {} for key, attr in PHASE_SIDES.items()}
    if not any(their_phases.values()):
        assert bool(our_phases) == (name in OUR_PHASES_ONLY)
        return
    assert name not in OUR_PHASES_ONLY
    for key, phases in their_phases.items():
        for phase, value in phases.items():
            ours_value = our_phases[str(phase).lower()][key]
            assert value is not None, (key, phase)
            assert agree(value.watts_now, ours_value), (key, phase)


def _same(expected: Any, actual: Any) -> bool:
    if expected in (None, ABSENT) or actual in (None, ABSENT):
        return bool(expected == actual)
    return bool(abs(float(expected) - float(actual)) < 1e-6)


async def test_net_energy_is_derived_where_pyenphase_reports_zero(tmp_path: Path) -> None:
    """Difference (1) by hand on 7.3.517: 24292.104 - 18633.461 Wh today, pyenphase says 0."""
    async with Simulator(SimulatorConfig(capture_dir=require_capture("7.3.517"))) as sim:
        ours = await read_ours(sim, tmp_path)
        data = await read_pyenphase(sim)
    assert data.system_net_consumption is not None
    assert data.system_net_consumption.watt_hours_today == 0
    assert data.system_net_consumption.watt_hours_last_7_days == 0
    assert ours["system"]["net_energy_today"] == pytest.approx(24292.104 - 18633.461, abs=1e-6)
    assert ours["system"]["net_energy_last_7_days"] == pytest.approx(852.104 - 218714.461, abs=1e-6)


async def test_acb_batteries_are_pyenphase_inverters(tmp_path: Path) -> None:
    """Difference (6): the 3 devType-11 rows are pyenphase inverters and our ACB battery topics."""
    async with Simulator(SimulatorConfig(capture_dir=require_capture("8.2.4382_ACB"))) as sim:
        ours = await read_ours(sim, tmp_path)
        data = await read_pyenphase(sim)
    extra = set(data.inverters or {}) - set(ours["inverters"])
    assert len(extra) == 3
    assert all(ours["batteries"][serial]["kind"] == "acb" for serial in extra)
    assert data.acb_power is not None
    assert data.acb_power.batteries == 3
