"""One focused test per quirk function of envoy2mqtt.normalize.quirks, each also on its capture."""

from __future__ import annotations

import json

import pytest

from envoy2mqtt.model import EnvoyInfo
from envoy2mqtt.normalize import quirks
from tests.conftest import require_capture


def info(version: tuple[int, ...], imeter: bool | None = True) -> EnvoyInfo:
    return EnvoyInfo("1", None, "D" + ".".join(map(str, version)), version, imeter, True)


def body(capture: str, name: str) -> object:
    return json.loads((require_capture(capture) / name).read_text())


def test_consumption_sections_by_measurement_type_not_order() -> None:
    net = {"measurementType": "net-consumption", "wNow": 1}
    total = {"measurementType": "total-consumption", "wNow": 2}
    assert quirks.find_consumption_sections({"consumption": [net, total]}) == (total, net)


def test_consumption_sections_fall_back_to_index_order() -> None:
    first, second = {"wNow": 1}, {"wNow": 2}
    assert quirks.find_consumption_sections({"consumption": [first, second]}) == (first, second)
    total, net = quirks.find_consumption_sections(body("4.2.33", "production.json"))
    assert total is not None
    assert net is None


def test_total_is_net_detected_only_on_new_firmware() -> None:
    same = {"whLifetime": 10.0, "wNow": 2.0}
    assert quirks.total_consumption_is_net(info((8, 3, 5433)), same, dict(same))
    assert not quirks.total_consumption_is_net(info((8, 3, 5289)), same, dict(same))
    assert not quirks.total_consumption_is_net(info((8, 3, 5433)), same, {"whLifetime": 10.0, "wNow": 3.0})
    total, net = quirks.find_consumption_sections(
        body("8.3.5433_tot_is_net_cons", "production.json_details_1")
    )
    assert quirks.total_consumption_is_net(info((8, 3, 5433)), total, net)


def test_repair_total_consumption() -> None:
    assert quirks.repair_total_consumption(5649402.426, 14405465.109) == pytest.approx(20054867.535)
    assert quirks.repair_total_consumption(None, 1.0) is None
    assert quirks.repair_total_consumption(1.0, None) is None


def test_daily_counters_that_copy_lifetime() -> None:
    assert quirks.daily_counters_are_lifetime_copies(14405465.109, 14405465.109, 14405465.109)
    assert not quirks.daily_counters_are_lifetime_copies(500.0, 0.0, 500.0)  # a real first day
    assert not quirks.daily_counters_are_lifetime_copies(0.0, 0.0, 0.0)
    assert not quirks.daily_counters_are_lifetime_copies(None, 1.0, 1.0)


def test_inverters_section_fallback() -> None:
    section = quirks.production_from_inverters_section(body("8.2.4264_metered_noct", "production.json"))
    assert section is not None
    assert section["whLifetime"] == 32465106
    assert (
        quirks.production_from_inverters_section({"production": [{"type": "inverters", "activeCount": 0}]})
        is None
    )


def test_v1_production_stalled() -> None:
    assert quirks.api_v1_production_is_stalled(info((8, 2, 4264)), production_ct=False)
    assert not quirks.api_v1_production_is_stalled(info((8, 2, 4264)), production_ct=True)
    assert not quirks.api_v1_production_is_stalled(info((8, 2, 4263)), production_ct=False)
    assert not quirks.api_v1_production_is_stalled(info((8, 2, 4264), imeter=False), production_ct=False)


def test_v1_production_broken() -> None:
    assert quirks.api_v1_production_is_broken(body("7.3.466_metered_disabled_cts", "api_v1_production"))
    assert not quirks.api_v1_production_is_broken(body("7.6.175_standard", "api_v1_production"))
    assert quirks.api_v1_production_is_broken("<html>")


def test_boot_zero_production_only_on_fw_3() -> None:
    assert quirks.is_boot_zero_production(info((3, 9, 36), None), 0, 0, 0)
    assert not quirks.is_boot_zero_production(info((3, 9, 36), None), 0, 0, 14578520)
    assert not quirks.is_boot_zero_production(info((7, 6, 175), False), 0, 0, 0)


def test_derived_net_energy() -> None:
    assert quirks.derive_net_energy(24292.104, 18633.461) == pytest.approx(5658.643)
    assert quirks.derive_net_energy(None, 1.0) is None


def test_uint32_wrapped_watts() -> None:
    assert quirks.unwrap_uint32_watts(4294967292) == -4
    assert quirks.unwrap_uint32_watts(2**31) == 2**31 - 2**32
    assert quirks.unwrap_uint32_watts(2**31 - 1) == 2**31 - 1
    assert quirks.unwrap_uint32_watts(255) == 255
    assert quirks.unwrap_uint32_watts(None) is None
    assert quirks.unwrap_uint32_watts(2**40) == 2**40  # not a uint32 at all: left alone
    data = body("8.3.5169_ACB_inventory", "ivp_pdm_device_data")
    assert isinstance(data, dict)
    assert quirks.unwrap_uint32_watts(data["704643328"]["channels"][0]["watts"]["now"]) == -4


def test_milli_units() -> None:
    assert quirks.from_milli(-136000) == -136
    assert quirks.from_milli(238944) == pytest.approx(238.944)
    assert quirks.from_milli(None) is None


def test_ensemble_power_devices_key_with_colon() -> None:
    devices = quirks.ensemble_power_devices(body("8.1.41", "ivp_ensemble_power"))
    assert [d["real_power_mw"] for d in devices] == [24000, 16000]
    assert quirks.ensemble_power_devices({"devices": [{"soc": 1}]}) == [{"soc": 1}]
    assert quirks.ensemble_power_devices({"devices:": "x"}) == []
    assert quirks.ensemble_power_devices(None) == []


def test_inventory_string_dates() -> None:
    assert quirks.inventory_date("1781988156") == 1781988156
    assert quirks.inventory_date(1732092823) == 1732092823
    for bad in ("", "0", "12a", "-5", None, True, "99999999999999999999", 1.5e20):
        assert quirks.inventory_date(bad) is None


def test_device_data_filter_on_active_not_mod_gone() -> None:
    assert quirks.device_data_is_published({"active": True, "modGone": True})  # 8.3.5169
    assert not quirks.device_data_is_published({"active": False, "modGone": True})  # 8.3.5289
    assert not quirks.device_data_is_published({"active": "true"})
    assert not quirks.device_data_is_published(None)


def test_mean_phase_voltage() -> None:
    assert quirks.mean_phase_voltage(242.785, [121.342, 121.424, 0.0], 2) == pytest.approx(121.383)
    assert quirks.mean_phase_voltage(235.236, [235.236, 6.124, 11.469], 3) == pytest.approx(235.236)
    assert quirks.mean_phase_voltage(694.5, [], 3) == pytest.approx(231.5)
    assert quirks.mean_phase_voltage(230.0, [None], 1) == 230.0
    assert quirks.mean_phase_voltage(None, [None, None], 2) is None


def test_phase_lines_in_use() -> None:
    total, _ = quirks.find_consumption_sections(body("8.3.5433_tot_is_net_cons", "production.json_details_1"))
    assert quirks.phase_lines_in_use(total) == 2
    assert quirks.phase_lines_in_use({"lines": "x"}) == 0


def test_production_html_page_of_firmware_3() -> None:
    page = (
        "<table><tr><td>Currently</td>    <td> 6.63 kW</td></tr><tr><td>Today</td>     <td> 53.6 kWh</td></tr>"
        "<tr><td>Past Week</td>    <td>  405 kWh</td></tr><tr><td>Since Installation</td>"
        "    <td>  1.33 MWh</td></tr></table>"
    )
    assert quirks.production_from_html(page) == {
        "wattsNow": 6630.0,
        "wattHoursToday": 53600.0,
        "wattHoursSevenDays": 405000.0,
        "wattHoursLifetime": 1330000.0,
    }
    # the 2010-2012 firmware's page: the same table, one row per line of markup
    page_2012 = (
        '<tr><td colspan="3">System has been live since\n  <div class=good>Tue Jun 01, 2010 03:23 PM PDT</div>'
        "</td></tr>\n  <tr><td>Currently</td>    <td> 1.06 kW</td></tr><tr><td>Today</td>     <td> 11.1 kWh</td>"
        "</tr><tr><td>Past Week</td>    <td> 99.5 kWh</td></tr><tr><td>Since Installation</td>    <td> 20.0 MWh"
        "</td></tr>\n"
    )
    assert quirks.production_from_html(page_2012) == {
        "wattsNow": 1060.0,
        "wattHoursToday": 11100.0,
        "wattHoursSevenDays": 99500.0,
        "wattHoursLifetime": 20000000.0,
    }
    # plain units, odd spacing and case, a night-time zero
    night = "<td>currently</td><td>0 W</td><td>TODAY</td><td>812 Wh</td><td>Past  Week</td><td>3.1 kWh</td>"
    assert quirks.production_from_html(night) == {
        "wattsNow": 0.0,
        "wattHoursToday": 812.0,
        "wattHoursSevenDays": 3100.0,
    }
    # a power unit in an energy row (or the reverse) is not the page we know
    assert quirks.production_from_html("<td>Today</td><td>5 kW</td><td>Currently</td><td>5 kWh</td>") is None
    for garbage in (
        None,
        "",
        "<html>Page Not Found</html>",
        b"<td>Today</td><td>1 Wh</td>",
        42,
        "x" * 300_000,
    ):
        assert quirks.production_from_html(garbage) is None
